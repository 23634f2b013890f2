# shellcheck shell=bash
# loadtest/lib/proc.sh: the processes a load-test script starts, and their cleanup; shared by
# loadtest/bench.sh, loadtest/run-k6.sh and loadtest/memory.sh. Sourced, never run.
#
# The caller defines, before sourcing: WORK (a private temporary directory), an associative
# array PID (name -> pid), `log MSG` and `die MSG`. Optional: KEEP_WORK=1 keeps $WORK;
# WAIT_TRIES (default 200, tenths of a second) bounds `wait_for`.

# stop_process NAME: SIGINT (a fast shutdown for Pingora, whose SIGTERM waits for its grace
# period, nginx and wrk), then SIGKILL after 5 s.
stop_process() {
  local name="$1" i
  [[ -n "${PID[$name]:-}" ]] || return 0
  kill -INT "${PID[$name]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "${PID[$name]}" 2>/dev/null || true
  wait "${PID[$name]}" 2>/dev/null || true
  unset "PID[$name]"
}

# On exit: stop everything started; on failure (other than 99, "thresholds crossed" for k6),
# show the tail of each process log.
cleanup() {
  local status=$? name f
  trap - EXIT INT TERM
  for name in "${!PID[@]}"; do kill -INT "${PID[$name]}" 2>/dev/null || true; done
  for name in "${!PID[@]}"; do stop_process "$name"; done
  if [[ $status -ne 0 && $status -ne 99 ]]; then
    log "failed (exit $status); process logs:"
    for f in "$WORK"/*.log; do
      [[ -s "$f" ]] || continue
      echo "----- $(basename "$f") (last 20 lines)" >&2
      tail -n 20 "$f" >&2
    done
  fi
  if [[ "${KEEP_WORK:-0}" == 1 ]]; then log "kept $WORK (logs, configuration, cookies)"; else rm -rf "$WORK"; fi
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

# wait_for NAME CMD...: poll CMD until it succeeds (at most WAIT_TRIES/10 s); fail if NAME died.
wait_for() {
  local name="$1"
  shift
  local i tries="${WAIT_TRIES:-200}"
  for ((i = 0; i < tries; i++)); do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited during start-up"
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "$name not ready after $((tries / 10)) s"
}
