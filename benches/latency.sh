#!/usr/bin/env bash
# W1, W2 and W6 on PostgreSQL through a link with a 1 ms round trip (BENCHMARKS.md, "Running
# them"): the unit of work against hand-written Diesel, the per-row UPDATE loop and the
# one-statement UPDATE .. FROM included, then the table of medians and ratios.
#
#   bash benches/latency.sh                        # as root; about 6 minutes
#   bash benches/latency.sh -- w2_update           # arguments go to `cargo bench`
#
# Where things run. The bench runs here, in this network namespace, as usual. The server is a
# throwaway PostgreSQL cluster (initdb into a mktemp directory, run as user postgres, trust
# authentication for the bench's address only, no TLS, autovacuum off like the main server, a
# `test` database) inside a network namespace of its own, listening on that namespace's end of
# the link and nowhere else: the only way to it is through the link, and the main server
# (127.0.0.1:5432) is left alone.
#
# The link. Two TUN devices, point to point: uowrtt0 here ($net.1) and uowrtt1 in the
# namespace ($net.2), joined by benches/rtt_link.py, which holds every packet 500 µs in each
# direction (1 ms round trip) and passes them on in order. The usual way to build this is a veth
# pair with `tc qdisc add dev <veth> root netem delay 500us` on both ends; this machine's kernel
# is built without sch_netem (CONFIG_NET_SCH_NETEM is not set, and it loads no modules), so the
# delay is done in user space, at real-time priority. Nothing routes beyond the two addresses.
# Before the run a timed loop of `SELECT 1` over the link must take between 0.9 and 3 ms
# (median), or the script stops; the link's own account of how late it released packets is
# printed at the end.
#
# Everything it makes (the namespace, the devices, the link process, the server and its
# directory) is removed on exit, also after a failure or Ctrl-C, and checked to be gone. A run
# killed with SIGKILL leaves them; the next run says so and how to remove them.
#
# Results go to criterion's directory like benches/run.sh's (which empties it first: run this
# after it), in groups named `<workload>_postgres_rtt1ms`; this script removes only those before
# it runs. The summary is printed and written to $target/criterion/uow-summary-rtt1ms.md.
#
# UOW_RTT_NET (default 10.213.17) is the first three parts of the link's two addresses;
# UOW_RTT_PG_BIN (default: the newest /usr/lib/postgresql/*/bin) holds initdb and pg_ctl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"

rtt_label=1ms
one_way_us=500
net="${UOW_RTT_NET:-10.213.17}"
bench_addr="$net.1"
server_addr="$net.2"
port=5432
ns=uow-rtt
bench_dev=uowrtt0
server_dev=uowrtt1

die() {
    echo "latency.sh: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (a network namespace, TUN devices, a server run as postgres)"
pg_bin="${UOW_RTT_PG_BIN:-$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)}"
[ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] || die "no initdb/pg_ctl in '$pg_bin' (set UOW_RTT_PG_BIN)"
id postgres >/dev/null 2>&1 || die "no user postgres to run the server as"
for tool in ip psql python3 runuser; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -c /dev/net/tun ] || die "no /dev/net/tun"

if ip netns list | grep -qw "$ns" || ip link show "$bench_dev" >/dev/null 2>&1; then
    die "a namespace $ns or a device $bench_dev exists: left by a run that was killed hard?
    remove them with: kill \$(ip netns pids $ns); ip netns del $ns; and delete its /tmp/uow-rtt.* directory"
fi
if ip -4 -o addr show | grep -qF " $net."; then
    die "addresses $net.* are in use here; choose other ones with UOW_RTT_NET"
fi

cargo_args=()
bench_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then
        shift
        bench_args=("$@")
        break
    fi
    cargo_args+=("$1")
    shift
done

# Compiled before anything is made: a build error leaves nothing to clean, and no compile runs
# on the cores while the link does.
cargo bench --bench workloads --features postgres "${cargo_args[@]}" --no-run

dir=""
link_pid=""
server_started=0

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ "$server_started" = 1 ]; then
        ip netns exec "$ns" runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    fi
    if [ -n "$link_pid" ]; then
        kill -TERM "$link_pid" 2>/dev/null
        wait "$link_pid" 2>/dev/null
        [ -f "$dir/link.log" ] && sed -n 's/^/link: /p' "$dir/link.log" | grep -v '^link: ready'
    fi
    if ip netns list | grep -qw "$ns"; then
        # Whatever still runs in the namespace was started here (a server that did not stop).
        local pids
        pids=$(ip netns pids "$ns")
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null
            sleep 1
        fi
        ip netns del "$ns"
    fi
    ip link del "$bench_dev" 2>/dev/null
    [ -n "$dir" ] && rm -rf "$dir"

    local left=""
    ip netns list | grep -qw "$ns" && left+=" namespace $ns;"
    ip link show "$bench_dev" >/dev/null 2>&1 && left+=" device $bench_dev;"
    [ -n "$dir" ] && pgrep -f -- "$dir" >/dev/null && left+=" processes of $dir;"
    [ -n "$dir" ] && [ -e "$dir" ] && left+=" directory $dir;"
    if [ -n "$left" ]; then
        echo "latency.sh: could not remove:$left" >&2
        [ "$rc" = 0 ] && rc=1
    else
        echo "latency.sh: namespace, link, server and its directory removed"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dir=$(mktemp -d /tmp/uow-rtt.XXXXXX)
chown postgres:postgres "$dir"
as_postgres() {
    runuser -u postgres -- "$@"
}

echo "latency.sh: a throwaway cluster in $dir ($pg_bin)"
as_postgres "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
echo "host all postgres $bench_addr/32 trust" >>"$dir/data/pg_hba.conf"

ip netns add "$ns"
python3 benches/rtt_link.py --netns "$ns" --local "$bench_dev" --remote "$server_dev" \
    --delay-us "$one_way_us" >"$dir/link.log" 2>&1 &
link_pid=$!
for _ in $(seq 100); do
    grep -q '^ready' "$dir/link.log" && break
    kill -0 "$link_pid" 2>/dev/null || { cat "$dir/link.log" >&2; die "the link did not start"; }
    sleep 0.1
done
grep -q '^ready' "$dir/link.log" || die "the link did not start within 10 s"
grep '^ready; ' "$dir/link.log" | sed 's/^ready; /latency.sh: link: /' >&2 || true
ip addr add "$bench_addr" peer "$server_addr" dev "$bench_dev"
ip link set "$bench_dev" up
ip -n "$ns" link set lo up
ip -n "$ns" addr add "$server_addr" peer "$bench_addr" dev "$server_dev"
ip -n "$ns" link set "$server_dev" up

server_started=1
ip netns exec "$ns" runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
    -w -t 60 -o "-c listen_addresses=$server_addr -p $port -k $dir -c autovacuum=off" start \
    >/dev/null || { cat "$dir/server.log" >&2; die "the server did not start"; }

admin_url="postgres://postgres@$server_addr:$port/postgres"
url="postgres://postgres@$server_addr:$port/test"
psql "$admin_url" -XAqt -c 'CREATE DATABASE test'

# One connection, 200 statements: the round trip a statement pays, client and server included.
rtt_ms=$(
    {
        echo '\timing on'
        for _ in $(seq 200); do echo 'SELECT 1;'; done
    } | psql "$url" -XAqt | awk '/^Time:/ { print $2 }' | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'
)
echo "latency.sh: SELECT 1 over the link: median $rtt_ms ms (200 statements, one connection)"
awk -v t="$rtt_ms" 'BEGIN { exit !(t >= 0.9 && t <= 3.0) }' ||
    die "a round trip of $rtt_ms ms is not about 1 ms: the link is not what the results would be named after"

rm -rf "$target"/criterion/*_postgres_rtt"$rtt_label"
UOW_BENCH_RTT="$rtt_label" UOW_TEST_POSTGRES_URL="$url" \
    cargo bench --bench workloads --features postgres "${cargo_args[@]}" -- "${bench_args[@]}"

python3 benches/summarize.py --backend "postgres_rtt$rtt_label" \
    --markdown "$target/criterion/uow-summary-rtt$rtt_label.md"
