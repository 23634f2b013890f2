#!/usr/bin/env bash
# Runs the quickstart: the local OpenID provider (with demo users), two echo upstreams, and the
# gateway on config/gateway.yaml. Secrets are made up for this run and passed through the
# environment, as in production; nothing secret is read from the repository.
#
#   demo users:  alice / alice-pw  (groups admins, dev)      bob / bob-pw  (group dev)
#   apps:        https://app1.example.com:8443   (any example.com user; /healthz and /public/ open)
#                https://admin.example.com:8443  (group admins only)
#                https://x.preview.example.com:8443 (public, no login)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${AUTHGATE_BIN:-target/release/authgate}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM

export AUTHGATE_COOKIE_SECRETS="$(openssl rand -base64 32)"
export CORP_CLIENT_SECRET="$(openssl rand -hex 24)"

cat > "$work/idp.json" <<JSON
{
  "listen": "127.0.0.1:9443",
  "issuer_host": "localhost",
  "tls": { "cert_file": "$root/certs/dev/example.com.crt", "key_file": "$root/certs/dev/example.com.key" },
  "clients": [{
    "client_id": "gateway",
    "client_secret": "$CORP_CLIENT_SECRET",
    "redirect_uris": ["https://app1.example.com:8443/oauth2/callback", "https://admin.example.com:8443/oauth2/callback"],
    "post_logout_redirect_uris": ["https://app1.example.com:8443/", "https://admin.example.com:8443/"]
  }],
  "users": [
    { "sub": "alice", "password": "alice-pw", "email": "alice@example.com", "email_verified": true,
      "name": "Alice", "preferred_username": "alice", "groups": ["admins", "dev"] },
    { "sub": "bob", "password": "bob-pw", "email": "bob@example.com", "email_verified": true,
      "name": "Bob", "preferred_username": "bob", "groups": ["dev"] }
  ]
}
JSON

mkfifo "$work/ready"
node gateway/tests/support/idp/server.mjs --config "$work/idp.json" > "$work/ready" &
pids+=($!)
if ! read -r -t 30 line < "$work/ready" || [[ "$line" != READY* ]]; then
  echo "the local OpenID provider did not start" >&2
  exit 1
fi
echo "OpenID provider: ${line#READY }"

"$bin" echo -l 127.0.0.1:9001 -l 127.0.0.1:9002 &
pids+=($!)

cat <<'TXT'

authgate quickstart
  1. map the demo hosts:   echo "127.0.0.1 app1.example.com admin.example.com" | sudo tee -a /etc/hosts
  2. trust the dev CA:     certs/dev/ca.crt (or use curl --cacert certs/dev/ca.crt)
  3. open https://app1.example.com:8443/ and sign in as alice / alice-pw
     the echo upstream shows what the app receives: X-Auth-Request-User, -Email, -Groups, ...

TXT
"$bin" run -c config/gateway.yaml &
pids+=($!)
wait "${pids[-1]}"
