# shellcheck shell=bash
# Shared by the scripts: install what is missing, find free ports, start and stop throwaway servers.
# Sourced, not run. Everything started here lives under $STATE_DIR (git-ignored var/).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${STATE_DIR:-$ROOT/var}"
mkdir -p "$STATE_DIR"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG... — installs the Debian packages that are not installed yet (apt-get update first, once).
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The packages every build and run needs.
ensure_base_packages() {
    ensure_packages libhiredis-dev libargon2-dev redis-server redis-tools pkg-config curl python3
    command -v swift >/dev/null || die "swift is not on PATH (Swift 6.2 or later is needed)"
}

# ensure_venv — the git-ignored .venv with the system tests' PyPI packages (Tests/System/requirements.txt), installed
# again only when that file changes.
ensure_venv() {
    ensure_packages python3-venv
    [ -x "$ROOT/.venv/bin/python" ] || python3 -m venv "$ROOT/.venv"
    local wanted stamp="$ROOT/.venv/.system-requirements"
    wanted="$(sha256sum "$ROOT/Tests/System/requirements.txt" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        log "pip install -r Tests/System/requirements.txt"
        "$ROOT/.venv/bin/pip" install -q -r "$ROOT/Tests/System/requirements.txt"
        echo "$wanted" >"$stamp"
    fi
}

# build_product CONFIG PRODUCT… — swift build -c CONFIG of each product; a failed build prints its log and stops the
# script (never a stale binary).
build_product() {
    local config="$1"; shift
    local product output
    for product in "$@"; do
        output="$(cd "$ROOT" && swift build -c "$config" --product "$product" 2>&1)" || { printf '%s\n' "$output" >&2; die "swift build of $product ($config) failed"; }
    done
}

# free_port [OFFSET] — prints a TCP port on 127.0.0.1 that nothing uses now, below the kernel's ephemeral range (which it
# hands out as source ports: a port taken from there can be some client's by the time a server binds it). With
# OFFSET, port + OFFSET is free and below that range too (a cluster node's bus port).
free_port() {
    python3 - "${1:-0}" <<'PY'
import random, socket, sys
offset = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
candidates = range(max(1024, low - 12000 - offset), low - offset)
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); return True
    except OSError:
        return False
    finally:
        s.close()
for port in random.sample(candidates, len(candidates)):
    if free(port) and (offset == 0 or free(port + offset)):
        print(port); break
else:
    sys.exit("no free port below the ephemeral range")
PY
}

# start_redis NAME PORT [extra redis-server args…] — a redis-server as a plain daemon, data in $STATE_DIR/NAME.
start_redis() {
    local name="$1" port="$2"; shift 2
    local dir="$STATE_DIR/$name"
    mkdir -p "$dir"
    local command=(redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" "$@")
    # The exact command, so a drill can restart a node it killed ($dir/restart).
    printf '%q ' "${command[@]}" >"$dir/restart"
    "${command[@]}" >/dev/null
    for _ in $(seq 1 100); do
        redis-cli -p "$port" --no-auth-warning ${REDISCLI_AUTH:+-a "$REDISCLI_AUTH"} ping 2>/dev/null | grep -qE 'PONG|NOAUTH' && return 0
        sleep 0.05
    done
    die "redis-server $name did not start on port $port (see $dir/redis.log)"
}

# stop_pidfile FILE — stops the process whose pid the file holds, if it still runs.
stop_pidfile() { stop_pidfiles "$1"; }

# stop_pidfiles FILE… — stop_pidfile for many processes at once: every one is signalled first, then all get the
# same 5 s to exit (one by one, 18 redis-servers took 41 s at the end of a CI run).
stop_pidfiles() {
    local file pid pids=()
    for file in "$@"; do
        pid="$(cat "$file" 2>/dev/null)" || continue
        if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then pids+=("$pid"); fi
    done
    for _ in $(seq 1 50); do
        local alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        pids=("${alive[@]}")
        [ "${#pids[@]}" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -f "$@"
}

# wait_http URL [SECONDS] — waits until URL answers 200.
wait_http() {
    local url="$1" deadline=$(( $(date +%s) + ${2:-30} ))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# start_instance NAME PORT BINARY [VAR=value…] — one service instance in the background, pid and log in $STATE_DIR/NAME.
start_instance() {
    local name="$1" port="$2" binary="$3"; shift 3
    local dir="$STATE_DIR/$name"
    mkdir -p "$dir"
    # Suites register many users from one address: the registration throttle is lifted unless the caller sets it.
    env PORT="$port" HOST=127.0.0.1 LOG_FORMAT=json REGISTRATION_MAX_PER_ADDRESS=1000000 "$@" "$binary" >"$dir/service.log" 2>&1 &
    echo $! >"$dir/service.pid"
    # For a Prometheus with file_sd_configs over $PROMETHEUS_SD_DIR (scripts/bench DASHBOARD=1): one target per instance.
    if [ -n "${PROMETHEUS_SD_DIR:-}" ]; then
        printf '[{"targets": ["127.0.0.1:%s"], "labels": {"name": "%s"}}]\n' "$port" "$name" >"$PROMETHEUS_SD_DIR/$name.json"
    fi
}

# render_nginx TEMPLATE OUT LISTEN_PORT UPSTREAM_PORT… — fills the loopback nginx template.
render_nginx() {
    local template="$1" out="$2" listen="$3"; shift 3
    local servers="" dir; dir="$(dirname "$out")"
    for port in "$@"; do servers+="        server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'; done
    mkdir -p "$dir/tmp"
    python3 - "$template" "$out" "$listen" "$dir" "$servers" <<'PY'
import sys
template, out, listen, state, servers = sys.argv[1:]
text = open(template).read().replace("@LISTEN@", listen).replace("@STATE@", state).replace("@SERVERS@", servers.rstrip("\n"))
open(out, "w").write(text)
PY
}

# start_nginx CONF — nginx as a plain process (no root needed beyond the port), pid in the conf's folder.
start_nginx() {
    local conf="$1"
    nginx -t -q -c "$conf" -p "$(dirname "$conf")" 2>&1 | grep -v 'could not open error log file' >&2 || true
    nginx -c "$conf" -p "$(dirname "$conf")" 2>/dev/null
}

# The least-privilege Redis ACL the service needs (README: "Redis ACL"): its key prefix only, no channels, and only
# the commands it sends (PING, EVALSHA/EVAL, HGET, DEL) or that its Lua scripts call.
# Behind Sentinel or in a cluster it also sends ROLE (is this node a master?), WAIT (durable writes), CLUSTER SHARDS
# and ASKING. Lifecycle events: their lists and streams, and the webhook consumer group's commands.
SERVICE_ACL_RULES=('~ss:*' resetchannels '&__redis__:invalidate' -@all +ping +evalsha +eval +hget +del +get +set +time +pexpire
    +pexpireat +pexpiretime +zadd +zrem +zrange +zscore +zremrangebyscore +zcard +hset +hmget +incr +pttl +getrange +role +wait '+cluster|shards'
    +asking '+client|id' '+client|tracking' +subscribe +lpush +ltrim +lrange +xadd +xrange +xlen +xdel +xgroup +xreadgroup +xack
    +xclaim +xpending +xinfo)
# service_acl_args USER PASSWORD — redis-server arguments that create that user.
service_acl_args() { printf '%s\n' --user "$1" on ">$2" "${SERVICE_ACL_RULES[@]}"; }

# wrk_warm URL SCRIPT [VAR=value…] — a 2 s warm-up with bench/wrk/SCRIPT ($THREADS threads, $CONNECTIONS connections).
wrk_warm() {
    local url="$1" script="$2"; shift 2
    env "$@" wrk --timeout 30s -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$ROOT/bench/wrk/$script" "$url" >/dev/null 2>&1 || true
}

# wrk_run URL SCRIPT [VAR=value…] — $DURATION seconds of load; prints "req/s p50 p99 p99.9 requests errors".
wrk_run() {
    local url="$1" script="$2"; shift 2
    env "$@" wrk --timeout 30s -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/bench/wrk/$script" "$url" 2>&1 >/dev/null |
        awk '/^RESULT/{print $2, $3, $4, $5, $6, $7}'
}
