#!/usr/bin/env bash
# A live single-node Slurm cluster on this machine, for the tests and for trying recipes/launch.slurm and
# `recipes/ablate.py --launcher slurm` before a real cluster: slurmctld + slurmd from Debian's packages
# (slurm-wlm, munge), this machine as the one node with all its CPUs, one partition.
#
#   sudo scripts/local_slurm.sh start    # install (apt-get) if needed, configure, start; idempotent
#   scripts/local_slurm.sh status        # exit 0 when the cluster takes jobs
#   sudo scripts/local_slurm.sh stop     # cancel every job, stop the daemons this script started
#
# Needs root (it installs packages and writes /etc/slurm/slurm.conf) and a Debian or Ubuntu system. It only
# ever manages its own configuration: an /etc/slurm/slurm.conf it did not write is left alone (and start
# refuses). State and logs: /var/lib/emoreg-local-slurm. Ports: two free ones, chosen at start.
set -euo pipefail

STATE=${EMOREG_SLURM_STATE:-/var/lib/emoreg-local-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# Written by emoreg-hf scripts/local_slurm.sh"
PARTITION=local
WAIT_S=${EMOREG_SLURM_WAIT_S:-60}

say() { echo "local_slurm: $*"; }
die() { echo "local_slurm: $*" >&2; exit 1; }

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

ours() { [[ -f $CONF ]] && head -n 1 "$CONF" | grep -qF "$MARKER"; }

cluster_up() {
    # The controller answers and the node takes jobs (idle, mixed or allocated).
    command -v sinfo >/dev/null || return 1
    local state
    state=$(timeout 10 sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n 1) || return 1
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

free_port() {
    # A TCP port nothing listens on (bash's /dev/tcp: a refused connection means free).
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free TCP port found"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurmctld/slurmd/munge are not installed and apt-get is missing: install Slurm (slurm-wlm) and munge with this system's package manager"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; } \
        || die "apt-get could not install slurm-wlm and munge"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return  # a munged already answers (ours or the system's)
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        mungekey --create --keyfile /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/munged.ours"
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

write_config() {
    local node cpus memory ctld_port d_port
    node=$(hostname -s)
    # The node as slurmd sees it (CPUs, sockets, cores, threads, memory), so slurmd never drains it.
    read -r cpus memory < <(slurmd -C | awk '
        {for (i = 1; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}}
        END {print v["CPUs"], v["RealMemory"]}')
    local topology
    topology=$(slurmd -C | head -n 1 | grep -o 'Boards=[^ ]* SocketsPerBoard=[^ ]* CoresPerSocket=[^ ]* ThreadsPerCore=[^ ]*')
    memory=$((memory * 9 / 10))
    ctld_port=$(free_port)
    d_port=$(free_port)
    while [[ $d_port == "$ctld_port" ]]; do d_port=$(free_port); done
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
    cat >"$CONF" <<EOF
$MARKER (a single-node test cluster; stop it with: scripts/local_slurm.sh stop)
ClusterName=emoreg-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=cred_expire=15
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups or systemd needed: processes are tracked by parent id, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
MinJobAge=600
InactiveLimit=0
SchedulerParameters=sched_interval=2,bf_interval=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus $topology RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root (it installs packages and writes $CONF): sudo $0 start"
    if ours && cluster_up && pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid"; then
        say "already running"
        status
        return
    fi
    install_packages
    if [[ -f $CONF ]] && ! ours; then
        die "$CONF exists and was not written by this script; it is left alone. Use that cluster, or move the file away to let this script make a test cluster."
    fi
    mkdir -p "$STATE"
    start_munge
    # A half-started cluster of an earlier call: stop what is left, start clean.
    stop_daemons
    write_config
    # -c: a fresh controller state (a test cluster keeps no jobs across starts).
    slurmctld -c || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
    slurmd || die "slurmd did not start (see $STATE/log/slurmd.log)"
    for _ in $(seq $((WAIT_S * 2))); do
        if cluster_up; then
            status
            return
        fi
        local state
        state=$(timeout 5 sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n 1 || true)
        if [[ $state =~ ^(down|drain|drained|draining)\*?$ ]]; then
            scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
        fi
        sleep 0.5
    done
    echo "--- slurmctld log" >&2; tail -n 20 "$STATE/log/slurmctld.log" >&2 || true
    echo "--- slurmd log" >&2; tail -n 20 "$STATE/log/slurmd.log" >&2 || true
    die "the cluster did not come up within ${WAIT_S} s"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld; do
        if pid_alive "$STATE/$name.pid"; then
            pid=$(cat "$STATE/$name.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$STATE/$name.pid"
    done
}

stop() {
    [[ $(id -u) -eq 0 ]] || die "stop needs root: sudo $0 stop"
    if ! ours; then
        stop_munge
        say "no cluster of this script here (nothing to stop)"
        return
    fi
    if cluster_up; then
        # Every job of this test cluster ends with it: nothing keeps running unseen.
        scancel --partition "$PARTITION" 2>/dev/null || true
        for _ in $(seq 40); do
            [[ -z $(squeue -h -p "$PARTITION" 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    stop_daemons
    stop_munge
    say "stopped"
}

stop_munge() {  # only a munged this script started (a start that failed half-way may have left one)
    if [[ -f $STATE/munged.ours ]]; then
        if [[ -f /run/munge/munged.pid ]]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
        rm -f "$STATE/munged.ours"
    fi
}

status() {
    if ! ours; then
        say "not configured (run: sudo $0 start)"
        return 1
    fi
    if cluster_up; then
        say "up: partition $PARTITION, $(sinfo -h -p "$PARTITION" -o '%D node(s) %c CPUs, state %T')"
        return 0
    fi
    say "down (start it with: sudo $0 start)"
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
