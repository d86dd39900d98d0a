#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests that submit dlrun sweeps through
# hydra-submitit-launcher: `.ci/slurm.sh start` installs Debian's slurmctld, slurmd and munge if
# they are missing, writes slurm.conf for this host, starts munged, slurmctld and slurmd, and waits
# until sinfo shows the node idle; `.ci/slurm.sh stop` stops them. Needs root (CI runs as root).
set -euo pipefail

conf_dir=/etc/slurm
state=/var/spool/dlrun-slurm

start() {
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  fi
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$conf_dir" "$state/ctld" "$state/d" /run/munge /var/log/munge /var/lib/munge
  cat > "$conf_dir/slurm.conf" <<CONF
# written by dlrun's .ci/slurm.sh: a one-node cluster for tests
ClusterName=dlrun
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- munged 2>/dev/null || munged --force
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "slurm: node $host idle"
      return 0
    fi
    sleep 1
  done
  echo "slurm: the node did not become idle; sinfo says: $(sinfo 2>&1 | tr '\n' ' ')" >&2
  tail -5 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
  return 1
}

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
