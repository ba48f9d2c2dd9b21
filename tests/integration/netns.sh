# Emulated hosts for multi-host tests; sourced after lib.sh.
#
# netns_up N [SLOTS] makes hosts h1..hN on this one machine: each is a
# network namespace with one interface (eth0, 198.18.7.I/24) whose veth peer
# sits on a bridge in a namespace of its own (the "switch").  Nothing is
# added to the root namespace, so every packet stays inside namespaces this
# test made.  Commands run on a host through tests/integration/netns-rsh,
# which also gives them a UTS namespace with the host's name, so
# gethostname() says h1, h2, ...  The file system and process table are
# shared, as on a cluster with a shared file system.
#
#   netns_up N [SLOTS]      hosts h1..hN; writes the hostfile $WORK/hosts
#                           ("198.18.7.I slots=SLOTS", default 2 slots)
#   netns_exec HOST CMD...  CMD on HOST (h1 ... hN)
#   netns_mpirun ARGS...    mpirun ARGS, started on h1, with the rsh agent and
#                           the MCA settings for the emulated network; also
#                           the script $NETNS_MPIRUN (for GRIDRUN_MPIRUN)
#   netns_link HOST down|up cut or restore HOST's link to the switch
#   netns_cable H1 H2 IF NET
#                           a second network: a cable between H1 and H2,
#                           interface IF on each, at NET.I/24 (NET: three
#                           octets, e.g. 198.18.8); mpirun keeps off it
#   netns_ip HOST           HOST's address
#   netns_pids [HOST]       pids of processes on HOST (default: all hosts)
#   netns_down              kill what runs on the hosts, remove everything
#                           (idempotent; also run at exit, via trap)
#
# Skips the test (exit 77) only when not root or when this kernel or
# container cannot make namespaces.  doc/testing-multihost.md has more.

NETNS_SUBNET=198.18.7
NETNS_CIDR=$NETNS_SUBNET.0/24
# Unique per run: parallel `make check -j` and other users of this machine
# never see each other's namespaces.
NETNS_PREFIX="grn-$$-$RANDOM"
NETNS_DIR="$WORK/netns"
NETNS_N=0
NETNS_MAP="$NETNS_DIR/map"
NETNS_MPIRUN="$NETNS_DIR/mpirun"
NETNS_RSH="$NETNS_DIR/rsh"
_netns_made=""

# Run at exit, also on failure and on the watchdog's SIGTERM.
_netns_exit () {
    netns_down
    cleanup
}
trap _netns_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# _netns_ns HOST -> namespace name (hosts are h1..hN).
_netns_ns () {
    case $1 in
        sw) echo "$NETNS_PREFIX-sw" ;;
        h[0-9]*) echo "$NETNS_PREFIX-$1" ;;
        *) return 1 ;;
    esac
}

netns_ip () {
    echo "$NETNS_SUBNET.${1#h}"
}

# Namespaces of runs that died by SIGKILL (no trap ran): their pid is gone
# and they are older than 10 minutes (no test runs that long).
_netns_sweep_stale () {
    local f name pid
    for f in /run/netns/grn-*; do
        [ -e "$f" ] || continue
        name=${f##*/}
        pid=${name#grn-}
        pid=${pid%%-*}
        case $pid in '' | *[!0-9]*) continue ;; esac
        kill -0 "$pid" 2> /dev/null && continue
        [ -n "$(find "$f" -maxdepth 0 -mmin +10 2> /dev/null)" ] || continue
        _netns_kill_ns "$name"
        ip netns del "$name" 2> /dev/null
    done
}

# _netns_kill_ns NS: SIGKILL every process in NS, wait until gone (5 s).
_netns_kill_ns () {
    local i pids
    for i in $(seq 1 50); do
        pids=$(ip netns pids "$1" 2> /dev/null)
        [ -z "$pids" ] && return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2> /dev/null
        sleep 0.1
    done
    echo "netns: processes left in $1: $pids" >&2
    return 1
}

# _netns_probe FROM TO: can FROM reach TO?  A TCP connect to a closed port
# gets "Connection refused" (a RST) from a reachable host, and times out
# or finds no route otherwise; no listener or extra tool needed.
_netns_probe () {
    local out
    out=$(netns_exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$(netns_ip "$2")/9" 2>&1)
    case $out in *"Connection refused"*) return 0 ;; esac
    return 1
}

netns_up () {
    local n=$1 slots=${2:-2} i h ns sw ok
    [ "$(id -u)" -eq 0 ] || skip "multi-host emulation needs root (network namespaces)"
    command -v ip > /dev/null || skip "no 'ip' (iproute2)"
    command -v unshare > /dev/null || skip "no 'unshare' (util-linux)"
    unshare --uts true 2> /dev/null || skip "cannot make UTS namespaces here (unshare --uts)"
    if [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then fail "netns_up: 1 to 250 hosts"; fi
    _netns_sweep_stale
    sw=$(_netns_ns sw)
    if ! ip netns add "$sw" 2> "$WORK/netns-add.err"; then
        skip "cannot make network namespaces here (ip netns add: $(cat "$WORK/netns-add.err"))"
    fi
    _netns_made="$sw"
    mkdir -p "$NETNS_DIR" || fail "mkdir $NETNS_DIR"
    # The agent travels as a copy: mpirun needs it executable, whatever the
    # source tree's modes are.
    cp "$GR_SRCDIR/tests/integration/netns-rsh" "$NETNS_RSH" || fail "cannot copy the rsh agent"
    chmod 0755 "$NETNS_RSH" || fail "chmod $NETNS_RSH"
    : > "$NETNS_MAP"
    : > "$WORK/hosts"
    ip -n "$sw" link set lo up || fail "switch: lo up"
    ip -n "$sw" link add br0 type bridge || fail "switch: cannot make a bridge"
    ip -n "$sw" link set br0 up || fail "switch: br0 up"
    for i in $(seq 1 "$n"); do
        h=h$i
        ns=$(_netns_ns "$h")
        ip netns add "$ns" || fail "ip netns add $ns"
        _netns_made="$_netns_made $ns"
        ip -n "$ns" link set lo up || fail "$h: lo up"
        # Made in the switch namespace, the peer directly in the host's:
        # the names never meet the root namespace's.
        ip -n "$sw" link add "v$i" type veth peer name eth0 netns "$ns" \
            || fail "$h: cannot make a veth pair"
        ip -n "$sw" link set "v$i" master br0 || fail "$h: cannot join the bridge"
        ip -n "$sw" link set "v$i" up || fail "$h: switch port up"
        ip -n "$ns" addr add "$(netns_ip "$h")/24" dev eth0 || fail "$h: address"
        ip -n "$ns" link set eth0 up || fail "$h: eth0 up"
        echo "$h $(netns_ip "$h") $ns v$i" >> "$NETNS_MAP"
        echo "$(netns_ip "$h") slots=$slots" >> "$WORK/hosts"
    done
    NETNS_N=$n
    export GR_NETNS_MAP="$NETNS_MAP"
    _netns_write_mpirun

    # Every host reaches h1 and h1 reaches every host; each says its name.
    for i in $(seq 1 "$n"); do
        h=h$i
        [ "$(netns_exec "$h" hostname)" = "$h" ] || fail "$h: hostname is not $h"
        [ "$i" -eq 1 ] && continue
        ok=0
        for _ in 1 2 3; do
            _netns_probe h1 "$h" && _netns_probe "$h" h1 && ok=1 && break
            sleep 0.5
        done
        [ "$ok" -eq 1 ] || fail "h1 and $h cannot reach each other: $(ip -n "$sw" -br link)"
    done
    return 0
}

# The mpirun wrapper, a script so it can also be GRIDRUN_MPIRUN.
_netns_write_mpirun () {
    cat > "$NETNS_MPIRUN" <<EOF
#!/bin/sh
# mpirun on emulated host h1 (tests/integration/netns.sh)
export GR_NETNS_MAP='$NETNS_MAP'
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec '$NETNS_RSH' --exec h1 mpirun \\
    --mca plm_rsh_agent '$NETNS_RSH' \\
    --mca plm_rsh_no_tree_spawn 1 \\
    --mca btl tcp,self \\
    --mca btl_tcp_if_include $NETNS_CIDR \\
    --mca oob_tcp_if_include $NETNS_CIDR \\
    --mca oob_tcp_keepalive_time 1 \\
    --mca oob_tcp_keepalive_intvl 1 \\
    --mca oob_tcp_keepalive_probes 3 \\
    --bind-to none --oversubscribe "\$@"
EOF
    chmod 0755 "$NETNS_MPIRUN" || fail "cannot write $NETNS_MPIRUN"
}

netns_exec () {
    local h=$1
    shift
    GR_NETNS_MAP="$NETNS_MAP" "$NETNS_RSH" --exec "$h" "$@"
}

netns_mpirun () {
    "$NETNS_MPIRUN" "$@"
}

# netns_site FILE: the site file most multi-host tests use: zone z1,
# hosts h1 and h2 in rack ra, h3 in rack rb.
netns_site () {
    cat > "$1" <<'YAML'
zones:
  - name: z1
    racks:
      - {name: ra, nodes: [h1, h2]}
      - {name: rb, nodes: [h3]}
YAML
}

netns_link () {
    local h=$1 state=$2
    case $state in up | down) ;; *) fail "netns_link $h: up or down, not '$state'" ;; esac
    ip -n "$(_netns_ns sw)" link set "v${h#h}" "$state" || fail "netns_link $h $state"
}

netns_cable () {
    local a=$1 b=$2 dev=$3 net=$4 h
    ip -n "$(_netns_ns "$a")" link add "$dev" type veth peer name "$dev" \
        netns "$(_netns_ns "$b")" || fail "netns_cable $a $b: cannot make a veth pair"
    for h in "$a" "$b"; do
        ip -n "$(_netns_ns "$h")" addr add "$net.${h#h}/24" dev "$dev" \
            || fail "netns_cable: $h: address"
        ip -n "$(_netns_ns "$h")" link set "$dev" up || fail "netns_cable: $h: $dev up"
    done
}

netns_pids () {
    local h
    if [ $# -gt 0 ]; then
        ip netns pids "$(_netns_ns "$1")" 2> /dev/null
        return 0
    fi
    for h in $(seq 1 "$NETNS_N"); do
        ip netns pids "$(_netns_ns "h$h")" 2> /dev/null
    done
}

netns_down () {
    local ns
    [ -n "$_netns_made" ] || return 0
    for ns in $_netns_made; do
        _netns_kill_ns "$ns"
    done
    for ns in $_netns_made; do
        ip netns del "$ns" 2> /dev/null
    done
    _netns_made=""
    NETNS_N=0
    return 0
}
