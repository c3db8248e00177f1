#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing sweeps against a real Slurm.
#
#   scripts/slurm-cluster.sh start   # installs Slurm + munge with apt if missing, starts munged,
#                                    # slurmctld and slurmd on localhost, waits for the node
#   scripts/slurm-cluster.sh env     # prints `export SLURM_CONF=…` (clients read the config there)
#   scripts/slurm-cluster.sh stop    # kills every daemon that `start` started, by PID
#
# Everything lives in $ZOO_SLURM_DIR (default /tmp/zoo-slurm): slurm.conf, state, spool, logs and
# the PIDs of the daemons this script started (started.pids); /etc/slurm is not touched. No
# cgroups and no accounting (Debian 12's Slurm 22.05; see ../shared/SLURM_NOTES.md). Needs root.
set -euo pipefail
DIR=${ZOO_SLURM_DIR:-/tmp/zoo-slurm}
CONF=$DIR/slurm.conf
PIDS=$DIR/started.pids

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return
  echo "installing slurmctld slurmd slurm-client munge (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  mkdir -p /run/munge && chown munge:munge /run/munge
  local pid
  pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
  if alive "$pid"; then
    echo "munged already running (pid $pid): using it, will not stop it"
    return
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    # The package normally creates the key; make one if it did not.
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  su -s /bin/sh munge -c /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  pid=$(cat /run/munge/munged.pid)
  echo "munged $pid" >> "$PIDS"
  munge -n | unmunge | grep -q 'STATUS: *Success' || { echo "munge does not work" >&2; exit 1; }
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 ))
  mkdir -p "$DIR/state" "$DIR/spool"
  cat > "$CONF" <<CONF
ClusterName=zoo
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ReturnToService=2
MinJobAge=3600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  [ "$(id -u)" = 0 ] || { echo "slurm-cluster.sh start needs root" >&2; exit 1; }
  if [ -s "$PIDS" ]; then
    echo "a cluster started from $DIR may still run (stop it first: $0 stop)" >&2
    exit 1
  fi
  install
  mkdir -p "$DIR"
  : > "$PIDS"
  start_munge
  write_conf
  export SLURM_CONF=$CONF
  # -c: a clean start, without state of an earlier cluster.
  slurmctld -c -f "$CONF"
  for _ in $(seq 100); do [ -s "$DIR/slurmctld.pid" ] && break; sleep 0.1; done
  echo "slurmctld $(cat "$DIR/slurmctld.pid")" >> "$PIDS"
  slurmd -f "$CONF"
  for _ in $(seq 100); do [ -s "$DIR/slurmd.pid" ] && break; sleep 0.1; done
  echo "slurmd $(cat "$DIR/slurmd.pid")" >> "$PIDS"
  for _ in $(seq 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "one-node cluster up: $(sinfo -h -o '%N %c CPUs %t') (SLURM_CONF=$CONF)"
      return
    fi
    sleep 1
  done
  echo "the node did not come up; logs in $DIR" >&2
  sinfo >&2 || true
  exit 1
}

stop() {
  [ -f "$PIDS" ] || { echo "nothing started from $DIR"; return; }
  # Reverse order: slurmd, slurmctld, then munged.
  tac "$PIDS" | while read -r name pid; do
    if alive "$pid"; then
      kill "$pid"
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -9 "$pid"
      echo "stopped $name ($pid)"
    fi
  done
  rm -f "$PIDS"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
