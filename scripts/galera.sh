#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on loopback, for the tests that need one.
#
#   scripts/galera.sh start    start the missing nodes (bootstrapping when none runs); no-op when up
#   scripts/galera.sh stop     stop every node (fine when none runs)
#   scripts/galera.sh status   each node's state; exits non-zero unless all three are Synced in
#                              one primary component of size 3
#   scripts/galera.sh urls     the node URLs, space-separated, for UOW_TEST_GALERA_URLS
#
# Node N (1..3) is a `mariadbd` with its own generated config (read with --defaults-file, so
# /etc/mysql is never read), datadir, socket, pid and error log, all under $UOW_GALERA_DIR
# (default /var/tmp/uow-galera/nodeN). Ports, all on 127.0.0.1: client 33N6, Galera group
# communication 457N, IST 458N, rsync SST 459N. Clients connect as root with an empty password:
# mysql://root@127.0.0.1:3316/test. The standalone server on 3306 is never touched.
#
# Runs with no input (CI=true); as root, or through `sudo -n` otherwise. Safe to run again.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
base=${UOW_GALERA_DIR:-/var/tmp/uow-galera}
provider=${UOW_GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}
timeout=${UOW_GALERA_TIMEOUT:-180} # seconds one node may take to reach Synced
nodes=(1 2 3)

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# Root on CI images; elsewhere sudo, never prompting (there is no input to answer it).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        command -v sudo >/dev/null || die "not root and no sudo: cannot run '$*'"
        sudo -n "$@"
    fi
}

mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
client=$(command -v mariadb || command -v mysql || echo mariadb)

# ---------------------------------------------------------------- per-node names
dir_of() { echo "$base/node$1"; }
cnf_of() { echo "$base/node$1/my.cnf"; }
data_of() { echo "$base/node$1/data"; }
sock_of() { echo "$base/node$1/mysqld.sock"; }
log_of() { echo "$base/node$1/error.log"; }
port_of() { echo "33${1}6"; }
url_of() { echo "mysql://root@127.0.0.1:$(port_of "$1")/test"; }

urls() {
    local n out=()
    for n in "${nodes[@]}"; do out+=("$(url_of "$n")"); done
    echo "${out[*]}"
}

# The pid of node N's mariadbd, found by its exact command line (the pid file appears only late
# in start-up, after SST); empty when it does not run.
pid_of() {
    local pattern
    pattern="^$(printf '%s' "$mariadbd --defaults-file=$(cnf_of "$1")" | sed 's/[][\.*^$+?(){}|]/\\&/g')( |\$)"
    pgrep -f -- "$pattern" | head -n 1 || true
}
running() { [ -n "$(pid_of "$1")" ]; }

# sql N QUERY: runs QUERY on node N over its socket as root, tab-separated, no headers.
sql() {
    "$client" --no-defaults --protocol=socket -S "$(sock_of "$1")" -uroot -N -B \
        --connect-timeout=3 -e "$2"
}

# "state size cluster_status" of node N (e.g. "Synced 3 Primary"); fails when it does not answer.
wsrep_state() {
    local out
    out=$(sql "$1" "SELECT MAX(IF(VARIABLE_NAME='WSREP_LOCAL_STATE_COMMENT', VARIABLE_VALUE, NULL)),
                           MAX(IF(VARIABLE_NAME='WSREP_CLUSTER_SIZE', VARIABLE_VALUE, NULL)),
                           MAX(IF(VARIABLE_NAME='WSREP_CLUSTER_STATUS', VARIABLE_VALUE, NULL))
                    FROM information_schema.GLOBAL_STATUS" 2>/dev/null) || return 1
    [ -n "$out" ] || return 1
    printf '%s\n' "$out" | tr '\t' ' '
}
synced() { # synced N [SIZE]: node N is Synced in a primary component (of SIZE nodes, if given)
    local state size status
    read -r state size status < <(wsrep_state "$1") || return 1
    [ "$state" = Synced ] && [ "$status" = Primary ] && { [ -z "${2:-}" ] || [ "$size" = "$2" ]; }
}
all_synced() {
    local n
    for n in "${nodes[@]}"; do synced "$n" 3 || return 1; done
}

show_log() { # the tail of node N's logs, after a failure
    local f
    for f in "$(log_of "$1")" "$(dir_of "$1")/mariadbd.out"; do
        if as_root test -s "$f"; then
            printf '\n--- last 40 lines of %s\n' "$f" >&2
            as_root tail -n 40 "$f" >&2
        fi
    done
}

# ---------------------------------------------------------------- status
status() {
    local n pid state size cstatus ok=0
    for n in "${nodes[@]}"; do
        pid=$(pid_of "$n")
        if [ -z "$pid" ]; then
            printf 'node%s 127.0.0.1:%s  down\n' "$n" "$(port_of "$n")"
            ok=1
        elif read -r state size cstatus < <(wsrep_state "$n"); then
            printf 'node%s 127.0.0.1:%s  pid %-7s wsrep_local_state_comment=%s wsrep_cluster_size=%s wsrep_cluster_status=%s\n' \
                "$n" "$(port_of "$n")" "$pid" "$state" "$size" "$cstatus"
            if [ "$state" != Synced ] || [ "$size" != 3 ] || [ "$cstatus" != Primary ]; then ok=1; fi
        else
            printf 'node%s 127.0.0.1:%s  pid %-7s running, not answering yet\n' "$n" "$(port_of "$n")" "$pid"
            ok=1
        fi
    done
    return "$ok"
}

# ---------------------------------------------------------------- setup
ensure_packages() {
    local packages=()
    [ -x "$mariadbd" ] || die "mariadbd is missing (install mariadb-server)"
    [ -f "$provider" ] || dpkg -s galera-4 >/dev/null 2>&1 || packages+=(galera-4)
    command -v rsync >/dev/null || packages+=(rsync)
    if [ "${#packages[@]}" -gt 0 ]; then
        say "installing ${packages[*]}"
        as_root apt-get update -qq
        as_root apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    [ -f "$provider" ] || die "the Galera provider $provider is missing"
    id mysql >/dev/null 2>&1 || die "there is no 'mysql' user to run mariadbd as"
}

write_config() { # write_config N: node N's config, rewritten only when it changed
    local n=$1 dir cnf new
    dir=$(dir_of "$n")
    cnf=$(cnf_of "$n")
    new=$(cat <<EOF
# Generated by scripts/galera.sh: node $n of the uow test Galera cluster. Edits are overwritten.
[mysqld]
user = mysql
basedir = /usr
datadir = $dir/data
socket = $dir/mysqld.sock
pid-file = $dir/mariadbd.pid
log-error = $dir/error.log
bind-address = 127.0.0.1
port = $(port_of "$n")
skip-name-resolve
# As the standalone server (/etc/mysql/my.cnf), so tests see the same defaults.
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
default_storage_engine = InnoDB
binlog_format = ROW
innodb_autoinc_lock_mode = 2
# Small: three servers share a 2-core machine.
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
performance_schema = OFF
wsrep_on = ON
wsrep_provider = $provider
wsrep_cluster_name = uow-galera
wsrep_cluster_address = gcomm://127.0.0.1:4571,127.0.0.1:4572,127.0.0.1:4573
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:457$n
wsrep_node_incoming_address = 127.0.0.1:$(port_of "$n")
wsrep_provider_options = "base_port=457$n;gmcast.listen_addr=tcp://127.0.0.1:457$n;ist.recv_addr=127.0.0.1:458$n;gcache.size=32M;gcache.page_size=32M"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:459$n

[client]
socket = $dir/mysqld.sock
user = root
EOF
)
    as_root install -d -o mysql -g mysql -m 0755 "$dir"
    if [ "$(as_root cat "$cnf" 2>/dev/null || true)" != "$new" ]; then
        printf '%s\n' "$new" | as_root tee "$cnf.tmp" >/dev/null
        as_root chmod 0644 "$cnf.tmp"
        as_root mv "$cnf.tmp" "$cnf"
    fi
}

# init_datadir N: mariadb-install-db, once. A datadir without the marker (an interrupted first
# run) is removed and made again; nodes 2 and 3 get node 1's data by SST when they join anyway.
init_datadir() {
    local n=$1 dir data log
    dir=$(dir_of "$n")
    data=$(data_of "$n")
    as_root test -e "$dir/initialised" && return 0
    say "node$n: initialising $data"
    as_root rm -rf "$data"
    log=$(mktemp)
    if ! as_root mariadb-install-db --defaults-file="$(cnf_of "$n")" --user=mysql \
        --auth-root-authentication-method=normal --skip-test-db --wsrep-on=OFF \
        >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "mariadb-install-db failed for node$n"
    fi
    rm -f "$log"
    as_root touch "$dir/initialised"
}

grastate() { # grastate N FIELD: a field of node N's grastate.dat, empty when absent
    as_root sed -n "s/^$2:[[:space:]]*//p" "$(data_of "$1")/grastate.dat" 2>/dev/null || true
}

# position N: node N's last committed "uuid:seqno" ("" when it has none). After an unclean stop
# grastate.dat says seqno -1; the position is then recovered from InnoDB (as mysqld_safe does).
position() {
    local n=$1 uuid seqno log pos
    uuid=$(grastate "$n" uuid)
    seqno=$(grastate "$n" seqno)
    if [ -z "$uuid" ] || [ "$uuid" = 00000000-0000-0000-0000-000000000000 ]; then
        return 0
    fi
    if [ -n "$seqno" ] && [ "$seqno" != -1 ]; then
        echo "$uuid:$seqno"
        return 0
    fi
    log="$(dir_of "$n")/recover.log"
    as_root rm -f "$log"
    as_root "$mariadbd" --defaults-file="$(cnf_of "$n")" --wsrep-recover --log-error="$log" \
        >/dev/null 2>&1 || true
    pos=$(as_root sed -n 's/.*WSREP: Recovered position: *\([^ ]*\).*/\1/p' "$log" 2>/dev/null | tail -n 1)
    echo "${pos:-$uuid:-1}"
}

# launch N [ARGS...]: starts node N's mariadbd in its own session (it outlives this script).
launch() {
    local n=$1 port
    shift
    port=$(port_of "$n")
    if ss -Hltn "sport = :$port" | grep -q .; then
        die "node$n: port $port is already in use by another process"
    fi
    as_root rm -f "$(sock_of "$n")"
    # shellcheck disable=SC2016 # expanded by the inner sh, from its arguments
    as_root env OUT="$(dir_of "$n")/mariadbd.out" setsid -f sh -c 'exec "$@" >>"$OUT" 2>&1 </dev/null' \
        sh "$mariadbd" --defaults-file="$(cnf_of "$n")" "$@" 9<&- # not holding the lock
}

# wait_synced N SIZE_HINT: waits until node N is Synced in a primary component, failing early
# (with its log) when the process exits.
wait_synced() {
    local n=$1 began=$SECONDS
    while [ $((SECONDS - began)) -lt "$timeout" ]; do
        if synced "$n"; then
            echo "node$n: Synced after $((SECONDS - began)) s"
            return 0
        fi
        if ! running "$n"; then
            sleep 1
            running "$n" || { show_log "$n"; die "node$n exited before reaching Synced"; }
        fi
        sleep 1
    done
    show_log "$n"
    die "node$n did not reach Synced within $timeout s"
}

wait_answering() { # wait_answering N: a running node N answers SQL (e.g. still receiving SST)
    local n=$1 began=$SECONDS
    while [ $((SECONDS - began)) -lt "$timeout" ]; do
        wsrep_state "$n" >/dev/null && return 0
        running "$n" || return 1
        sleep 1
    done
    show_log "$n"
    die "node$n runs but did not answer within $timeout s"
}

# The database `test` and TCP login as root with an empty password, made on a node of the
# primary component (both replicate).
ensure_access() {
    local n=$1
    if ! "$client" --no-defaults -h127.0.0.1 -P"$(port_of "$n")" -uroot --connect-timeout=3 \
        test -e 'SELECT 1' >/dev/null 2>&1; then
        say "node$n: creating the database \`test\` and 'root'@'127.0.0.1' (empty password)"
        sql "$n" "CREATE DATABASE IF NOT EXISTS test;
                  CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
                  ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
                  GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    fi
}

# ---------------------------------------------------------------- start / stop
start() {
    local n pid primary="" best="" best_pos="" best_seqno=-2 pos seqno
    if all_synced; then
        say "Galera cluster already up (3 nodes Synced)"
        status
        return 0
    fi
    ensure_packages
    as_root install -d -m 0755 "$base"
    as_root touch "$base/lock"
    exec 9<"$base/lock"
    flock -w "$timeout" 9 || die "another galera.sh holds $base/lock"

    for n in "${nodes[@]}"; do
        write_config "$n"
        running "$n" || init_datadir "$n"
    done

    # A running node that belongs to a primary component is where the others join.
    for n in "${nodes[@]}"; do
        if running "$n" && wait_answering "$n" && synced "$n"; then
            primary=$n
            break
        fi
    done

    if [ -z "$primary" ]; then
        # Running nodes without a primary component (survivors of a crash that lost quorum):
        # the most advanced one declares itself primary.
        for n in "${nodes[@]}"; do
            if ! running "$n" || ! wsrep_state "$n" >/dev/null; then continue; fi
            seqno=$(sql "$n" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
                              WHERE VARIABLE_NAME = 'WSREP_LAST_COMMITTED'" 2>/dev/null || echo -1)
            if [ "${seqno:--1}" -gt "$best_seqno" ]; then best=$n best_seqno=${seqno:--1}; fi
        done
        if [ -n "$best" ]; then
            say "node$best runs outside a primary component: bootstrapping it (pc.bootstrap)"
            sql "$best" "SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'"
            wait_synced "$best"
            primary=$best
        fi
    fi

    if [ -z "$primary" ]; then
        # No node runs: bootstrap a new primary component from the most advanced node (node 1
        # on a fresh cluster, or after `stop`, which stops it last).
        best="" best_seqno=-2
        for n in "${nodes[@]}"; do
            pos=$(position "$n")
            seqno=${pos##*:}
            seqno=${seqno:--1}
            if [ "$seqno" -gt "$best_seqno" ]; then best=$n best_pos=$pos best_seqno=$seqno; fi
        done
        n=$best
        say "bootstrapping the cluster from node$n (position ${best_pos:-none}) on 127.0.0.1:$(port_of "$n")"
        if as_root test -f "$(data_of "$n")/grastate.dat"; then
            as_root sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' "$(data_of "$n")/grastate.dat"
        fi
        if [ -n "$best_pos" ]; then
            launch "$n" --wsrep-new-cluster --wsrep_start_position="$best_pos"
        else
            launch "$n" --wsrep-new-cluster
        fi
        wait_synced "$n"
        primary=$n
    fi

    ensure_access "$primary"

    for n in "${nodes[@]}"; do
        if running "$n"; then
            wait_answering "$n" || true
            if running "$n"; then
                synced "$n" || wait_synced "$n"
                continue
            fi
        fi
        pos=$(position "$n")
        say "starting node$n on 127.0.0.1:$(port_of "$n") (joins node$primary${pos:+, from $pos})"
        if [ -n "$pos" ]; then
            launch "$n" --wsrep_start_position="$pos"
        else
            launch "$n"
        fi
        wait_synced "$n"
    done

    for n in "${nodes[@]}"; do
        synced "$n" 3 || { status || true; show_log "$n"; die "node$n is not Synced in a cluster of 3"; }
        "$client" --no-defaults -h127.0.0.1 -P"$(port_of "$n")" -uroot --connect-timeout=3 \
            test -e 'SELECT 1' >/dev/null || die "node$n: cannot log in as root over TCP"
    done
    say "Galera cluster up"
    status
    echo "UOW_TEST_GALERA_URLS=\"$(urls)\""
}

stop() {
    local n pid began
    if [ -d "$base" ]; then
        as_root touch "$base/lock"
        exec 9<"$base/lock"
        flock -w "$timeout" 9 || die "another galera.sh holds $base/lock"
    fi
    # Node 1 last: the last node to leave is the one safe to bootstrap from next time.
    for n in 3 2 1; do
        pid=$(pid_of "$n")
        [ -n "$pid" ] || continue
        say "stopping node$n (pid $pid)"
        as_root kill -TERM "$pid" 2>/dev/null || true
        began=$SECONDS
        while kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]; do
            if [ $((SECONDS - began)) -ge "$timeout" ]; then
                echo "node$n did not stop within $timeout s: killing it" >&2
                as_root kill -KILL "$pid" 2>/dev/null || true
                sleep 1
                break
            fi
            sleep 1
        done
    done
    say "Galera cluster stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
urls) urls ;;
*)
    echo "usage: $0 start|stop|status|urls" >&2
    exit 2
    ;;
esac
