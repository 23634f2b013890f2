#!/bin/sh
# One Redis Sentinel of authgate's session store (Kubernetes StatefulSet authgate-sentinel, and
# the Docker Compose simulation, which mounts this same file). POSIX sh + redis-cli: runs in
# the official redis:*-alpine image.
#
# Environment (passwords: hex or base64 without spaces; never logged):
#   ANNOUNCE_HOST        this sentinel's stable DNS name
#   INITIAL_MASTER       the data node to monitor when no other sentinel knows the master
#   SENTINELS            "host:port host:port host:port" (all three, this one included)
#   MASTER_NAME          the monitored master's name (default: authgate; gateway.yaml
#                        sessions.redis.sentinel.master must match)
#   QUORUM               sentinels that must agree the master is down (default: 2)
#   DOWN_AFTER_MS        (default 5000), FAILOVER_TIMEOUT_MS (default 60000)
#   BIND                 listen addresses (default: "* -::*", every interface)
#   CONF_DIR             writable directory: Sentinel rewrites its configuration file
#   SENTINEL_PASSWORD    clients (the gateway) and the other sentinels authenticate with it
#   REDIS_SENTINEL_MON_PASSWORD   the data nodes' sentinel-mon ACL user
set -eu

: "${ANNOUNCE_HOST:?}" "${INITIAL_MASTER:?}" "${SENTINELS:?}"
: "${SENTINEL_PASSWORD:?}" "${REDIS_SENTINEL_MON_PASSWORD:?}"
MASTER_NAME=${MASTER_NAME:-authgate}
QUORUM=${QUORUM:-2}
DOWN_AFTER_MS=${DOWN_AFTER_MS:-5000}
FAILOVER_TIMEOUT_MS=${FAILOVER_TIMEOUT_MS:-60000}
CONF_DIR=${CONF_DIR:-/conf}

BIND=${BIND:-"* -::*"}

log() { echo "sentinel: $*" >&2; }

# The master's name as another sentinel knows it, or nothing when none answers.
sentinel_master() {
  for s in $SENTINELS; do
    [ "${s%:*}" = "$ANNOUNCE_HOST" ] && continue
    out=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli -h "${s%:*}" -p "${s##*:}" --raw \
      SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null) || continue
    master=$(echo "$out" | head -n 1)
    case "$master" in
      "" | *ERR* | *NOAUTH* | *WRONGPASS*) continue ;;
      *) echo "$master"; return 0 ;;
    esac
  done
  return 0
}

# An IP address, or a name that resolves (getent: glibc and musl images; nslookup: busybox).
resolves() {
  case "$1" in
    *:* | *[!0-9.]*) ;;
    *) return 0 ;;
  esac
  case "$1" in *:*) return 0 ;; esac
  getent hosts "$1" >/dev/null 2>&1 || nslookup "$1" >/dev/null 2>&1
}

master=$(sentinel_master)
[ -n "$master" ] || master=$INITIAL_MASTER
log "monitoring $MASTER_NAME at $master"
# `sentinel monitor` needs the name to resolve; a data node's DNS record appears with its pod.
i=0
until resolves "$master"; do
  i=$((i + 1))
  [ $i -le 60 ] || { log "$master does not resolve"; exit 1; }
  sleep 2
done

conf="$CONF_DIR/sentinel.conf"
umask 077
cat > "$conf" <<EOF
bind $BIND
port 26379
dir $CONF_DIR
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ANNOUNCE_HOST
sentinel announce-port 26379
requirepass $SENTINEL_PASSWORD
sentinel sentinel-pass $SENTINEL_PASSWORD
sentinel monitor $MASTER_NAME $master 6379 $QUORUM
sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS
sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $MASTER_NAME 1
sentinel auth-user $MASTER_NAME sentinel-mon
sentinel auth-pass $MASTER_NAME $REDIS_SENTINEL_MON_PASSWORD
EOF
exec redis-server "$conf" --sentinel
