#!/bin/sh
# One Redis data node of authgate's session store (Kubernetes StatefulSet authgate-redis, and
# the Docker Compose simulation, which mounts this same file). POSIX sh + redis-cli: runs in
# the official redis:*-alpine image.
#
#   redis-node.sh           write the configuration, then exec redis-server
#   redis-node.sh prestop   if this node is the master, let Sentinel move the role away first
#                           (a rolling update then costs one planned failover, not a timeout)
#
# Environment (passwords: hex or base64 without spaces; never logged):
#   ANNOUNCE_HOST        this node's stable DNS name (replicas and sentinels reach it by name)
#   INITIAL_MASTER       the node that is master when no sentinel knows one yet (first start)
#   SENTINELS            "host:port host:port host:port"
#   MASTER_NAME          Sentinel's name for the master (default: authgate)
#   KEY_PREFIX           the gateway user's keys and channels (default: authgate:)
#   MAXMEMORY            e.g. 192mb: keep it below the container's memory limit
#   APPENDONLY           yes (default) or no
#   BIND                 listen addresses (default: "* -::*", every interface)
#   CLI_HOST             where prestop reaches this node (default: 127.0.0.1)
#   CONF_DIR, DATA_DIR   writable directories (configuration with passwords; data)
#   REDIS_ADMIN_PASSWORD, REDIS_REPLICATION_PASSWORD, REDIS_SENTINEL_MON_PASSWORD,
#   AUTHGATE_REDIS_PASSWORD (the gateway's user), SENTINEL_PASSWORD (to ask the sentinels)
set -eu

: "${ANNOUNCE_HOST:?}" "${INITIAL_MASTER:?}" "${SENTINELS:?}"
: "${REDIS_ADMIN_PASSWORD:?}" "${REDIS_REPLICATION_PASSWORD:?}" "${REDIS_SENTINEL_MON_PASSWORD:?}"
: "${AUTHGATE_REDIS_PASSWORD:?}" "${SENTINEL_PASSWORD:?}"
MASTER_NAME=${MASTER_NAME:-authgate}
KEY_PREFIX=${KEY_PREFIX:-authgate:}
MAXMEMORY=${MAXMEMORY:-192mb}
APPENDONLY=${APPENDONLY:-yes}
CONF_DIR=${CONF_DIR:-/conf}
DATA_DIR=${DATA_DIR:-/data}

BIND=${BIND:-"* -::*"}
CLI_HOST=${CLI_HOST:-127.0.0.1}

log() { echo "redis-node: $*" >&2; }

# The master's name as the sentinels know it, or nothing when none answers.
sentinel_master() {
  for s in $SENTINELS; do
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

admin_cli() { REDISCLI_AUTH="$REDIS_ADMIN_PASSWORD" redis-cli --user admin -h "$CLI_HOST" -p 6379 "$@"; }

prestop() {
  [ "$(admin_cli --raw ROLE 2>/dev/null | head -n 1)" = master ] || exit 0
  for s in $SENTINELS; do
    if REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli -h "${s%:*}" -p "${s##*:}" \
      SENTINEL FAILOVER "$MASTER_NAME" 2>/dev/null | grep -q OK; then
      log "asked ${s} to fail over away from this master"
      i=0
      while [ $i -lt 40 ] && [ "$(admin_cli --raw ROLE 2>/dev/null | head -n 1)" = master ]; do
        sleep 0.5
        i=$((i + 1))
      done
      exit 0
    fi
  done
  log "no sentinel accepted a failover; stopping as master"
}

[ "${1:-}" = prestop ] && { prestop; exit 0; }

master=$(sentinel_master)
if [ -z "$master" ]; then
  master=$INITIAL_MASTER
  log "no sentinel knows a master yet: the initial master is $master"
else
  log "the sentinels name $master as master"
fi

conf="$CONF_DIR/redis.conf"
umask 077
cat > "$conf" <<EOF
bind $BIND
port 6379
protected-mode no
dir $DATA_DIR
appendonly $APPENDONLY
save ""
maxmemory $MAXMEMORY
# Sessions must never be evicted to make room: a full Redis refuses writes (the gateway
# answers 503 at sign-in) instead of silently signing people out.
maxmemory-policy noeviction
# The master refuses writes unless a replica is connected and less than 5 s behind, so an
# acknowledged sign-in (SET + WAIT 1) survives a failover.
min-replicas-to-write 1
min-replicas-max-lag 5
replica-announce-ip $ANNOUNCE_HOST
replica-announce-port 6379
masteruser replicator
masterauth $REDIS_REPLICATION_PASSWORD
user default off
user admin on >$REDIS_ADMIN_PASSWORD ~* &* +@all
user replicator on >$REDIS_REPLICATION_PASSWORD -@all +psync +replconf +ping
user sentinel-mon on >$REDIS_SENTINEL_MON_PASSWORD allchannels -@all +multi +slaveof +replicaof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill
user authgate on >$AUTHGATE_REDIS_PASSWORD resetkeys ~${KEY_PREFIX}* resetchannels &${KEY_PREFIX}* +@all -@dangerous +role +wait +info +client|setname +ping
EOF
if [ "$master" != "$ANNOUNCE_HOST" ]; then
  echo "replicaof $master 6379" >> "$conf"
  log "starting as a replica of $master"
else
  log "starting as the master"
fi
exec redis-server "$conf"
