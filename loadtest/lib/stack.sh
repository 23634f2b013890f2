# shellcheck shell=bash
# loadtest/lib/stack.sh: the pieces of an authenticated test stack, shared by loadtest/bench.sh and
# loadtest/run-k6.sh. Sourced, never run. Loopback only.
#
# The caller defines, before sourcing:
#   ROOT, WORK (a private temporary directory), CA, CERT, KEY, AUTHGATE (the binary),
#   an associative array PID (name -> pid of each long-running process it started),
#   start NAME CMD...     run CMD in the background, logging to $WORK/NAME.log, PID[NAME]=$!
#   wait_for NAME CMD...  poll CMD until it succeeds (bounded), failing if NAME died
#   log MSG / die MSG
#
# Secrets are made up per run and passed through the environment, as in production:
#   AUTHGATE_COOKIE_SECRETS (cookie keyring) and CORP_CLIENT_SECRET (the provider's client secret).

IDP_DIR="$ROOT/gateway/tests/support/idp"
IDP_USER="alice"
IDP_PASSWORD="alice-pw"
IDP_EMAIL="alice@example.com"

stack_secrets() {
  AUTHGATE_COOKIE_SECRETS="$(openssl rand -base64 32)"
  CORP_CLIENT_SECRET="$(openssl rand -hex 24)"
  export AUTHGATE_COOKIE_SECRETS CORP_CLIENT_SECRET
}

# stack_check_tools: what every authenticated case needs.
stack_check_tools() {
  local tool
  for tool in redis-server redis-cli node openssl curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH (apt-get install -y redis-server nodejs)"
  done
  [[ -d "$IDP_DIR/node_modules" ]] || die "the local OpenID provider needs its modules: npm ci --prefix $IDP_DIR"
}

# stack_start_redis PORT: a Redis master on PORT and a replica on PORT+1, both without persistence.
# The replica is there because the session store saves with `SET` + `WAIT 1 <command timeout>`:
# without any replica, every WAIT runs into its timeout (250 ms by default), which makes minting
# (and every login) 250 ms slower. Sets REDIS_URL (and REDIS_PORT, for the caller).
stack_start_redis() {
  local port="$1" replica=$(($1 + 1))
  mkdir -p "$WORK/redis" "$WORK/redis-replica"
  start redis redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$WORK/redis" --repl-diskless-sync yes --repl-diskless-sync-delay 0 --maxmemory-policy noeviction
  wait_for redis redis-cli -p "$port" ping
  start redis-replica redis-server --bind 127.0.0.1 --port "$replica" --save "" --appendonly no \
    --dir "$WORK/redis-replica" --replicaof 127.0.0.1 "$port" --repl-diskless-load swapdb
  wait_for redis-replica redis_replica_up "$replica"
  REDIS_URL="redis://127.0.0.1:$port/0"
  # shellcheck disable=SC2034
  REDIS_PORT="$port"
}

redis_replica_up() {
  redis-cli -p "$1" info replication | tr -d '\r' | grep -qx 'master_link_status:up'
}

# stack_start_idp REDIRECT_URI...: the local OpenID provider (gateway/tests/support/idp/server.mjs) on
# a free port, with client `gateway` (secret $CORP_CLIENT_SECRET) allowed to redirect to the given
# URIs, user alice/alice-pw, and ID tokens valid for a day (for the bearer cases). Sets ISSUER.
stack_start_idp() {
  local uris="" u
  for u in "$@"; do uris+="${uris:+,}\"$u\""; done
  cat >"$WORK/idp.json" <<EOF
{
  "listen": "127.0.0.1:0",
  "issuer_host": "localhost",
  "tls": { "cert_file": "$ROOT/certs/dev/example.com.crt", "key_file": "$KEY" },
  "clients": [{ "client_id": "gateway", "client_secret": "$CORP_CLIENT_SECRET", "redirect_uris": [$uris] }],
  "users": [{ "sub": "$IDP_USER", "password": "$IDP_PASSWORD", "email": "$IDP_EMAIL", "email_verified": true,
              "name": "Alice", "preferred_username": "$IDP_USER", "groups": ["admins", "dev"] }],
  "ttl": { "id_token": 86400, "access_token": 86400 }
}
EOF
  start idp node "$IDP_DIR/server.mjs" --config "$WORK/idp.json"
  wait_for idp grep -q '^READY ' "$WORK/idp.log"
  ISSUER="$(awk '/^READY / { print $2; exit }' "$WORK/idp.log")"
  [[ "$ISSUER" == https://localhost:* ]] || die "the provider announced an unexpected issuer '$ISSUER'"
}

# stack_gateway_main FILE HTTPS_PORT ADMIN_PORT THREADS [CACHE_TTL] [CACHE_MAX]: a main file with the
# cookie section, provider `corp` (the local provider) and the Redis session store.
stack_gateway_main() {
  local file="$1" https="$2" admin="$3" threads="$4" ttl="${5:-30s}" max="${6:-200000}"
  mkdir -p "$(dirname "$file")/apps.d"
  cat >"$file" <<EOF
listen: { https: "127.0.0.1:$https", admin: "127.0.0.1:$admin" }
tls: { certificates: [ { cert_file: $CERT, key_file: $KEY } ] }
apps_dir: apps.d
server: { threads: $threads }
cookie: { name: _authgate, domain: .example.com, secrets_env: AUTHGATE_COOKIE_SECRETS, expire: 168h, refresh: 1h }
providers:
  corp: { type: oidc, issuer_url: "$ISSUER", client_id: gateway, client_secret_env: CORP_CLIENT_SECRET,
          scopes: [openid, email, profile, groups], ca_file: $CA }
sessions:
  store: redis
  cache: { max_entries: $max, ttl: $ttl }
  redis: { url: "$REDIS_URL", key_prefix: "authgate:" }
EOF
}

# stack_auth_app FILE HOST UPSTREAMS [EXTRA_YAML]: an app with the auth block of the load tests;
# UPSTREAMS is the inside of the YAML list, e.g. '"127.0.0.1:9001", "127.0.0.1:9002"'.
stack_auth_app() {
  cat >"$1" <<EOF
host: $2
upstreams: [$3]
health_check: { path: /healthz, interval: 30s }
auth:
  provider: corp
  email_domains: ["example.com"]
  skip_auth_routes: ["GET=^/healthz\$", "^/public/"]
  api_routes: ["^/api/"]
  skip_jwt_bearer_tokens: true
${4:-}
EOF
}

# stack_mint CONFIG COUNT OUTFILE: COUNT sessions of alice in the store, their cookies (name=value)
# in OUTFILE, one a line. Prints how long it took.
stack_mint() {
  local config="$1" count="$2" out="$3" t0 t1
  t0="$(date +%s%N)"
  AUTHGATE_LOG=warn "$AUTHGATE" session mint -c "$config" --provider corp --email "$IDP_EMAIL" \
    --groups admins,dev --ttl 12h --count "$count" >"$out" 2>"$WORK/mint.log" \
    || { cat "$WORK/mint.log" >&2; die "authgate session mint failed"; }
  t1="$(date +%s%N)"
  [[ "$(wc -l <"$out")" -eq "$count" ]] || die "mint wrote $(wc -l <"$out") cookies, not $count"
  MINT_SECONDS="$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1e9 }')"
  log "minted $count sessions in ${MINT_SECONDS} s"
}

# stack_id_token REDIRECT_URI: an ID token of alice for client `gateway`, obtained like a browser
# would, without the gateway: authorize (PKCE S256) -> login form -> code -> POST /token (basic
# auth). Prints the token.
stack_id_token() {
  local ru="$1" jar="$WORK/idtoken.jar" verifier challenge loc code status
  verifier="$(openssl rand -hex 32)"
  challenge="$(printf %s "$verifier" | openssl dgst -sha256 -binary | openssl base64 -A | tr '+/' '-_' | tr -d '=')"
  rm -f "$jar"
  local -a c=(curl -s --max-time 10 --cacert "$CA" -c "$jar" -b "$jar" -o /dev/null -w '%{http_code} %{redirect_url}\n')
  read -r status loc < <("${c[@]}" -G "$ISSUER/auth" --data-urlencode client_id=gateway \
    --data-urlencode response_type=code --data-urlencode "scope=openid email profile groups" \
    --data-urlencode "redirect_uri=$ru" --data-urlencode state=bench --data-urlencode nonce=bench \
    --data-urlencode "code_challenge=$challenge" --data-urlencode code_challenge_method=S256)
  [[ "$status" == 303 && "$loc" == */interaction/* ]] || die "id token: authorize answered $status $loc"
  read -r status loc < <("${c[@]}" --data-urlencode "login=$IDP_USER" --data-urlencode "password=$IDP_PASSWORD" "$loc/login")
  [[ "$status" == 303 ]] || die "id token: login form answered $status"
  # At most a few more redirects inside the provider before the redirect_uri.
  local i
  for ((i = 0; i < 4; i++)); do
    [[ "$loc" == "$ru"* ]] && break
    read -r status loc < <("${c[@]}" "$loc")
  done
  [[ "$loc" == "$ru"* ]] || die "id token: never redirected to $ru (last: $status $loc)"
  code="$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$loc")"
  [[ -n "$code" ]] || die "id token: no code in $loc"
  curl -sf --max-time 10 --cacert "$CA" -u "gateway:$CORP_CLIENT_SECRET" \
    --data-urlencode grant_type=authorization_code --data-urlencode "code=$code" \
    --data-urlencode "redirect_uri=$ru" --data-urlencode "code_verifier=$verifier" "$ISSUER/token" \
    | sed -n 's/.*"id_token":"\([^"]*\)".*/\1/p'
}

# metric FILE NAME_AND_LABELS: the value of one Prometheus sample in a /metrics dump (0 if absent).
# NAME_AND_LABELS is matched as a prefix of the sample line, e.g. 'authgate_session_cache_requests_total{result="hit"}'.
metric() {
  awk -v k="$2" 'index($0, k) == 1 && substr($0, length(k) + 1, 1) == " " { v = $2 } END { print v + 0 }' "$1"
}

# metric_sum FILE NAME LABEL_FILTER: the sum of every sample of NAME whose labels contain LABEL_FILTER.
metric_sum() {
  awk -v n="$2" -v f="$3" 'index($0, n "{") == 1 && index($0, f) { s += $NF } END { print s + 0 }' "$1"
}
