# shellcheck shell=bash
# shellcheck disable=SC2034 # the start_* functions set variables for their callers
# The high-availability shapes as plain processes on loopback, for scripts/test, scripts/lib/test-servers and scripts/cluster:
# a master with two replicas watched by three sentinels, and a Redis Cluster of three masters with a replica each.
# Sourced after common.sh. Everything lives under $STATE_DIR/NAME.

# HA_DATA_PASSWORD / HA_SENTINEL_PASSWORD — the passwords the shapes are started with (the data nodes' and the
# sentinels'), so every run exercises AUTH on both.
HA_DATA_PASSWORD="${HA_DATA_PASSWORD:-ha-data-pass}"
HA_SENTINEL_PASSWORD="${HA_SENTINEL_PASSWORD:-ha-sentinel-pass}"

# free_cluster_port — a free port whose cluster bus port (port + 10000) is free too.
free_cluster_port() { free_port 10000; }

# redis_ha_cli PORT ARGS… — redis-cli against a data node of the shapes (with the data password).
redis_ha_cli() { local port="$1"; shift; REDISCLI_AUTH="$HA_DATA_PASSWORD" redis-cli -p "$port" "$@"; }

# start_sentinel_shape NAME — master + 2 replicas + 3 sentinels (quorum 2, down-after-milliseconds 1000).
# Sets SENTINEL_URL (the service's REDIS_URL, without the sentinel password), SENTINEL_MASTER_PORT,
# SENTINEL_REPLICA_PORTS, SENTINEL_PORTS.
start_sentinel_shape() {
    local name="$1" master replica sentinel
    local auth=(--requirepass "$HA_DATA_PASSWORD" --masterauth "$HA_DATA_PASSWORD" "${SHAPE_NODE_ARGS[@]}")
    master="$(free_port)"
    REDISCLI_AUTH="$HA_DATA_PASSWORD" start_redis "$name/master" "$master" "${auth[@]}"
    SENTINEL_MASTER_PORT="$master"; SENTINEL_REPLICA_PORTS=(); SENTINEL_PORTS=()
    for i in 1 2; do
        replica="$(free_port)"
        REDISCLI_AUTH="$HA_DATA_PASSWORD" start_redis "$name/replica-$i" "$replica" "${auth[@]}" --replicaof 127.0.0.1 "$master"
        SENTINEL_REPLICA_PORTS+=("$replica")
    done
    for i in 1 2 3; do
        sentinel="$(free_port)"
        local dir="$STATE_DIR/$name/sentinel-$i"
        mkdir -p "$dir"
        cat >"$dir/sentinel.conf" <<CONF
port $sentinel
bind 127.0.0.1
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
requirepass $HA_SENTINEL_PASSWORD
sentinel sentinel-pass $HA_SENTINEL_PASSWORD
sentinel monitor mymaster 127.0.0.1 $master 2
sentinel auth-pass mymaster $HA_DATA_PASSWORD
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 5000
sentinel parallel-syncs mymaster 2
CONF
        redis-server "$dir/sentinel.conf" --sentinel >/dev/null
        SENTINEL_PORTS+=("$sentinel")
    done
    local hosts="" port
    for port in "${SENTINEL_PORTS[@]}"; do hosts+="${hosts:+,}127.0.0.1:$port"; done
    SENTINEL_URL="redis-sentinel://:$HA_DATA_PASSWORD@$hosts/0#mymaster"
    # Ready when both replicas are in sync (a durable write's WAIT counts only those), and every sentinel knows the
    # master, both replicas and the other sentinels.
    for _ in $(seq 1 200); do
        local ready=1
        [ "$(redis_ha_cli "$master" info replication | grep -c 'state=online')" = 2 ] || ready=0
        for port in "${SENTINEL_PORTS[@]}"; do
            REDISCLI_AUTH="$HA_SENTINEL_PASSWORD" redis-cli -p "$port" sentinel master mymaster 2>/dev/null |
                tr '\n' ' ' | grep -qE 'num-slaves 2 .*num-other-sentinels 2 ' || ready=0
        done
        [ "$ready" = 1 ] && return 0
        sleep 0.1
    done
    die "sentinels of $name did not see the whole shape (see $STATE_DIR/$name)"
}

# start_cluster_shape NAME — 3 masters + 3 replicas (cluster-node-timeout 2000). Sets CLUSTER_URL and CLUSTER_PORTS.
start_cluster_shape() {
    local name="$1" port
    CLUSTER_PORTS=()
    for i in 1 2 3 4 5 6; do
        port="$(free_cluster_port)"
        REDISCLI_AUTH="$HA_DATA_PASSWORD" start_redis "$name/node-$i" "$port" --cluster-enabled yes \
            --cluster-config-file "$STATE_DIR/$name/node-$i/nodes.conf" --cluster-node-timeout 2000 \
            --requirepass "$HA_DATA_PASSWORD" --masterauth "$HA_DATA_PASSWORD" "${SHAPE_NODE_ARGS[@]}"
        CLUSTER_PORTS+=("$port")
    done
    local nodes=()
    for port in "${CLUSTER_PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
    REDISCLI_AUTH="$HA_DATA_PASSWORD" redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$STATE_DIR/$name/create.log" 2>&1 ||
        die "redis-cli --cluster create failed (see $STATE_DIR/$name/create.log)"
    for _ in $(seq 1 300); do
        local ok=1
        for port in "${CLUSTER_PORTS[@]}"; do
            redis_ha_cli "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
        done
        # Every node must also agree there are three masters with a replica each, each replica in sync (a durable
        # write's WAIT counts only those), before a test starts.
        for port in "${CLUSTER_PORTS[@]}"; do
            if redis_ha_cli "$port" role 2>/dev/null | head -1 | grep -q master; then
                redis_ha_cli "$port" info replication | grep -q 'state=online' || ok=0
            fi
        done
        [ "$ok" = 1 ] && [ "$(redis_ha_cli "${CLUSTER_PORTS[0]}" cluster nodes | grep -c slave)" = 3 ] && break
        sleep 0.1
    done
    [ "$ok" = 1 ] || die "cluster $name did not reach cluster_state:ok"
    CLUSTER_URL="redis-cluster://:$HA_DATA_PASSWORD@127.0.0.1:${CLUSTER_PORTS[0]},127.0.0.1:${CLUSTER_PORTS[1]},127.0.0.1:${CLUSTER_PORTS[2]}"
}

# The extra redis-server arguments every node of the shapes gets (the ACL user, say); empty by default.
SHAPE_NODE_ARGS=("${SHAPE_NODE_ARGS[@]+"${SHAPE_NODE_ARGS[@]}"}")
