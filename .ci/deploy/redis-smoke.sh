#!/usr/bin/env bash
# Runs the deploy kit's own Redis scripts (deploy/kubernetes/base/redis/{redis-node,sentinel}.sh,
# used by the Kubernetes StatefulSets and by docker-compose.yaml) with the machine's
# redis-server on loopback addresses 127.0.0.2-6, each on the kit's real ports (6379, 26379):
# a master, a replica and three sentinels. Then checks what the kit promises:
#   - the sentinels agree on the master, found by name;
#   - the gateway's ACL user may SET/GET/WAIT/PUBLISH under its prefix and nothing else;
#   - `min-replicas-to-write 1` (WAIT 1 is acknowledged) and `noeviction` are in force;
#   - `redis-node.sh prestop` on the master hands the role to the replica, and a restarted
#     node rejoins as a replica of the sentinels' master.
# Prints "redis-smoke: N passed, 0 failed". Needs redis-server, redis-sentinel, redis-cli.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
scripts="$root/deploy/kubernetes/base/redis"
work="$(mktemp -d)"
pids=()
passed=0
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "redis-smoke: FAILED: $*" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
}
ok() { passed=$((passed + 1)); echo "redis-smoke: ok: $*"; }

for a in 2 3 4 5 6; do
  if (exec 3<>"/dev/tcp/127.0.0.$a/6379") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.$a/26379") 2>/dev/null; then
    fail "127.0.0.$a:6379 or :26379 is already in use (a Redis bound to every interface?)"
  fi
done

export REDIS_ADMIN_PASSWORD REDIS_REPLICATION_PASSWORD REDIS_SENTINEL_MON_PASSWORD
export AUTHGATE_REDIS_PASSWORD SENTINEL_PASSWORD
REDIS_ADMIN_PASSWORD=$(openssl rand -hex 16)
REDIS_REPLICATION_PASSWORD=$(openssl rand -hex 16)
REDIS_SENTINEL_MON_PASSWORD=$(openssl rand -hex 16)
AUTHGATE_REDIS_PASSWORD=$(openssl rand -hex 16)
SENTINEL_PASSWORD=$(openssl rand -hex 16)
export INITIAL_MASTER=127.0.0.2 SENTINELS="127.0.0.4:26379 127.0.0.5:26379 127.0.0.6:26379"
export APPENDONLY=no MAXMEMORY=32mb DOWN_AFTER_MS=1000 FAILOVER_TIMEOUT_MS=5000

start_node() { # address
  mkdir -p "$work/n$1"
  ANNOUNCE_HOST=$1 BIND=$1 CLI_HOST=$1 CONF_DIR="$work/n$1" DATA_DIR="$work/n$1" \
    sh "$scripts/redis-node.sh" > "$work/node-$1.log" 2>&1 &
  pids+=($!)
  disown "$!"
}
start_sentinel() { # address
  mkdir -p "$work/s$1"
  ANNOUNCE_HOST=$1 BIND=$1 CONF_DIR="$work/s$1" sh "$scripts/sentinel.sh" > "$work/sentinel-$1.log" 2>&1 &
  pids+=($!)
  disown "$!"
}
admin() { REDISCLI_AUTH="$REDIS_ADMIN_PASSWORD" redis-cli --user admin -h "$1" -p 6379 --raw "${@:2}"; }
gateway() { REDISCLI_AUTH="$AUTHGATE_REDIS_PASSWORD" redis-cli --user authgate -h "$1" -p 6379 --raw "${@:2}"; }
sentinel() { REDISCLI_AUTH="$SENTINEL_PASSWORD" redis-cli -h "$1" -p 26379 --raw "${@:2}"; }
wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for: $what"
    sleep 0.2
  done
}
role_is() { [ "$(admin "$1" ROLE 2>/dev/null | head -n 1)" = "$2" ]; }
synced() { [[ $(admin "$1" INFO replication) == *master_link_status:up* ]]; }
all_sentinels_name() { # master
  for s in 127.0.0.4 127.0.0.5 127.0.0.6; do
    [ "$(sentinel $s SENTINEL get-master-addr-by-name authgate 2>/dev/null | head -n 1)" = "$1" ] || return 1
  done
}
replicas_known() { [[ $(sentinel 127.0.0.4 SENTINEL replicas authgate) == *127.0.0.3* ]]; }

start_node 127.0.0.2
start_node 127.0.0.3
start_sentinel 127.0.0.4
start_sentinel 127.0.0.5
start_sentinel 127.0.0.6
wait_for 20 "127.0.0.2 is master" role_is 127.0.0.2 master
wait_for 20 "127.0.0.3 replicates" synced 127.0.0.3
wait_for 20 "every sentinel names 127.0.0.2" all_sentinels_name 127.0.0.2
ok "master 127.0.0.2, replica in sync, three sentinels agree"

[ "$(admin 127.0.0.2 CONFIG GET maxmemory-policy | tail -n 1)" = noeviction ] || fail "maxmemory-policy"
[ "$(admin 127.0.0.2 CONFIG GET min-replicas-to-write | tail -n 1)" = 1 ] || fail "min-replicas-to-write"
ok "noeviction and min-replicas-to-write 1"

[ "$(gateway 127.0.0.2 SET authgate:s:smoke v PX 60000)" = OK ] || fail "gateway SET under its prefix"
[ "$(gateway 127.0.0.2 WAIT 1 2000)" = 1 ] || fail "WAIT 1 not acknowledged by the replica"
[ "$(gateway 127.0.0.2 GET authgate:s:smoke)" = v ] || fail "gateway GET"
[[ $(gateway 127.0.0.2 PUBLISH authgate:inv x) =~ ^[0-9]+$ ]] || fail "gateway PUBLISH on its channel"
[[ $(gateway 127.0.0.2 ROLE) == master* ]] || fail "gateway ROLE"
ok "the gateway user may SET, WAIT, GET, PUBLISH and ROLE under authgate:"

# (Output captured first: `cmd | grep -q` would kill cmd with SIGPIPE under pipefail.)
refused() { # pattern command...
  local pattern=$1 out
  shift
  out=$("$@" 2>&1 || true)
  [[ $out =~ $pattern ]]
}
refused NOPERM gateway 127.0.0.2 GET other:key || fail "the gateway user read a key outside its prefix"
refused NOPERM gateway 127.0.0.2 PUBLISH other x || fail "the gateway user published outside its prefix"
refused NOPERM gateway 127.0.0.2 FLUSHALL || fail "the gateway user may FLUSHALL"
refused NOPERM gateway 127.0.0.2 CONFIG GET maxmemory || fail "the gateway user may CONFIG"
refused 'WRONGPASS|NOAUTH' env REDISCLI_AUTH=x redis-cli -h 127.0.0.2 -p 6379 GET authgate:s:smoke \
  || fail "the default user is not off"
refused 'WRONGPASS|NOAUTH|invalid' env REDISCLI_AUTH=wrong redis-cli -h 127.0.0.4 -p 26379 PING \
  || fail "a sentinel answered a wrong password"
ok "other prefixes, FLUSHALL, CONFIG, the default user and unauthenticated sentinel clients are refused"

wait_for 20 "the sentinels know the replica" replicas_known
CONF_DIR="$work/n127.0.0.2" DATA_DIR="$work/n127.0.0.2" ANNOUNCE_HOST=127.0.0.2 CLI_HOST=127.0.0.2 \
  timeout 30 sh "$scripts/redis-node.sh" prestop 2>> "$work/prestop.log" || fail "prestop failed"
wait_for 20 "127.0.0.3 is the new master" role_is 127.0.0.3 master
wait_for 20 "every sentinel names 127.0.0.3" all_sentinels_name 127.0.0.3
ok "prestop on the master hands the role to the replica"

# Restart the old master as a fresh process: it must come back as a replica of the new master.
kill -9 "${pids[0]}"
start_node 127.0.0.2
wait_for 30 "127.0.0.2 rejoins as a replica" synced 127.0.0.2
[[ $(cat "$work/node-127.0.0.2.log") == *"the sentinels name 127.0.0.3 as master"* ]] || fail "restart ignored the sentinels"
[ "$(gateway 127.0.0.3 GET authgate:s:smoke)" = v ] || fail "the session did not survive the failover"
ok "a restarted node asks the sentinels and rejoins as a replica; the session survived"

echo "redis-smoke: $passed passed, 0 failed"
