#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, from the installed rabbitmq-server (no Docker),
# beside the shared node, which it never touches: `make cluster-up`, `make cluster-status`,
# `make cluster-down`.
#
#   scripts/cluster.sh up       start the nodes that are not running, join them into one cluster,
#                               and print the AMQP_URL that lists them (idempotent)
#   scripts/cluster.sh status   each node: running or not, its ports, the cluster it sees
#   scripts/cluster.sh down     stop every node and remove its directory (idempotent)
#
# Nodes `pp_cluster_N@localhost` (N = 1, 2, 3). Node N listens for AMQP on 127.0.0.1 at
# PP_CLUSTER_PORT + N - 1 (default 5681, 5682, 5683) and for Erlang distribution (clustering
# and rabbitmqctl) at that port + 20000 (25681…): never 5672 and 25672, which the shared node
# holds. Each node keeps its data, logs and configuration under PP_CLUSTER_DIR (default
# /tmp/pp_cluster/<node>). The nodes share the Erlang cookie of the rabbitmq user, as every
# node started from the package does. Every rabbitmqctl call is bounded (PP_CLUSTER_TIMEOUT
# seconds, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
log_as cluster

base_port=${PP_CLUSTER_PORT:-5681}
dir=${PP_CLUSTER_DIR:-/tmp/pp_cluster}
limit=${PP_CLUSTER_TIMEOUT:-120}
server=/usr/sbin/rabbitmq-server
ctl=/usr/sbin/rabbitmqctl
nodes=(pp_cluster_1@localhost pp_cluster_2@localhost pp_cluster_3@localhost)

# The AMQP port of node index I (0, 1, 2) and its distribution port.
amqp_port() { echo $((base_port + $1)); }
dist_port() { echo $((base_port + $1 + 20000)); }
node_dir() { echo "$dir/${nodes[$1]%@*}"; }

# rabbitmqctl against node index I, bounded in time; quiet.
ctl_node() {
    local index=$1
    shift
    timeout "$limit" "$ctl" -q -n "${nodes[$index]}" --timeout "$limit" "$@"
}

running() { ctl_node "$1" status >/dev/null 2>&1; }

# Whether something other than this node listens on PORT of 127.0.0.1.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_node() {
    local index=$1 node=${nodes[$1]} amqp dist home
    amqp=$(amqp_port "$index")
    dist=$(dist_port "$index")
    home=$(node_dir "$index")
    for port in "$amqp" "$dist"; do
        port_taken "$port" && die "port $port is taken by another program: set PP_CLUSTER_PORT to a free range (it uses PP_CLUSTER_PORT..+2 and the same +20000)"
    done
    mkdir -p "$home/log" "$home/data"
    # A partition is healed by restarting the side that lost (autoheal): a node frozen past the
    # tick time (a long GC pause, a suspended VM, SIGSTOP) rejoins by itself, where with
    # pause_minority it stayed apart until restarted by hand. A silent peer is declared down
    # within 10 s (net_ticktime; Erlang's default is 60 s).
    printf 'listeners.tcp.local = 127.0.0.1:%s\ncluster_name = pp_cluster\ncluster_partition_handling = autoheal\n' "$amqp" >"$home/rabbitmq.conf"
    printf '[{kernel, [{net_ticktime, 10}]}].\n' >"$home/advanced.config"
    : >"$home/plugins"
    # Run as root, rabbitmq-server drops to the rabbitmq user: the directory must be theirs.
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$dir"; fi
    log "starting $node: AMQP 127.0.0.1:$amqp, distribution $dist, files in $home"
    RABBITMQ_NODENAME=$node RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$amqp \
        RABBITMQ_DIST_PORT=$dist RABBITMQ_CONFIG_FILE=$home/rabbitmq.conf \
        RABBITMQ_ADVANCED_CONFIG_FILE=$home/advanced.config \
        RABBITMQ_MNESIA_BASE=$home/data RABBITMQ_LOG_BASE=$home/log \
        RABBITMQ_ENABLED_PLUGINS_FILE=$home/plugins RABBITMQ_PID_FILE=$home/node.pid \
        timeout "$limit" "$server" -detached
    ctl_node "$index" wait "$home/node.pid" || die "$node did not start within ${limit}s: see $home/log"
}

# The nodes NODE index I sees running in its cluster, one per line.
members() {
    ctl_node "$1" cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin).get("running_nodes", [])))'
}

up() {
    [ -x "$server" ] && [ -x "$ctl" ] || die "rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server; make setup installs it)"
    for index in 0 1 2; do
        if running "$index"; then
            log "${nodes[$index]} is running (AMQP 127.0.0.1:$(amqp_port "$index"))"
        else
            start_node "$index"
        fi
    done
    for index in 1 2; do
        if members "$index" | grep -qx "${nodes[0]}"; then
            continue
        fi
        log "joining ${nodes[$index]} to ${nodes[0]} (output in $dir/join.log)"
        {
            ctl_node "$index" stop_app &&
                ctl_node "$index" reset &&
                ctl_node "$index" join_cluster "${nodes[0]}" &&
                ctl_node "$index" start_app
        } >>"$dir/join.log" 2>&1 || die "${nodes[$index]} could not join ${nodes[0]}: see $dir/join.log"
    done
    status
    local urls=() index
    for index in 0 1 2; do
        urls+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$index")/%2f")
    done
    log "ready; point pp at it with:"
    (IFS=,; printf 'AMQP_URL=%s PP_QUEUE_TYPE=quorum\n' "${urls[*]}")
}

status() {
    local index seen
    for index in 0 1 2; do
        if running "$index"; then
            seen=$(members "$index" | sed 's/@localhost//' | paste -sd ' ' -)
            log "${nodes[$index]} running: AMQP 127.0.0.1:$(amqp_port "$index"), distribution $(dist_port "$index"); cluster: $seen"
        else
            log "${nodes[$index]} not running (AMQP port $(amqp_port "$index"))"
        fi
    done
}

down() {
    local index home
    for index in 0 1 2; do
        home=$(node_dir "$index")
        if running "$index"; then
            log "stopping ${nodes[$index]}"
            if [ -f "$home/node.pid" ]; then
                ctl_node "$index" stop "$home/node.pid" || true
            else
                ctl_node "$index" stop || true
            fi
        fi
    done
    rm -rf "$dir"
    log "stopped; $dir removed"
}

case ${1:-} in
    up) up ;;
    status) status ;;
    down) down ;;
    *) die "usage: scripts/cluster.sh up|status|down" ;;
esac
