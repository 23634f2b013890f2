#!/usr/bin/env bash
# loadtest/memory.sh: authgate's memory (RSS) with N apps and S cached sessions, and how long a
# reload of 1,000 apps takes under a light request loop (issue 11's "RSS <= 150 MB with 1,000 apps
# and 100,000 cached sessions" and "a reload of 1,000 apps <= 100 ms with 0 failed requests";
# issue 10's memory table in docs/migration.md).
#
# What it does, in one command (loopback only, every process stopped on exit):
#   1. builds target/release/authgate if it is missing (`nice cargo build --release -p authgate`);
#   2. starts Redis (a master and one replica, no persistence: session saves use WAIT 1), the local
#      OpenID provider (gateway/tests/support/idp/server.mjs; discovery is lazy, but the gateway
#      warms it up at start) and one nginx upstream listening on one port per app (every app has
#      its own backend, pool and health checker, as real tenants do);
#   3. mints max(SESSIONS_LIST) sessions into Redis (`authgate session mint`, cookies to a file);
#   4. for each N in APPS_LIST, writes a configuration of N apps app0001.example.com.. (each with
#      an auth block on provider `corp`, email_domains, two skip_auth_routes regexes, one
#      api_routes regex, bearer JWTs on, a health check every 30 s: loadtest/lib/stack.sh's
#      stack_auth_app) with sessions {store: redis, cache: {max_entries: CACHE_MAX, ttl: 1h}},
#      starts a fresh gateway and reads its memory
#        - "idle": right after /ready, before any request;
#        - S = 0: after WARM of traffic on a public route (skip_auth_routes ^/public/) spread
#          over every app, so that every pool has its upstream connections and TLS and worker
#          buffers exist;
#        - S = each other value of SESSIONS_LIST, ascending: after wrk has sent each of the first
#          S cookies (round-robin over the N hosts) until the gateway has loaded S distinct
#          sessions from Redis (one Redis GET per cache miss; wrk is stopped then), plus 2 s;
#      memory = /proc/PID/status of the gateway (one process): VmRSS, VmHWM (peak), RssAnon (heap
#      and stacks; RssFile is the mapped binary and libraries);
#   5. with N = RELOAD_APPS (after its sessions are loaded): RELOADS times, rewrites app0001.yaml
#      atomically (temporary file + rename, a changed read timeout) and times "file written" ->
#      "the admin listener's /ready reports the next config_generation" (this includes the
#      watcher's 250 ms debounce), then RELOAD_SIGHUPS times the same for SIGHUP (no debounce; a
#      forced rebuild); each reload's own time is the `took_ms` of the gateway's "configuration
#      reloaded" log line (load + parse of every file, build of the snapshot, swap). Meanwhile one
#      curl sends RELOAD_RATE requests/s with session cookies to app0001 (the app being changed)
#      and nine other apps; every answer must be the upstream's 200, by curl's count and the
#      gateway's authgate_requests_total;
#   6. prints a markdown report, also written to RESULTS.
#
# Usage:
#   loadtest/memory.sh
#   APPS_LIST="10 100" SESSIONS_LIST="0 10000" RELOAD_APPS= loadtest/memory.sh   # quick
#
# Options (environment variables):
#   APPS_LIST="10 100 1000"          the N values (one gateway each)
#   SESSIONS_LIST="0 10000 100000"   the S values (cumulative, on the same gateway)
#   CACHE_MAX=100000                 sessions.cache.max_entries (the documented default)
#   RELOAD_APPS=1000                 the N whose gateway is reloaded (empty: no reload phase)
#   RELOADS=20 RELOAD_SIGHUPS=5      file-change reloads, then SIGHUP reloads
#   RELOAD_INTERVAL=1                seconds between two reloads
#   RELOAD_RATE=50                   requests/s of the request loop during the reloads
#   UPSTREAMS=distinct               distinct: one upstream port per app; shared: one for all
#   APP_AUTH=1                       0: apps without an auth block (to split the per-app cost)
#   WARM=5s                          public-route traffic before the S = 0 reading
#   THREADS=2                        gateway worker threads (server.threads)
#   TOUCH_CONNECTIONS=32             wrk connections while loading sessions
#   SIDECAR_MIB=300                  oauth2-proxy's memory per sidecar in the comparison column
#                                    (cited, not measured: see docs/migration.md)
#   AUTHGATE_BIN=path                use this binary (no build)
#   PORT_BASE=19000                  ports: +443 gateway, +90 admin, +379/+380 Redis,
#                                    +1001..+1000+max(N) upstreams
#   RESULTS=loadtest/results/memory.md
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

APPS_LIST="${APPS_LIST:-10 100 1000}"
SESSIONS_LIST="${SESSIONS_LIST:-0 10000 100000}"
CACHE_MAX="${CACHE_MAX:-100000}"
RELOAD_APPS="${RELOAD_APPS-1000}"
RELOADS="${RELOADS:-20}"
RELOAD_SIGHUPS="${RELOAD_SIGHUPS:-5}"
RELOAD_INTERVAL="${RELOAD_INTERVAL:-1}"
RELOAD_RATE="${RELOAD_RATE:-50}"
UPSTREAMS="${UPSTREAMS:-distinct}"
APP_AUTH="${APP_AUTH:-1}"
WARM="${WARM:-5s}"
THREADS="${THREADS:-2}"
TOUCH_CONNECTIONS="${TOUCH_CONNECTIONS:-32}"
SIDECAR_MIB="${SIDECAR_MIB:-300}"
PORT_BASE="${PORT_BASE:-19000}"
RESULTS="${RESULTS:-$ROOT/loadtest/results/memory.md}"

GATEWAY_PORT=$((PORT_BASE + 443))
ADMIN_PORT=$((PORT_BASE + 90))
REDIS_PORT=$((PORT_BASE + 379))
UP_BASE=$((PORT_BASE + 1000))   # the upstream of app i listens on UP_BASE + i

CERT="$ROOT/certs/dev/example.com.fullchain.crt"
KEY="$ROOT/certs/dev/example.com.key"
CA="$ROOT/certs/dev/ca.crt"
AUTHGATE="${AUTHGATE_BIN:-$ROOT/target/release/authgate}"

log() { echo "memory: $*" >&2; }
die() { echo "memory: ERROR: $*" >&2; exit 1; }

for tool in nginx wrk curl redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH"
done
# sorted_numbers LIST: the numbers of LIST, ascending, each checked.
sorted_numbers() {
  local v
  for v in $1; do [[ "$v" =~ ^[0-9]+$ ]] || die "not a number: '$v'"; echo "$v"; done | sort -n | uniq
}
mapfile -t APPS_ARR < <(sorted_numbers "$APPS_LIST")
mapfile -t SESS_ARR < <(sorted_numbers "$SESSIONS_LIST")
((${#APPS_ARR[@]} > 0)) || die "APPS_LIST is empty"
MAX_APPS="${APPS_ARR[-1]}"
MAX_SESSIONS="${SESS_ARR[-1]:-0}"
((MAX_APPS >= 1 && MAX_APPS <= 9999)) || die "APPS_LIST values must be 1..9999"
((MAX_SESSIONS <= CACHE_MAX)) || die "the largest S ($MAX_SESSIONS) exceeds CACHE_MAX ($CACHE_MAX): sessions would be evicted"
if [[ -n "$RELOAD_APPS" && " ${APPS_ARR[*]} " != *" $RELOAD_APPS "* ]]; then
  die "RELOAD_APPS=$RELOAD_APPS is not in APPS_LIST ($APPS_LIST)"
fi
[[ "$UPSTREAMS" == distinct || "$UPSTREAMS" == shared ]] || die "UPSTREAMS must be distinct or shared"
[[ "$APP_AUTH" == 1 || "$APP_AUTH" == 0 ]] || die "APP_AUTH must be 1 or 0"
((APP_AUTH == 1 || MAX_SESSIONS == 0)) || die "APP_AUTH=0 serves no sessions: use SESSIONS_LIST=0"

# --- processes we start, and cleanup ----------------------------------------------
WORK="$(mktemp -d /tmp/authgate-memory.XXXXXX)"
declare -A PID=()   # name -> pid of each long-running process we started

# shellcheck source=lib/proc.sh
source "$ROOT/loadtest/lib/proc.sh"   # start, wait_for, stop_process, cleanup on exit

# shellcheck source=lib/stack.sh
source "$ROOT/loadtest/lib/stack.sh"   # Redis, the provider, the app file, mint, `metric`

# --- build and certificates ---------------------------------------------------------
if [[ -z "${AUTHGATE_BIN:-}" && ! -x "$AUTHGATE" ]]; then
  log "building target/release/authgate (release profile: fat LTO, several minutes)"
  (cd "$ROOT" && nice cargo build --release -p authgate)
fi
[[ -x "$AUTHGATE" ]] || die "$AUTHGATE missing"
if [[ ! -f "$CERT" || ! -f "$KEY" || ! -f "$CA" ]]; then
  log "making dev certificates"
  "$ROOT/certs/make-dev-certs.sh"
fi
stack_check_tools
stack_secrets

# --- the upstream: one nginx, one port per app, 200 with a 100-byte body --------------
BODY="$(printf 'x%.0s' {1..100})"
UP_PORTS=$MAX_APPS
[[ "$UPSTREAMS" == shared ]] && UP_PORTS=1
mkdir -p "$WORK/upstream"
{
  echo "daemon off; worker_processes 1; worker_rlimit_nofile 16384; pid $WORK/upstream/nginx.pid; error_log stderr warn;"
  echo "events { worker_connections 8192; }"
  echo "http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;"
  for p in client_body proxy fastcgi uwsgi scgi; do echo "  ${p}_temp_path $WORK/upstream/$p;"; done
  echo "  server {"
  echo "    listen 127.0.0.1:$((UP_BASE + 1)) reuseport backlog=4096;"
  for ((i = 2; i <= UP_PORTS; i++)); do echo "    listen 127.0.0.1:$((UP_BASE + i));"; done
  echo "    default_type text/plain;"
  echo "    location = /healthz { return 200 \"ok\\n\"; }"
  echo "    location / { return 200 \"$BODY\"; }"
  echo "  }"
  echo "}"
} >"$WORK/upstream/nginx.conf"
log "starting the upstream on 127.0.0.1:$((UP_BASE + 1))..$((UP_BASE + UP_PORTS))"
start upstream nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e stderr
wait_for upstream curl -sf --max-time 1 "http://127.0.0.1:$((UP_BASE + UP_PORTS))/healthz"

log "starting Redis on 127.0.0.1:$REDIS_PORT (+ a replica on $((REDIS_PORT + 1)))"
stack_start_redis "$REDIS_PORT"
log "starting the OpenID provider"
stack_start_idp "https://app0001.example.com:$GATEWAY_PORT/oauth2/callback"
log "provider: $ISSUER"
# For the report: a session from a real login also holds the provider's tokens (minted ones do not).
ID_TOKEN_BYTES="$(stack_id_token "https://app0001.example.com:$GATEWAY_PORT/oauth2/callback" | tr -d '\n' | wc -c)" \
  || ID_TOKEN_BYTES="?"

# gw_config N: the configuration of a gateway with N apps, in $WORK/gw-N.
gw_config() {
  local n="$1" dir="$WORK/gw-$1" i up
  stack_gateway_main "$dir/gateway.yaml" "$GATEWAY_PORT" "$ADMIN_PORT" "$THREADS" 1h "$CACHE_MAX"
  for ((i = 1; i <= n; i++)); do
    up=$((UP_BASE + i))
    [[ "$UPSTREAMS" == shared ]] && up=$((UP_BASE + 1))
    if [[ "$APP_AUTH" == 1 ]]; then
      stack_auth_app "$dir/apps.d/$(printf 'app%04d' "$i").yaml" "$(printf 'app%04d' "$i").example.com" "\"127.0.0.1:$up\""
    else
      printf 'host: app%04d.example.com\nupstreams: ["127.0.0.1:%s"]\nhealth_check: { path: /healthz, interval: 30s }\n' \
        "$i" "$up" >"$dir/apps.d/$(printf 'app%04d' "$i").yaml"
    fi
  done
}

COOKIES="$WORK/cookies.txt"
MINT_SECONDS="-"
if ((MAX_SESSIONS > 0)); then
  gw_config 1
  "$AUTHGATE" check -c "$WORK/gw-1/gateway.yaml" >"$WORK/check.out" 2>&1 \
    || { cat "$WORK/check.out" >&2; die "the generated configuration does not pass authgate check"; }
  log "minting $MAX_SESSIONS sessions into Redis (authgate session mint)"
  stack_mint "$WORK/gw-1/gateway.yaml" "$MAX_SESSIONS" "$COOKIES"
else
  echo "x=1" >"$COOKIES"
fi
echo "x=1" >"$WORK/no-cookie.txt"

# --- measurement helpers ------------------------------------------------------------
# status_kb FIELD: a field of the gateway's /proc/PID/status, in kB.
status_kb() {
  awk -v f="$1:" '$1 == f { print $2 }' "/proc/${PID[gateway]}/status"
}
# mem_row LABEL: appends "LABEL rss hwm anon file" (kB) to $MEM.
mem_row() {
  kill -0 "${PID[gateway]}" 2>/dev/null || die "the gateway died"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$(status_kb VmRSS)" "$(status_kb VmHWM)" "$(status_kb RssAnon)" \
    "$(status_kb RssFile)" >>"$MEM"
}
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
redis_gets() {
  redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' \
    | awk -F'[=,:]' '$1 == "cmdstat_get" { print $3; f = 1 } END { if (!f) print 0 }'
}
metrics_to() { curl -sf --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$1" || die "/metrics does not answer"; }
generation() {
  curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/ready" | sed -n 's/.*"config_generation":\([0-9]*\).*/\1/p'
}
# statuses FILE: "status count" lines, authgate_requests_total summed over apps.
statuses() {
  awk '/^authgate_requests_total\{/ { match($0, /status="[0-9]+"/); n[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
       END { for (k in n) print k, n[k] }' "$1"
}
# status_delta BEFORE AFTER STATUS: requests answered with STATUS between two /metrics dumps;
# STATUS "other": with anything but 200 and 0.
status_delta() {
  statuses "$1" >"$WORK/st0"
  statuses "$2" >"$WORK/st1"
  awk -v s="$3" 'NR == FNR { b[$1] = $2; next } {
      d = $2 - b[$1]
      if (s == "other") { if ($1 != "200" && $1 != "0") t += d } else if ($1 == s) t += d
    } END { print t + 0 }' "$WORK/st0" "$WORK/st1"
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# wrk_spread OUT DURATION COOKIES_FILE LIMIT HOSTS PATH: wrk in the background, cookies and hosts
# round-robin (loadtest/wrk/sessions.lua); sets WRK_PID.
wrk_spread() {
  env COOKIES_FILE="$3" COOKIES_LIMIT="$4" WRK_THREADS=2 HOSTS="$5" HOST_FMT="app%04d.example.com" REQ_PATH="$6" \
    wrk -t 2 -c "$TOUCH_CONNECTIONS" -d "$2" -s "$ROOT/loadtest/wrk/sessions.lua" "https://127.0.0.1:$GATEWAY_PORT/" \
    >"$1" 2>&1 &
  WRK_PID=$!
  PID[wrk]=$WRK_PID
}
# wrk_check OUT: no non-2xx answers, no socket errors other than the final close.
wrk_check() {
  local non2xx
  non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$1")"
  [[ -z "$non2xx" || "$non2xx" == 0 ]] || { cat "$1" >&2; die "wrk saw $non2xx non-2xx/3xx answers"; }
  grep -q ' requests in ' "$1" || { cat "$1" >&2; die "wrk did not finish"; }
}

# load_sessions N S: sends the first S cookies (spread over N hosts) until the gateway has read S
# distinct sessions from Redis since it started (GETs counted by Redis), then stops wrk.
load_sessions() {
  local n="$1" s="$2" want got t0 out="$WORK/touch-$1-$2.txt"
  want=$((GETS_AT_START + s))
  t0="$(date +%s%N)"
  wrk_spread "$out" 900s "$COOKIES" "$s" "$n" /
  while :; do
    got="$(redis_gets)"
    ((got >= want)) && break
    kill -0 "$WRK_PID" 2>/dev/null || { cat "$out" >&2; die "wrk ended before $s sessions were loaded"; }
    sleep 0.2
  done
  stop_process wrk
  wrk_check "$out"
  log "N=$n: $s sessions loaded in $(ms_since "$t0") ms ($(awk '/ requests in / { print $1 }' "$out") requests)"
}

# --- the reload phase ---------------------------------------------------------------
# reload_loop_config COUNT N: a curl config of COUNT requests with session cookies (to /public/
# when no session was minted), alternating app0001 (the app whose file is rewritten) and apps 2..10.
reload_loop_config() {
  local count="$1" n="$2" k host cookie path=/
  local -a cookies
  # Without sessions, the public route (skip_auth_routes ^/public/) is what answers 200.
  ((MAX_SESSIONS > 0)) || path=/public/
  mapfile -t cookies < <(head -n 1000 "$COOKIES")
  for ((k = 0; k < count; k++)); do
    if ((k % 2 == 0 || n == 1)); then host=app0001.example.com; else host="$(printf 'app%04d.example.com' $((2 + (k / 2) % (n < 10 ? n - 1 : 9))))"; fi
    cookie="${cookies[$((k % ${#cookies[@]}))]}"
    printf 'url = "https://%s:%s%s"\nheader = "Cookie: %s"\ncacert = "%s"\nconnect-to = "::127.0.0.1:%s"\noutput = "/dev/null"\nwrite-out = "%%{stderr}%%{http_code}\\n"\nmax-time = 5\nsilent\n' \
      "$host" "$GATEWAY_PORT" "$path" "$cookie" "$CA" "$GATEWAY_PORT"
    if ((k + 1 < count)); then echo next; fi
  done
}

# timed_reload HOW: one reload (HOW = file | sighup); appends "HOW end_to_end_ms" to $RELOAD_TIMES.
timed_reload() {
  local how="$1" g0 g t0 k="$2" dir="$WORK/gw-$RELOAD_APPS/apps.d" up=$((UP_BASE + 1))
  g0="$(generation)"
  [[ -n "$g0" ]] || die "/ready has no config_generation"
  t0="$(date +%s%N)"
  if [[ "$how" == file ]]; then
    stack_auth_app "$dir/.app0001.tmp" app0001.example.com "\"127.0.0.1:$up\"" "timeouts: { read: $((59 + k % 2))s }  # rewrite $k"
    mv -f "$dir/.app0001.tmp" "$dir/app0001.yaml"
  else
    kill -HUP "${PID[gateway]}"
  fi
  while :; do
    g="$(generation)"
    [[ -n "$g" && "$g" -gt "$g0" ]] && break
    (($(ms_since "$t0") < 15000)) || die "reload $how #$k: no new generation after 15 s"
    sleep 0.005
  done
  printf '%s\t%s\n' "$how" "$(ms_since "$t0")" >>"$RELOAD_TIMES"
}

reload_phase() {
  local n="$1" count lines0 k sent failed other zero
  count=$(((RELOADS + RELOAD_SIGHUPS) * (RELOAD_INTERVAL + 1) * RELOAD_RATE + 5 * RELOAD_RATE))
  reload_loop_config "$count" "$n" >"$WORK/loop.curl"
  metrics_to "$WORK/r0"
  lines0="$(wc -l <"$WORK/gateway.log")"
  log "N=$n: reload phase: $RELOADS file rewrites, then $RELOAD_SIGHUPS SIGHUPs, under $RELOAD_RATE requests/s"
  # One status per line on stderr (unbuffered: the loop is stopped with SIGINT at the end).
  curl --rate "$RELOAD_RATE/s" -K "$WORK/loop.curl" >/dev/null 2>"$WORK/loop.codes" &
  PID[loop]=$!
  sleep 2
  for ((k = 1; k <= RELOADS; k++)); do
    timed_reload file "$k"
    sleep "$RELOAD_INTERVAL"
  done
  for ((k = 1; k <= RELOAD_SIGHUPS; k++)); do
    timed_reload sighup "$k"
    sleep "$RELOAD_INTERVAL"
  done
  sleep 1
  stop_process loop
  metrics_to "$WORK/r1"
  sent="$(wc -l <"$WORK/loop.codes")"
  failed="$(awk '$1 != "200"' "$WORK/loop.codes" | wc -l)"
  other="$(status_delta "$WORK/r0" "$WORK/r1" other)"
  zero="$(status_delta "$WORK/r0" "$WORK/r1" 0)"
  tail -n +"$((lines0 + 1))" "$WORK/gateway.log" | grep 'configuration reloaded' \
    | sed -n 's/.*took_ms"\{0,1\}[=:]\([0-9]*\).*/\1/p' >"$WORK/took.txt" || true
  RELOAD_SENT="$sent" RELOAD_FAILED="$failed" RELOAD_OTHER="$other" RELOAD_ZERO="$zero"
  local rejected
  rejected=$(($(metric "$WORK/r1" 'authgate_config_reloads_total{result="failure"}') - $(metric "$WORK/r0" 'authgate_config_reloads_total{result="failure"}')))
  ((rejected == 0)) || die "$rejected reloads were rejected"
  log "N=$n: reloads done: $sent requests during the phase, $failed not 200 (curl), $other non-200 by the gateway's count"
  if ((failed > 0 || other > 0)); then log "WARNING: requests failed during the reloads (see the report)"; fi
  mem_row "after $((RELOADS + RELOAD_SIGHUPS)) reloads"
}

# --- the runs -------------------------------------------------------------------------
LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
RESULT_ROWS="$WORK/rows.tsv"   # N label rss hwm anon file
: >"$RESULT_ROWS"
RELOAD_TIMES="$WORK/reload-times.tsv"
: >"$RELOAD_TIMES"
declare -A STARTUP_MS=() MISSES=()
RELOAD_SENT=0 RELOAD_FAILED=0 RELOAD_OTHER=0 RELOAD_ZERO=0

for n in "${APPS_ARR[@]}"; do
  gw_config "$n"
  MEM="$WORK/mem-$n.tsv"
  : >"$MEM"
  log "N=$n: starting the gateway"
  t0="$(date +%s%N)"
  start gateway env AUTHGATE_LOG=warn,authgate::config=info "$AUTHGATE" run -c "$WORK/gw-$n/gateway.yaml"
  WAIT_TRIES=6000 wait_for gateway curl -sf --max-time 1 "http://127.0.0.1:$ADMIN_PORT/ready"
  STARTUP_MS[$n]="$(ms_since "$t0")"
  apps="$(curl -sf "http://127.0.0.1:$ADMIN_PORT/ready" | sed -n 's/.*"apps":\([0-9]*\).*/\1/p')"
  [[ "$apps" == "$n" ]] || die "N=$n: the gateway serves $apps apps"
  log "N=$n: ready after ${STARTUP_MS[$n]} ms"
  sleep 2
  mem_row idle
  GETS_AT_START="$(redis_gets)"

  # S = 0: public-route traffic over every app (no session is read).
  wrk_spread "$WORK/warm-$n.txt" "$WARM" "$WORK/no-cookie.txt" 1 "$n" /public/
  wait "$WRK_PID" || die "wrk failed (warm-up)"
  unset 'PID[wrk]'
  wrk_check "$WORK/warm-$n.txt"
  metrics_to "$WORK/m-warm"
  [[ "$(status_delta /dev/null "$WORK/m-warm" other)" == 0 ]] || die "N=$n: the warm-up got answers other than 200"
  sleep 2
  mem_row "S=0"

  for s in "${SESS_ARR[@]}"; do
    ((s > 0)) || continue
    load_sessions "$n" "$s"
    sleep 2
    mem_row "S=$s"
  done
  metrics_to "$WORK/m-end"
  misses="$(metric "$WORK/m-end" 'authgate_session_cache_requests_total{result="miss"}')"
  [[ "$(status_delta /dev/null "$WORK/m-end" other)" == 0 ]] || die "N=$n: the gateway answered something other than 200"
  log "N=$n: the gateway counted $misses session cache misses (sessions loaded)"
  MISSES[$n]="$misses"

  if [[ "$n" == "$RELOAD_APPS" ]]; then reload_phase "$n"; fi

  while IFS=$'\t' read -r label rss hwm anon file; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$label" "$rss" "$hwm" "$anon" "$file" >>"$RESULT_ROWS"
    log "N=$n $label: RSS $(mb "$rss") MB, peak $(mb "$hwm") MB, anon $(mb "$anon") MB, file $(mb "$file") MB"
  done <"$MEM"
  stop_process gateway
  mv "$WORK/gateway.log" "$WORK/gateway-$n.log.old"
done

# --- the report ---------------------------------------------------------------------
# row_kb N LABEL COLUMN(3 rss, 4 hwm, 5 anon, 6 file)
row_kb() { awk -F'\t' -v n="$1" -v l="$2" -v c="$3" '$1 == n && $2 == l { print $c }' "$RESULT_ROWS"; }
# stats: "min median max count" of the numbers on stdin.
stats() {
  sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - - 0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    print v[1], m, v[NR], NR
  }'
}

report() {
  local commit machine n s label
  commit="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  machine="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs, kernel $(uname -r)"
  echo "# authgate memory and reload (loadtest/memory.sh)"
  echo
  echo "$(date -u +%Y-%m-%d), $machine; commit $commit; binary $(basename "$AUTHGATE") ($("$AUTHGATE" --version 2>/dev/null || echo '?'));"
  echo "load average before: $LOADAVG_BEFORE. Gateway: server.threads $THREADS, sessions in Redis with"
  echo "cache {max_entries: $CACHE_MAX, ttl: 1h}, one OIDC provider, $UPSTREAMS upstreams (one nginx), apps $([[ "$APP_AUTH" == 1 ]] && echo "with" || echo "without") an auth block."
  echo "Sessions minted with \`authgate session mint\` ($MAX_SESSIONS in ${MINT_SECONDS} s): identity only (subject, email,"
  echo "two groups), no tokens; a session from a real login also holds its ID, access and refresh tokens (the"
  echo "local provider's ID token: $ID_TOKEN_BYTES bytes), which the per-session figure below does not include."
  echo
  echo "## RSS (MB) by apps (N) and cached sessions (S)"
  echo
  local header="| N | start-up ms | idle |" sep="|--:|--:|--:|"
  for s in "${SESS_ARR[@]}"; do header+=" S=$s |"; sep+="--:|"; done
  echo "$header peak (VmHWM) | heap (RssAnon) at max S | N × oauth2-proxy ($SIDECAR_MIB MiB) |"
  echo "$sep--:|--:|--:|"
  for n in "${APPS_ARR[@]}"; do
    local line="| $n | ${STARTUP_MS[$n]} | $(mb "$(row_kb "$n" idle 3)") |"
    for s in "${SESS_ARR[@]}"; do line+=" $(mb "$(row_kb "$n" "S=$s" 3)") |"; done
    local last="S=${SESS_ARR[-1]}"
    local hwm
    hwm="$(awk -F'\t' -v n="$n" '$1 == n { if ($4 > m) m = $4 } END { print m }' "$RESULT_ROWS")"
    line+=" $(mb "$hwm") | $(mb "$(row_kb "$n" "$last" 5)") | $(awk -v n="$n" -v m="$SIDECAR_MIB" 'BEGIN { printf "%.1f GiB", n * m / 1024 }') |"
    echo "$line"
  done
  echo
  echo "Sessions loaded (the gateway's cache misses): $(for n in "${APPS_ARR[@]}"; do printf 'N=%s: %s; ' "$n" "${MISSES[$n]}"; done)"
  echo
  echo "## Where the memory goes"
  echo
  local first="${APPS_ARR[0]}" lo_s hi_s
  if ((${#APPS_ARR[@]} > 1)); then
    echo "- per app: $(awk -v a="$(row_kb "$first" S=0 3)" -v b="$(row_kb "$MAX_APPS" S=0 3)" -v n=$((MAX_APPS - first)) \
      'BEGIN { printf "%.1f kB", (b - a) / n }') of RSS (S=0, after traffic: N=$first → $MAX_APPS), $(awk -v a="$(row_kb "$first" idle 3)" -v b="$(row_kb "$MAX_APPS" idle 3)" -v n=$((MAX_APPS - first)) \
      'BEGIN { printf "%.1f kB", (b - a) / n }') idle (compiled auth policy and route regexes, pool, health checker, metric handles; with traffic also its upstream connections)"
  fi
  if ((${#SESS_ARR[@]} > 1)); then
    lo_s="${SESS_ARR[0]}"; hi_s="${SESS_ARR[-1]}"
    for n in "${APPS_ARR[@]}"; do
      echo "- per cached session, N=$n: $(awk -v a="$(row_kb "$n" "S=$lo_s" 3)" -v b="$(row_kb "$n" "S=$hi_s" 3)" -v d=$((hi_s - lo_s)) \
        'BEGIN { printf "%.0f bytes", (b - a) * 1024 / d }') of RSS (S=$lo_s → $hi_s), $(awk -v a="$(row_kb "$n" "S=$lo_s" 5)" -v b="$(row_kb "$n" "S=$hi_s" 5)" -v d=$((hi_s - lo_s)) \
        'BEGIN { printf "%.0f bytes", (b - a) * 1024 / d }') of heap"
    done
  fi
  echo "- file-backed (binary and libraries): $(mb "$(row_kb "$first" idle 6)") MB"
  if [[ -n "$RELOAD_APPS" ]]; then
    echo
    echo "## Reload of $RELOAD_APPS apps under $RELOAD_RATE requests/s"
    echo
    echo "| what | min | median | max | reloads |"
    echo "|---|--:|--:|--:|--:|"
    read -r a b c d < <(awk -F'\t' '$1 == "file" { print $2 }' "$RELOAD_TIMES" | stats)
    echo "| one app file rewritten → new generation on /ready (ms, incl. the 250 ms debounce) | $a | $b | $c | $d |"
    read -r a b c d < <(awk -F'\t' '$1 == "sighup" { print $2 }' "$RELOAD_TIMES" | stats)
    echo "| SIGHUP → new generation on /ready (ms) | $a | $b | $c | $d |"
    read -r a b c d < <(stats <"$WORK/took.txt")
    echo "| the gateway's own \`took_ms\` (load + parse of every file, build, swap), every reload | $a | $b | $c | $d |"
    echo
    echo "Requests during the reloads: $RELOAD_SENT sent, $RELOAD_FAILED not answered 200 (curl);"
    echo "by the gateway's count, $RELOAD_OTHER answered with a status other than 200 ($RELOAD_ZERO ended without an answer)."
    echo "RSS after the reloads: $(mb "$(row_kb "$RELOAD_APPS" "after $((RELOADS + RELOAD_SIGHUPS)) reloads" 3)") MB."
  fi
  echo
  echo "<details><summary>every reading (kB)</summary>"
  echo
  echo "| N | when | VmRSS | VmHWM | RssAnon | RssFile |"
  echo "|--:|---|--:|--:|--:|--:|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$RESULT_ROWS"
  echo
  echo "</details>"
}

mkdir -p "$(dirname "$RESULTS")"
report | tee "$RESULTS"
log "report written to $RESULTS"
