#!/usr/bin/env bash
# End-to-end self test of the test IdP (server.mjs) and the GitHub stand-in
# (github.mjs), driven with curl over loopback only.
#
#   gateway/tests/support/idp/selftest.sh
#
# Exits 0 only if every check passes; the last line is "N passed, M failed".
# SELFTEST_KEEP=1 keeps the temp dir (configs, server stderr logs) for debugging.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../../../.." && pwd)"
CA="$ROOT/certs/dev/ca.crt"
CERT="$ROOT/certs/dev/example.com.crt"
KEY="$ROOT/certs/dev/example.com.key"
READY_TIMEOUT=20

PASS=0
FAIL=0
PIDS=()
TMP="$(mktemp -d)"

SUMMARY_PRINTED=0
cleanup() {
  local rc=$? pid
  # An unexpected failing command (set -e) still ends with the summary line.
  if [[ "$SUMMARY_PRINTED" -eq 0 ]]; then
    FAIL=$((FAIL + 1))
    echo "FAIL - selftest aborted (exit code $rc); see the error above"
    echo "$PASS passed, $FAIL failed"
  fi
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "${SELFTEST_KEEP:-}" ]]; then echo "selftest: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

ok()  { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+ ($2)}"; }
# check "description" command args...   (passes when the command succeeds)
check() { local d="$1"; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
# expect_eq "description" actual expected
expect_eq() { if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi; }

die() { echo "selftest: $*" >&2; bad "$*"; echo "$PASS passed, $FAIL failed"; SUMMARY_PRINTED=1; exit 1; }

# curl with the dev CA, bounded time, silent but showing errors
c() { curl --silent --show-error --max-time 10 --cacert "$CA" "$@"; }

# json FILE EXPR  -> prints the JS expression evaluated on the parsed file as `o`
json() {
  node -e '
    const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const v = (0, eval)("(o) => " + process.argv[2])(o);
    process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));
  ' "$1" "$2"
}

# header FILE NAME -> value of the (last) response header NAME in a curl -D dump
header() { tr -d '\r' < "$1" | awk -v n="$(echo "$2" | tr 'A-Z' 'a-z')" '{ split($0, a, ": "); if (tolower(a[1]) == n) { sub(/^[^:]*: /, ""); v = $0 } } END { print v }'; }
status() { tr -d '\r' < "$1" | awk '/^HTTP\//{s=$2} END{print s}'; }

# query_param URL NAME
query_param() {
  node -e 'const u = new URL(process.argv[1]); process.stdout.write(u.searchParams.get(process.argv[2]) ?? "")' "$1" "$2"
}

# start_server NAME SCRIPT CONFIG -> sets SERVER_URL; bounded wait for "READY <url>"
start_server() {
  local name="$1" script="$2" config="$3" fifo="$TMP/$1.stdout" line="" fd
  mkfifo "$fifo"
  node "$HERE/$script" --config "$config" >"$fifo" 2>"$TMP/$name.stderr" &
  PIDS+=("$!")
  exec {fd}<"$fifo"
  if ! read -r -t "$READY_TIMEOUT" -u "$fd" line || [[ "$line" != READY\ * ]]; then
    echo "---- $name stderr ----" >&2; cat "$TMP/$name.stderr" >&2 || true
    die "$name did not print READY within ${READY_TIMEOUT}s (got '${line}')"
  fi
  SERVER_URL="${line#READY }"
}

# ---------------------------------------------------------------------------
echo "# setup"
cd "$HERE"
PINNED="$(json package.json 'o.dependencies["oidc-provider"]')"
if [[ -f node_modules/.package-lock.json && node_modules/.package-lock.json -nt package-lock.json \
      && "$(json node_modules/oidc-provider/package.json 'o.version' 2>/dev/null || true)" == "$PINNED" ]]; then
  echo "node_modules up to date (oidc-provider $PINNED)"
else
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
bash "$ROOT/certs/make-dev-certs.sh"
check "dev leaf certificate verifies against the dev CA" openssl verify -CAfile "$CA" "$CERT"

REDIRECT_URI="https://app1.example.com:8443/oauth2/callback"
POST_LOGOUT="https://app1.example.com:8443/"
CLIENT_SECRET="s3cret-$(openssl rand -hex 8)"

cat > "$TMP/idp.json" <<EOF
{
  "listen": "127.0.0.1:0",
  "issuer_host": "localhost",
  "tls": { "cert_file": "$CERT", "key_file": "$KEY" },
  "keys_out": "$TMP/keys_out.json",
  "clients": [ { "client_id": "gateway", "client_secret": "$CLIENT_SECRET",
                 "redirect_uris": ["$REDIRECT_URI"], "post_logout_redirect_uris": ["$POST_LOGOUT"] } ],
  "users": [ { "sub": "alice", "password": "alice-pw", "email": "alice@example.com", "email_verified": true,
               "name": "Alice", "preferred_username": "alice", "groups": ["admins","dev"] } ],
  "ttl": { "access_token": 600, "id_token": 300, "refresh_token": 86400 }
}
EOF

# ---------------------------------------------------------------------------
echo "# bad configs exit 1 with an error on stderr"
set +e
node "$HERE/server.mjs" --config "$TMP/does-not-exist.json" >"$TMP/bad.out" 2>"$TMP/bad.err"; rc=$?
set -e
expect_eq "missing config file -> exit 1" "$rc" "1"
check "missing config file -> error on stderr, nothing on stdout" bash -c "grep -q 'cannot read config' '$TMP/bad.err' && ! [ -s '$TMP/bad.out' ]"
echo '{"listen":"127.0.0.1:0","tls":{"cert_file":"'"$CERT"'","key_file":"'"$KEY"'"},"clients":[],"users":[]}' > "$TMP/bad2.json"
set +e
node "$HERE/server.mjs" --config "$TMP/bad2.json" >/dev/null 2>"$TMP/bad2.err"; rc=$?
set -e
expect_eq "empty clients -> exit 1" "$rc" "1"
check "empty clients -> clear message" grep -q '"clients" must be a non-empty array' "$TMP/bad2.err"

# ---------------------------------------------------------------------------
echo "# OpenID provider"
start_server idp server.mjs "$TMP/idp.json"
ISSUER="$SERVER_URL"
echo "issuer: $ISSUER"
PORT="${ISSUER##*:}"
expect_eq "READY line carries https://localhost:<port>" "$ISSUER" "https://localhost:$PORT"

c -o "$TMP/disc.json" "$ISSUER/.well-known/openid-configuration"
expect_eq "discovery issuer" "$(json "$TMP/disc.json" o.issuer)" "$ISSUER"
expect_eq "discovery: only S256 PKCE" "$(json "$TMP/disc.json" 'o.code_challenge_methods_supported.join(",")')" "S256"
check "discovery: end_session_endpoint present" test -n "$(json "$TMP/disc.json" 'o.end_session_endpoint || ""')"
check "discovery: groups scope advertised" test "$(json "$TMP/disc.json" 'o.scopes_supported.includes("groups")')" = true
AUTH_EP="$(json "$TMP/disc.json" o.authorization_endpoint)"
TOKEN_EP="$(json "$TMP/disc.json" o.token_endpoint)"
USERINFO_EP="$(json "$TMP/disc.json" o.userinfo_endpoint)"
END_SESSION_EP="$(json "$TMP/disc.json" o.end_session_endpoint)"
c -o "$TMP/jwks.json" "$(json "$TMP/disc.json" o.jwks_uri)"
check "jwks has public keys only" test "$(json "$TMP/jwks.json" 'o.keys.length >= 1 && o.keys.every(k => !k.d)')" = true
check "keys_out written with the generated private keys" test "$(json "$TMP/keys_out.json" 'o.keys.length === 2 && o.keys.every(k => k.d && k.kid)')" = true
check "keys_out is mode 0600" test "$(stat -c %a "$TMP/keys_out.json")" = 600
FIRST_KID="$(json "$TMP/keys_out.json" 'o.keys[0].kid')"

urlenc() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"; }
new_pkce() {
  VERIFIER="$(openssl rand -base64 48 | tr '+/' '-_' | tr -d '=\n')"
  CHALLENGE="$(printf '%s' "$VERIFIER" | openssl dgst -sha256 -binary | openssl base64 -A | tr '+/' '-_' | tr -d '=')"
}

# follow_to_redirect_uri JAR START_URL -> sets FINAL_LOCATION: follows the IdP's redirects
# (with cookies) and stops, without fetching it, at the first Location on the client's redirect_uri.
follow_to_redirect_uri() {
  local jar="$1" url="$2" i loc
  FINAL_LOCATION=""
  for i in $(seq 1 10); do
    c -c "$jar" -b "$jar" -D "$TMP/follow.h" -o "$TMP/follow.body" "$url"
    loc="$(header "$TMP/follow.h" location)"
    [[ -z "$loc" ]] && return 1
    loc="$(node -e 'process.stdout.write(new URL(process.argv[1], process.argv[2]).href)' "$loc" "$url")"
    if [[ "$loc" == "$REDIRECT_URI"* ]]; then FINAL_LOCATION="$loc"; return 0; fi
    url="$loc"
  done
  return 1
}

# oidc_login ISSUER AUTH_EP JAR USER PASSWORD SCOPE -> sets CODE, STATE_BACK, ISS_BACK, NONCE, VERIFIER
oidc_login() {
  local issuer="$1" auth_ep="$2" jar="$3" user="$4" pw="$5" scope="$6" state
  new_pkce
  state="st-$(openssl rand -hex 6)"; NONCE="n-$(openssl rand -hex 8)"
  local url="$auth_ep?client_id=gateway&response_type=code&scope=$(urlenc "$scope")&redirect_uri=$(urlenc "$REDIRECT_URI")&state=$state&nonce=$NONCE&code_challenge=$CHALLENGE&code_challenge_method=S256"
  # 1. GET authorize -> 303 /interaction/<uid> -> 200 login form (follow, keep cookies)
  c -L -c "$jar" -b "$jar" -o "$TMP/form.html" -w '%{http_code} %{url_effective}' "$url" > "$TMP/form.meta"
  FORM_ACTION="$(grep -o '<form method="post" action="[^"]*"' "$TMP/form.html" | sed 's/.*action="//; s/"$//')"
  [[ -n "$FORM_ACTION" ]] || return 1
  # 2. POST login + password -> 303 /auth/<uid> -> 303 redirect_uri?code&state&iss
  c -c "$jar" -b "$jar" -D "$TMP/login.h" -o /dev/null --data-urlencode "login=$user" --data-urlencode "password=$pw" "$issuer$FORM_ACTION"
  local loc; loc="$(header "$TMP/login.h" location)"
  follow_to_redirect_uri "$jar" "$loc" || return 1
  CODE="$(query_param "$FINAL_LOCATION" code)"
  STATE_BACK="$(query_param "$FINAL_LOCATION" state)"
  ISS_BACK="$(query_param "$FINAL_LOCATION" iss)"
  STATE_SENT="$state"
}

# verify_jwt JWT JWKS_FILE -> exit 0 if the signature verifies with the kid's key
verify_jwt() {
  node -e '
    const crypto = require("crypto"), fs = require("fs");
    const [h, p, s] = process.argv[1].split(".");
    const header = JSON.parse(Buffer.from(h, "base64url"));
    const jwk = JSON.parse(fs.readFileSync(process.argv[2], "utf8")).keys.find(k => k.kid === header.kid);
    if (!jwk) process.exit(2);
    const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
    const ok = crypto.verify("sha256", Buffer.from(`${h}.${p}`), header.alg.startsWith("ES") ? { key, dsaEncoding: "ieee-p1363" } : key, Buffer.from(s, "base64url"));
    process.exit(ok ? 0 : 1);
  ' "$1" "$2"
}
jwt_part() { node -e 'process.stdout.write(Buffer.from(process.argv[1].split(".")[Number(process.argv[2])], "base64url").toString())' "$1" "$2"; }

JAR="$TMP/idp.jar"

# wrong password first (fresh interaction)
new_pkce
c -L -c "$JAR" -b "$JAR" -o "$TMP/form0.html" "$AUTH_EP?client_id=gateway&response_type=code&scope=openid&redirect_uri=$(urlenc "$REDIRECT_URI")&state=x&code_challenge=$CHALLENGE&code_challenge_method=S256"
check "authorize -> login form with login/password inputs" bash -c "grep -q 'name=\"login\"' '$TMP/form0.html' && grep -q 'name=\"password\"' '$TMP/form0.html' && grep -q 'action=\"/interaction/[^\"]*/login\"' '$TMP/form0.html'"
ACTION0="$(grep -o 'action="/interaction/[^"]*/login"' "$TMP/form0.html" | sed 's/action="//; s/"$//')"
code0="$(c -c "$JAR" -b "$JAR" -o "$TMP/wrong.html" -w '%{http_code}' --data-urlencode login=alice --data-urlencode password=nope "$ISSUER$ACTION0")"
expect_eq "wrong password -> HTTP 200" "$code0" "200"
check "wrong password -> 'Invalid login' and the form again" bash -c "grep -q 'Invalid login' '$TMP/wrong.html' && grep -q 'name=\"password\"' '$TMP/wrong.html'"
rm -f "$JAR"

# PKCE is required
c -D "$TMP/nopkce.h" -o /dev/null "$AUTH_EP?client_id=gateway&response_type=code&scope=openid&redirect_uri=$(urlenc "$REDIRECT_URI")&state=x"
NOPKCE_LOC="$(header "$TMP/nopkce.h" location)"
expect_eq "authorize without code_challenge -> error=invalid_request at redirect_uri" "$(query_param "$NOPKCE_LOC" error)" "invalid_request"

# full code flow
# (no offline_access: a refresh token must be issued anyway)
if oidc_login "$ISSUER" "$AUTH_EP" "$JAR" alice alice-pw 'openid email profile groups'; then ok "login: authorize -> form -> POST -> redirects -> redirect_uri"; else bad "login flow did not reach redirect_uri"; fi
check "redirect carries a code" test -n "${CODE:-}"
expect_eq "redirect carries our state" "${STATE_BACK:-}" "${STATE_SENT:-}"
expect_eq "redirect carries iss (RFC 9207)" "${ISS_BACK:-}" "$ISSUER"

c -u "gateway:$CLIENT_SECRET" -o "$TMP/tok.json" -d grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP"
check "token: access_token, id_token and a refresh_token (without offline_access)" test "$(json "$TMP/tok.json" '!!(o.access_token && o.id_token && o.refresh_token)')" = true
expect_eq "token: token_type Bearer" "$(json "$TMP/tok.json" o.token_type)" "Bearer"
expect_eq "token: expires_in from ttl.access_token" "$(json "$TMP/tok.json" o.expires_in)" "600"
ID_TOKEN="$(json "$TMP/tok.json" o.id_token)"
ACCESS_TOKEN="$(json "$TMP/tok.json" o.access_token)"
REFRESH_TOKEN="$(json "$TMP/tok.json" o.refresh_token)"
jwt_part "$ID_TOKEN" 1 > "$TMP/idt.json"
jwt_part "$ID_TOKEN" 0 > "$TMP/idt.h.json"
expect_eq "id_token: nonce" "$(json "$TMP/idt.json" o.nonce)" "$NONCE"
expect_eq "id_token: email" "$(json "$TMP/idt.json" o.email)" "alice@example.com"
expect_eq "id_token: email_verified" "$(json "$TMP/idt.json" o.email_verified)" "true"
expect_eq "id_token: groups" "$(json "$TMP/idt.json" 'o.groups.join(",")')" "admins,dev"
expect_eq "id_token: name + preferred_username" "$(json "$TMP/idt.json" 'o.name + "/" + o.preferred_username')" "Alice/alice"
expect_eq "id_token: iss/aud/sub" "$(json "$TMP/idt.json" 'o.iss + " " + o.aud + " " + o.sub')" "$ISSUER gateway alice"
expect_eq "id_token: lifetime from ttl.id_token" "$(json "$TMP/idt.json" 'o.exp - o.iat')" "300"
expect_eq "id_token: signed by the first key (kid)" "$(json "$TMP/idt.h.json" o.kid)" "$FIRST_KID"
check "id_token: signature verifies against jwks_uri" verify_jwt "$ID_TOKEN" "$TMP/jwks.json"

c -H "Authorization: Bearer $ACCESS_TOKEN" -o "$TMP/ui.json" "$USERINFO_EP"
expect_eq "userinfo: sub/email/groups/preferred_username" "$(json "$TMP/ui.json" 'o.sub + " " + o.email + " " + o.groups.join(",") + " " + o.preferred_username')" "alice alice@example.com admins,dev alice"

c -u "gateway:$CLIENT_SECRET" -o "$TMP/ref.json" -d grant_type=refresh_token --data-urlencode "refresh_token=$REFRESH_TOKEN" "$TOKEN_EP"
check "refresh grant: new access_token and id_token" test "$(json "$TMP/ref.json" "!!(o.access_token && o.id_token && o.access_token !== '$ACCESS_TOKEN')")" = true
REFRESH_TOKEN2="$(json "$TMP/ref.json" 'o.refresh_token || ""')"
[[ -n "$REFRESH_TOKEN2" ]] || REFRESH_TOKEN2="$REFRESH_TOKEN"
check "refresh grant: id_token still has groups" test "$(jwt_part "$(json "$TMP/ref.json" o.id_token)" 1 | node -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(0,"utf8")).groups.includes("admins")))')" = true
c -H "Authorization: Bearer $(json "$TMP/ref.json" o.access_token)" -o "$TMP/ui2.json" "$USERINFO_EP"
expect_eq "userinfo with refreshed access token" "$(json "$TMP/ui2.json" o.sub)" "alice"

# SSO: the session cookie skips the form; a wrong code_verifier is refused
new_pkce
c -c "$JAR" -b "$JAR" -D "$TMP/sso.h" -o /dev/null "$AUTH_EP?client_id=gateway&response_type=code&scope=openid%20email&redirect_uri=$(urlenc "$REDIRECT_URI")&state=sso&code_challenge=$CHALLENGE&code_challenge_method=S256"
SSO_LOC="$(header "$TMP/sso.h" location)"
check "second authorize with the session cookie -> straight to redirect_uri with a code" bash -c "[[ '$SSO_LOC' == '$REDIRECT_URI'* ]] && [[ -n '$(query_param "$SSO_LOC" code 2>/dev/null)' ]]"
c -u "gateway:$CLIENT_SECRET" -o "$TMP/badpkce.json" -d grant_type=authorization_code --data-urlencode "code=$(query_param "$SSO_LOC" code)" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$(openssl rand -hex 32)" "$TOKEN_EP"
expect_eq "token with a wrong code_verifier -> invalid_grant" "$(json "$TMP/badpkce.json" o.error)" "invalid_grant"

c -c "$JAR" -b "$JAR" -D "$TMP/plogin.h" -o /dev/null "$AUTH_EP?client_id=gateway&response_type=code&prompt=login&scope=openid&redirect_uri=$(urlenc "$REDIRECT_URI")&state=pl&code_challenge=$CHALLENGE&code_challenge_method=S256"
check "prompt=login with a session -> login form again (/interaction/<uid>)" bash -c "[[ '$(header "$TMP/plogin.h" location)' == /interaction/* ]]"

# prompt=consent + offline_access: the consent prompt is answered automatically (no page)
new_pkce
c -c "$JAR" -b "$JAR" -D "$TMP/consent.h" -o /dev/null "$AUTH_EP?client_id=gateway&response_type=code&prompt=consent&scope=$(urlenc 'openid groups offline_access')&redirect_uri=$(urlenc "$REDIRECT_URI")&state=cns&code_challenge=$CHALLENGE&code_challenge_method=S256"
check "prompt=consent -> our /interaction/<uid> (consent)" bash -c "[[ '$(header "$TMP/consent.h" location)' == /interaction/* ]]"
if follow_to_redirect_uri "$JAR" "$ISSUER$(header "$TMP/consent.h" location)"; then ok "consent granted automatically -> redirect_uri"; else bad "consent flow did not reach redirect_uri"; fi
c -u "gateway:$CLIENT_SECRET" -o "$TMP/tokc.json" -d grant_type=authorization_code --data-urlencode "code=$(query_param "${FINAL_LOCATION:-http://x/}" code)" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP"
expect_eq "prompt=consent: scope includes offline_access, refresh_token issued" "$(json "$TMP/tokc.json" 'o.scope.split(" ").sort().join(" ") + " " + !!o.refresh_token')" "groups offline_access openid true"

# RP-initiated logout: GET end_session -> auto-submit form -> POST xsrf + logout=yes -> post_logout_redirect_uri
c -c "$JAR" -b "$JAR" -o "$TMP/logout.html" -w '%{http_code}' --get --data-urlencode "id_token_hint=$ID_TOKEN" \
  --data-urlencode "post_logout_redirect_uri=$POST_LOGOUT" --data-urlencode "state=bye" "$END_SESSION_EP" > "$TMP/logout.code"
expect_eq "end_session GET -> 200 confirmation form" "$(cat "$TMP/logout.code")" "200"
LOGOUT_ACTION="$(grep -o 'action="[^"]*"' "$TMP/logout.html" | head -1 | sed 's/action="//; s/"$//')"
XSRF="$(grep -o 'name="xsrf" value="[^"]*"' "$TMP/logout.html" | sed 's/.*value="//; s/"$//')"
c -c "$JAR" -b "$JAR" -D "$TMP/logout.h" -o /dev/null --data-urlencode "xsrf=$XSRF" --data-urlencode "logout=yes" "$LOGOUT_ACTION"
expect_eq "logout confirm -> 303 to post_logout_redirect_uri?state=bye" "$(status "$TMP/logout.h") $(header "$TMP/logout.h" location)" "303 ${POST_LOGOUT}?state=bye"
c -u "gateway:$CLIENT_SECRET" -o "$TMP/ref2.json" -d grant_type=refresh_token --data-urlencode "refresh_token=$REFRESH_TOKEN2" "$TOKEN_EP"
expect_eq "refresh after logout -> invalid_grant" "$(json "$TMP/ref2.json" 'o.error')" "invalid_grant"
expect_eq "access token rejected at userinfo after logout" "$(c -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ACCESS_TOKEN" "$USERINFO_EP")" "401"
c -L -c "$JAR" -b "$JAR" -o "$TMP/form2.html" "$AUTH_EP?client_id=gateway&response_type=code&scope=openid&redirect_uri=$(urlenc "$REDIRECT_URI")&state=x&code_challenge=$CHALLENGE&code_challenge_method=S256"
check "after logout, authorize shows the login form again" grep -q 'name="password"' "$TMP/form2.html"

# keys_file: a second instance signing with [new ES256 key, old RS256 key]
NEW_KID="$(node "$HERE/genkeys.mjs" "$TMP/new.json" --alg ES256)"
node -e '
  const fs = require("fs");
  const n = JSON.parse(fs.readFileSync(process.argv[1])).keys, o = JSON.parse(fs.readFileSync(process.argv[2])).keys;
  fs.writeFileSync(process.argv[3], JSON.stringify({ keys: [...n, o[0]] }));
' "$TMP/new.json" "$TMP/keys_out.json" "$TMP/rotated.json"
node -e '
  const fs = require("fs"); const c = JSON.parse(fs.readFileSync(process.argv[1]));
  delete c.keys_out; c.keys_file = process.argv[2]; fs.writeFileSync(process.argv[3], JSON.stringify(c));
' "$TMP/idp.json" "$TMP/rotated.json" "$TMP/idp2.json"
start_server idp2 server.mjs "$TMP/idp2.json"
ISSUER2="$SERVER_URL"
c -o "$TMP/jwks2.json" "$ISSUER2/jwks"
expect_eq "keys_file: jwks publishes both keys, new first" "$(json "$TMP/jwks2.json" 'o.keys.map(k => k.kid).join(" ")')" "$NEW_KID $FIRST_KID"
if oidc_login "$ISSUER2" "$ISSUER2/auth" "$TMP/idp2.jar" alice alice-pw 'openid email groups offline_access'; then
  c -u "gateway:$CLIENT_SECRET" -o "$TMP/tok2.json" -d grant_type=authorization_code --data-urlencode "code=$CODE" \
    --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" "$ISSUER2/token"
  IDT2="$(json "$TMP/tok2.json" 'o.id_token || ""')"
  expect_eq "keys_file: id_token signed with the first key (ES256)" "$(jwt_part "$IDT2" 0 | node -e 'const h=JSON.parse(require("fs").readFileSync(0,"utf8")); process.stdout.write(h.alg+" "+h.kid)')" "ES256 $NEW_KID"
  check "keys_file: ES256 id_token verifies against jwks" verify_jwt "$IDT2" "$TMP/jwks2.json"
else
  bad "keys_file: login on the second instance"
fi

# ---------------------------------------------------------------------------
echo "# GitHub stand-in"
GH_SECRET="gh-$(openssl rand -hex 8)"
GH_REDIRECT="https://app1.example.com:8443/oauth2/callback/github"
cat > "$TMP/gh.json" <<EOF
{
  "listen": "127.0.0.1:0",
  "clients": [ { "client_id": "gh-client", "client_secret": "$GH_SECRET", "redirect_uris": ["$GH_REDIRECT"] } ],
  "users": [ { "login": "octocat", "password": "octo-pw", "id": 583231, "name": "The Octocat",
               "emails": [ { "email": "octocat@example.com", "primary": true, "verified": true },
                           { "email": "octo@old.example", "primary": false, "verified": false } ],
               "orgs": ["acme", "widgets"], "teams": [ { "org": "acme", "slug": "platform" } ] } ]
}
EOF
start_server github github.mjs "$TMP/gh.json"
GH="$SERVER_URL"
echo "github base: $GH"
check "github READY is http://127.0.0.1:<port>" bash -c "[[ '$GH' =~ ^http://127\.0\.0\.1:[0-9]+$ ]]"
GJ="$TMP/gh.jar"
c -c "$GJ" -b "$GJ" -o "$TMP/ghform.html" "$GH/login/oauth/authorize?client_id=gh-client&redirect_uri=$(urlenc "$GH_REDIRECT")&state=ghs1&scope=$(urlenc 'read:user user:email read:org')"
GH_ACTION="$(grep -o '<form method="post" action="[^"]*"' "$TMP/ghform.html" | sed 's/.*action="//; s/"$//')"
check "github authorize -> login form" bash -c "[[ -n '$GH_ACTION' ]] && grep -q 'name=\"login\"' '$TMP/ghform.html'"
ghc="$(c -c "$GJ" -b "$GJ" -o "$TMP/ghwrong.html" -w '%{http_code}' --data-urlencode login=octocat --data-urlencode password=bad "$GH$GH_ACTION")"
check "github wrong password -> 200 'Invalid login'" bash -c "[[ '$ghc' == 200 ]] && grep -q 'Invalid login' '$TMP/ghwrong.html'"
c -c "$GJ" -b "$GJ" -D "$TMP/ghlogin.h" -o /dev/null --data-urlencode login=octocat --data-urlencode password=octo-pw "$GH$GH_ACTION"
GH_LOC="$(header "$TMP/ghlogin.h" location)"
expect_eq "github login -> 302 to redirect_uri" "$(status "$TMP/ghlogin.h") ${GH_LOC%%\?*}" "302 $GH_REDIRECT"
expect_eq "github redirect carries state" "$(query_param "$GH_LOC" state)" "ghs1"
GH_CODE="$(query_param "$GH_LOC" code)"
c -H 'Accept: application/json' -o "$TMP/ghtok.json" --data-urlencode client_id=gh-client --data-urlencode "client_secret=$GH_SECRET" \
  --data-urlencode "code=$GH_CODE" --data-urlencode "redirect_uri=$GH_REDIRECT" "$GH/login/oauth/access_token"
expect_eq "github token (form body, Accept json): token_type/scope" "$(json "$TMP/ghtok.json" 'o.token_type + " " + o.scope')" "bearer read:user,user:email,read:org"
GH_TOKEN="$(json "$TMP/ghtok.json" 'o.access_token || ""')"
c -H 'Accept: application/json' -o "$TMP/ghtok_again.json" --data-urlencode client_id=gh-client --data-urlencode "client_secret=$GH_SECRET" \
  --data-urlencode "code=$GH_CODE" "$GH/login/oauth/access_token"
expect_eq "github code is single use" "$(json "$TMP/ghtok_again.json" o.error)" "bad_verification_code"
# second authorize: signed in already -> straight back; token via JSON body without Accept -> form-encoded answer
c -c "$GJ" -b "$GJ" -D "$TMP/gh2.h" -o /dev/null "$GH/login/oauth/authorize?client_id=gh-client&redirect_uri=$(urlenc "$GH_REDIRECT")&state=ghs2"
GH_CODE2="$(query_param "$(header "$TMP/gh2.h" location)" code)"
check "github second authorize with cookie -> direct 302 with code" test -n "$GH_CODE2"
c -H 'Content-Type: application/json' -o "$TMP/ghtok2.txt" \
  -d "{\"client_id\":\"gh-client\",\"client_secret\":\"$GH_SECRET\",\"code\":\"$GH_CODE2\"}" "$GH/login/oauth/access_token"
check "github token (JSON body, no Accept) -> form-encoded access_token=...&token_type=bearer" bash -c "grep -q '^access_token=gho_' '$TMP/ghtok2.txt' && grep -q 'token_type=bearer' '$TMP/ghtok2.txt'"
c -H "Authorization: Bearer $GH_TOKEN" -o "$TMP/ghuser.json" "$GH/api/v3/user"
expect_eq "github /user" "$(json "$TMP/ghuser.json" 'o.login + " " + o.id + " " + o.name + " " + o.email')" "octocat 583231 The Octocat octocat@example.com"
c -H "Authorization: token $GH_TOKEN" -o "$TMP/ghemails.json" "$GH/api/v3/user/emails"
expect_eq "github /user/emails (token scheme)" "$(json "$TMP/ghemails.json" 'o.map(e => e.email + ":" + e.primary + ":" + e.verified).join(",")')" "octocat@example.com:true:true,octo@old.example:false:false"
c -H "Authorization: Bearer $GH_TOKEN" -o "$TMP/ghorgs.json" "$GH/api/v3/user/orgs"
expect_eq "github /user/orgs" "$(json "$TMP/ghorgs.json" 'o.map(x => x.login).join(",")')" "acme,widgets"
c -H "Authorization: Bearer $GH_TOKEN" -o "$TMP/ghteams.json" "$GH/api/v3/user/teams"
expect_eq "github /user/teams" "$(json "$TMP/ghteams.json" 'o.map(t => t.organization.login + "/" + t.slug).join(",")')" "acme/platform"
expect_eq "github authorize with an unknown client_id -> 404" "$(c -o /dev/null -w '%{http_code}' "$GH/login/oauth/authorize?client_id=nope")" "404"
expect_eq "github /user without a token -> 401" "$(c -o /dev/null -w '%{http_code}' "$GH/api/v3/user")" "401"
expect_eq "github /user with a bad token -> 401" "$(c -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "$GH/api/v3/user")" "401"

# HTTPS variant
node -e '
  const fs = require("fs"); const c = JSON.parse(fs.readFileSync(process.argv[1]));
  c.tls = { cert_file: process.argv[2], key_file: process.argv[3] }; c.public_host = "localhost"; fs.writeFileSync(process.argv[4], JSON.stringify(c));
' "$TMP/gh.json" "$CERT" "$KEY" "$TMP/ghs.json"
start_server github-tls github.mjs "$TMP/ghs.json"
GHS="$SERVER_URL"
check "github with tls: READY https://localhost:<port>" bash -c "[[ '$GHS' =~ ^https://localhost:[0-9]+$ ]]"
expect_eq "github with tls: serves over HTTPS with the dev CA" "$(c -o /dev/null -w '%{http_code}' "$GHS/login/oauth/authorize?client_id=gh-client")" "200"

# ---------------------------------------------------------------------------
echo "# shutdown"
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
rcs=""
for pid in "${PIDS[@]}"; do set +e; wait "$pid"; rc=$?; set -e; rcs+="$rc "; done
PIDS=()
expect_eq "servers exit 0 on SIGTERM" "$rcs" "0 0 0 0 "
check "no secrets in server logs" bash -c "! grep -qF -e '$CLIENT_SECRET' -e 'alice-pw' -e 'octo-pw' -e '$GH_SECRET' $TMP/*.stderr"

echo "$PASS passed, $FAIL failed"
SUMMARY_PRINTED=1
[[ "$FAIL" -eq 0 ]]
