#!/usr/bin/env bash
# loadtest/bench.sh: CPU cost per request of authgate against a bare Pingora proxy (and nginx).
#
# What it does, in one command:
#   1. builds target/release/authgate and target/release/bare-pingora (release, fat LTO);
#   2. makes the dev certificates (certs/make-dev-certs.sh) if they are missing;
#   3. starts, on loopback, each with its own temporary config:
#        - the upstream: nginx, 1 worker, `return 200` with a 100-byte body, plus /healthz;
#        - gateway-plain: `authgate run`, one app app1.example.com -> the upstream (no auth);
#        - bare-pingora: the minimal Pingora TLS proxy of loadtest/bare-pingora;
#        - nginx-tls: nginx as a TLS reverse proxy to the same upstream (a reference point);
#      and waits for each to answer (bounded polling, no fixed sleeps);
#   4. runs wrk against each proxy, ROUNDS times, interleaved (the case order rotates each
#      round), after one short warm-up per case;
#   5. prints a markdown report (medians over rounds) and writes it to loadtest/results/latest.md.
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
#   "Foreign CPU" = the machine's busy time (/proc/stat) minus that of the proxy, the upstream and
#   wrk, during the window: it flags runs disturbed by something else on a shared machine.
#   The run fails if wrk reports any non-2xx/3xx response or more than MAX_SOCKET_ERRORS
#   socket errors in a run.
#
# Usage:
#   loadtest/bench.sh
#   ROUNDS=5 DURATION=15s CASES="gateway-plain bare-pingora" loadtest/bench.sh
#
# Options (environment variables):
#   ROUNDS=3              measured rounds per case
#   DURATION=10s          wrk duration of each measured run
#   WARMUP=3s             wrk warm-up per case before round 1 (0 to skip)
#   CONNECTIONS=64        wrk keep-alive connections
#   THREADS=2             wrk threads
#   PROXY_THREADS=2       worker threads of authgate and bare-pingora, worker processes of nginx-tls
#   CASES="gateway-plain bare-pingora nginx-tls"   which proxies to measure, in this order
#   MAX_SOCKET_ERRORS=10  fail when one run has more socket errors than this
#   FOREIGN_WARN=10       warn when other processes used more than this % of the machine's CPU
#                         during a run (the report has a "foreign CPU %" column per run)
#   SKIP_BUILD=1          use the binaries already in target/release
#   PORT_BASE=18000       ports used: +80 upstream, +443 gateway, +444 bare-pingora,
#                         +445 nginx-tls, +90 gateway admin
#   RESULTS=loadtest/results/latest.md   where the report is written
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
PROXY_THREADS="${PROXY_THREADS:-2}"
CASES="${CASES:-gateway-plain bare-pingora nginx-tls}"
MAX_SOCKET_ERRORS="${MAX_SOCKET_ERRORS:-10}"
FOREIGN_WARN="${FOREIGN_WARN:-10}"
SKIP_BUILD="${SKIP_BUILD:-0}"
PORT_BASE="${PORT_BASE:-18000}"
RESULTS="${RESULTS:-$ROOT/loadtest/results/latest.md}"

UPSTREAM_PORT=$((PORT_BASE + 80))
GATEWAY_PORT=$((PORT_BASE + 443))
BARE_PORT=$((PORT_BASE + 444))
NGINX_TLS_PORT=$((PORT_BASE + 445))
ADMIN_PORT=$((PORT_BASE + 90))
HOST_NAME="app1.example.com"

CERT="$ROOT/certs/dev/example.com.fullchain.crt"
KEY="$ROOT/certs/dev/example.com.key"
CA="$ROOT/certs/dev/ca.crt"
AUTHGATE="$ROOT/target/release/authgate"
BARE="$ROOT/target/release/bare-pingora"
CLK_TCK="$(getconf CLK_TCK)"

log() { echo "bench: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

for tool in nginx wrk curl getconf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH"
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
for c in $CASES; do
  case "$c" in
    gateway-plain|bare-pingora|nginx-tls) ;;
    *) die "unknown case '$c' (known: gateway-plain bare-pingora nginx-tls)" ;;
  esac
done

# --- processes we start, and cleanup ----------------------------------------
WORK="$(mktemp -d /tmp/authgate-bench.XXXXXX)"
declare -A PID=()   # name -> pid of each long-running process we started

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # SIGINT: a fast shutdown for both Pingora (SIGTERM would wait for its grace period) and nginx.
  local name i
  for name in "${!PID[@]}"; do
    kill -INT "${PID[$name]}" 2>/dev/null || true
  done
  for name in "${!PID[@]}"; do
    for ((i = 0; i < 50; i++)); do
      kill -0 "${PID[$name]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    log "failed (exit $status); process logs:"
    for f in "$WORK"/*.log; do
      [[ -s "$f" ]] || continue
      echo "----- $(basename "$f") (last 20 lines)" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run CMD in the background, logging to $WORK/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

# wait_for NAME CMD...: poll CMD until it succeeds (at most ~20 s); fail if NAME died.
wait_for() {
  local name="$1"
  shift
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited during start-up"
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "$name not ready after 20 s"
}

# https_ok PORT: one request through a proxy answers 200 with the upstream's 100-byte body.
https_ok() {
  local body
  body="$(curl -sf --max-time 2 --cacert "$CA" --resolve "$HOST_NAME:$1:127.0.0.1" "https://$HOST_NAME:$1/")" \
    && [[ ${#body} -eq 100 ]]
}

# --- build and certificates ---------------------------------------------------
if [[ "$SKIP_BUILD" != "1" ]]; then
  log "building release binaries (authgate, bare-pingora)"
  (cd "$ROOT" && cargo build --release -p authgate -p bare-pingora)
fi
if [[ " $CASES " == *" gateway-plain "* && ! -x "$AUTHGATE" ]]; then die "$AUTHGATE missing"; fi
if [[ " $CASES " == *" bare-pingora "* && ! -x "$BARE" ]]; then die "$BARE missing"; fi
if [[ ! -f "$CERT" || ! -f "$KEY" || ! -f "$CA" ]]; then
  log "making dev certificates"
  "$ROOT/certs/make-dev-certs.sh"
fi

# --- the upstream: nginx, 1 worker, 200 with a 100-byte body ---------------------
BODY="$(printf 'x%.0s' {1..100})"   # the 100-byte response body
mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/upstream/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/upstream/body;
  proxy_temp_path $WORK/upstream/proxy;
  fastcgi_temp_path $WORK/upstream/fastcgi;
  uwsgi_temp_path $WORK/upstream/uwsgi;
  scgi_temp_path $WORK/upstream/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT reuseport backlog=4096;
    default_type text/plain;
    location = /healthz { return 200 "ok\n"; }
    location = /nginx_status { stub_status; }
    location / { return 200 "$BODY"; }
  }
}
EOF

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
EOF

# --- start everything -------------------------------------------------------------
log "starting the upstream on 127.0.0.1:$UPSTREAM_PORT"
start upstream nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e stderr
wait_for upstream curl -sf --max-time 1 "http://127.0.0.1:$UPSTREAM_PORT/healthz"

for c in $CASES; do
  case "$c" in
    gateway-plain)
      log "starting authgate on 127.0.0.1:$GATEWAY_PORT"
      start gateway-plain env AUTHGATE_LOG=warn "$AUTHGATE" run -c "$WORK/gateway/gateway.yaml"
      wait_for gateway-plain curl -sf --max-time 1 "http://127.0.0.1:$ADMIN_PORT/ready"
      wait_for gateway-plain https_ok "$GATEWAY_PORT"
      ;;
    bare-pingora)
      log "starting bare-pingora on 127.0.0.1:$BARE_PORT"
      start bare-pingora "$BARE" --listen "127.0.0.1:$BARE_PORT" --cert "$CERT" --key "$KEY" \
        --upstream "127.0.0.1:$UPSTREAM_PORT" --threads "$PROXY_THREADS"
      wait_for bare-pingora https_ok "$BARE_PORT"
      ;;
    nginx-tls)
      log "starting nginx-tls on 127.0.0.1:$NGINX_TLS_PORT"
      start nginx-tls nginx -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.conf" -e stderr
      wait_for nginx-tls https_ok "$NGINX_TLS_PORT"
      ;;
  esac
done

port_of() {
  case "$1" in
    gateway-plain) echo "$GATEWAY_PORT" ;;
    bare-pingora) echo "$BARE_PORT" ;;
    nginx-tls) echo "$NGINX_TLS_PORT" ;;
  esac
}

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

# upstream_accepts: connections the upstream nginx has accepted so far.
upstream_accepts() {
  curl -sf --max-time 2 "http://127.0.0.1:$UPSTREAM_PORT/nginx_status" | awk 'NR == 3 { print $1 }'
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

# run_wrk CASE DURATION OUTFILE: run wrk against CASE.
run_wrk() {
  wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "$2" -H "Host: $HOST_NAME" \
    "https://127.0.0.1:$(port_of "$1")/" >"$3" 2>&1
}

ROWS="$WORK/rows.tsv"   # case round cpu_us_per_req req_s p50_ms p99_ms rss_mb upstream_conns non2xx sockerr foreign_pct
: >"$ROWS"

# measure CASE ROUND: one measured wrk run; appends a row to $ROWS.
measure() {
  local c="$1" round="$2" out="$WORK/wrk-$1-$2.txt"
  local acc0 acc1 t0 t1 u0 u1 m0 m1 w0 w1 ns0 ns1
  acc0="$(upstream_accepts)"
  u0="$(cpu_ticks upstream)"
  m0="$(machine_busy_ticks)"
  ns0="$(date +%s%N)"
  children_ticks "$WORK/wrk0"
  t0="$(cpu_ticks "$c")"
  run_wrk "$c" "$DURATION" "$out" || { cat "$out" >&2; die "wrk failed against $c"; }
  t1="$(cpu_ticks "$c")"
  children_ticks "$WORK/wrk1"
  ns1="$(date +%s%N)"
  m1="$(machine_busy_ticks)"
  u1="$(cpu_ticks upstream)"
  acc1="$(upstream_accepts)"
  w0="$(<"$WORK/wrk0")"
  w1="$(<"$WORK/wrk1")"
  kill -0 "${PID[$c]}" 2>/dev/null || die "$c died during the run"

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

  local cpu_us rss_mb foreign
  cpu_us="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  rss_mb="$(awk -v kb="$(peak_rss_kb "$c")" 'BEGIN { printf "%.0f", kb / 1024 }')"
  # CPU used on the machine during the window by anything other than this proxy, the upstream
  # and wrk, as a % of all CPUs: a few % is noise; more means a neighbour disturbed the run.
  foreign="$(awk -v busy=$((m1 - m0)) -v ours=$(((t1 - t0) + (u1 - u0) + (w1 - w0))) -v hz="$CLK_TCK" \
    -v ns=$((ns1 - ns0)) -v cpus="$(nproc)" 'BEGIN { f = (busy - ours) / hz / (ns / 1e9) / cpus * 100; printf "%.0f", (f < 0 ? 0 : f) }')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$round" "$cpu_us" "$rps" "$p50" "$p99" "$rss_mb" \
    "$((acc1 - acc0))" "$non2xx" "$sockerr" "$foreign" >>"$ROWS"
  log "$(printf '%-14s round %s: %6s µs/req  %9s req/s  p50 %s ms  p99 %s ms  upstream conns +%s  socket errors %s  foreign CPU %s%%' \
    "$c" "$round" "$cpu_us" "$rps" "$p50" "$p99" "$((acc1 - acc0))" "$sockerr" "$foreign")"
  if [[ "$foreign" -gt "$FOREIGN_WARN" ]]; then
    log "WARNING: $foreign% of the machine's CPU went to other processes during this run: its numbers are suspect"
  fi
}

# --- the runs ---------------------------------------------------------------------
read -r -a CASE_LIST <<<"$CASES"
N_CASES=${#CASE_LIST[@]}
LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

if [[ "$WARMUP" != "0" ]]; then
  for c in "${CASE_LIST[@]}"; do
    log "warming up $c ($WARMUP)"
    run_wrk "$c" "$WARMUP" "$WORK/warmup-$c.txt" || { cat "$WORK/warmup-$c.txt" >&2; die "wrk failed against $c"; }
  done
fi

for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < N_CASES; i++)); do
    measure "${CASE_LIST[$(((i + r - 1) % N_CASES))]}" "$r"
  done
done
LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- the report -------------------------------------------------------------------
# col CASE N: the values of column N (1-based, see $ROWS) for CASE, one a line.
col() { awk -F'\t' -v c="$1" -v n="$2" '$1 == c { print $n }' "$ROWS"; }
med() { col "$1" "$2" | median; }

report() {
  echo "# authgate load test: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "kernel $(uname -r), $(awk '/^MemTotal:/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo)"
  echo "- load average before / after: $LOADAVG_BEFORE / $LOADAVG_AFTER (the machine may be shared)"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "- wrk: $THREADS threads, $CONNECTIONS keep-alive connections, $DURATION per run, $ROUNDS interleaved rounds" \
    "(warm-up $WARMUP per case); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
  echo "- upstream: $(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, 200 + 100-byte body, HTTP/1.1 keep-alive"
  echo "- proxies: $PROXY_THREADS worker threads (authgate, bare-pingora) / worker processes (nginx-tls);" \
    "TLS terminated with the dev *.example.com certificate (EC P-256)"
  echo
  echo "Medians over rounds. CPU µs/req = utime+stime of the proxy's processes over the wrk window ÷ requests."
  echo
  echo "| case | CPU µs/req | req/s | p50 ms | p99 ms | peak RSS MB | upstream conns opened / run |"
  echo "|---|--:|--:|--:|--:|--:|--:|"
  local c
  for c in "${CASE_LIST[@]}"; do
    printf '| %s | %.1f | %.0f | %.2f | %.2f | %s | %s |\n' "$c" "$(med "$c" 3)" "$(med "$c" 4)" "$(med "$c" 5)" \
      "$(med "$c" 6)" "$(col "$c" 7 | sort -n | tail -n1)" "$(med "$c" 8)"
  done
  echo
  ratio() {
    awk -v a="$(med "$1" 3)" -v b="$(med "$2" 3)" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
  }
  if [[ " $CASES " == *" gateway-plain "* && " $CASES " == *" bare-pingora "* ]]; then
    echo "**CPU per request, gateway-plain / bare-pingora: $(ratio gateway-plain bare-pingora)×**"
  fi
  if [[ " $CASES " == *" gateway-plain "* && " $CASES " == *" nginx-tls "* ]]; then
    echo "CPU per request, gateway-plain / nginx-tls: $(ratio gateway-plain nginx-tls)×"
  fi
  if [[ " $CASES " == *" bare-pingora "* && " $CASES " == *" nginx-tls "* ]]; then
    echo "CPU per request, bare-pingora / nginx-tls: $(ratio bare-pingora nginx-tls)×"
  fi
  awk -F'\t' -v w="$FOREIGN_WARN" '{ if ($11 > m) m = $11; if ($11 > w) n++ } END {
    printf "\nOther processes used at most %d%% of the machine'"'"'s CPU during a run", m
    if (n) printf " (**%d runs above %d%%: treat them with suspicion**)", n, w
    print "."
  }' "$ROWS"
  echo
  echo "<details><summary>every run</summary>"
  echo
  echo "| case | round | CPU µs/req | req/s | p50 ms | p99 ms | upstream conns | non-2xx | socket errors | foreign CPU % |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  sort -t$'\t' -k1,1 -k2,2n "$ROWS" |
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $8, $9, $10, $11 }'
  echo
  echo "</details>"
}

mkdir -p "$(dirname "$RESULTS")"
report | tee "$RESULTS"
log "report written to $RESULTS"
