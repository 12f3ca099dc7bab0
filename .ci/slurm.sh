#!/usr/bin/env bash
# A Slurm cluster for the tests: 4 logical nodes (n1..n4) on loopback, one slurmctld, one munged,
# no systemd. Everything lives under ORCH_SLURM_DIR (default /tmp/orch-slurm).
#
#   .ci/slurm.sh start    install slurm-wlm and munge if missing, write the config, start the
#                         daemons, wait until all four nodes are idle (idempotent)
#   .ci/slurm.sh stop     stop every daemon it started, by pid
#   .ci/slurm.sh status   exit 0 when the cluster answers and its nodes are idle
#   .ci/slurm.sh env      print the variables a client needs (eval "$(.ci/slurm.sh env)")
set -euo pipefail

DIR=${ORCH_SLURM_DIR:-/tmp/orch-slurm}
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket.2
NODES=(n1 n2 n3 n4)
export SLURM_CONF=$CONF

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_ apt-get update -qq
    sudo_ apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

write_config() {
  mkdir -p "$DIR"/{munge,state,log,spool}
  chmod 700 "$DIR/munge"
  for n in "${NODES[@]}"; do mkdir -p "$DIR/spool/$n"; done
  [ -s "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom >"$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }
  local user; user=$(id -un)
  cat >"$CONF" <<CONF
ClusterName=orchci
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=20000
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
NodeName=n[1-4] NodeHostname=localhost Port=17001-17004 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=n[1-4] Default=YES MaxTime=INFINITE State=UP
CONF
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

idle() {
  local states
  states=$(sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
  [ "$(grep -cE ' (idle|mix|alloc)$' <<<"$states")" -eq ${#NODES[@]} ]
}

start() {
  install
  if alive "$DIR/slurmctld.pid" && idle; then return 0; fi
  write_config
  alive "$DIR/munged.pid" || munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
  alive "$DIR/slurmctld.pid" || slurmctld -i
  for n in "${NODES[@]}"; do
    alive "$DIR/slurmd-$n.pid" || slurmd -N "$n"
  done
  for _ in $(seq 1 300); do
    if idle; then return 0; fi
    sleep 0.1
  done
  echo "slurm: the nodes did not become idle within 30 s; logs in $DIR/log" >&2
  sinfo -N >&2 || true
  exit 1
}

stop() {
  local pidfile
  for pidfile in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
    if alive "$pidfile"; then
      local pid; pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) alive "$DIR/slurmctld.pid" && idle ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
