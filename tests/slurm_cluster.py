"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd from Debian's packages,
started as root, accounting off, laid out as Debian lays out a cluster: /etc/slurm/slurm.conf and munge's
default socket. (Snakemake's SLURM job step drops SLURM_* variables before `srun`, so a SLURM_CONF
elsewhere does not reach it.) State and logs go to a private folder; the config is removed afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
CONF = Path("/etc/slurm/slurm.conf")
GRES = CONF.with_name("gres.conf")  # one GPU whose device file is /dev/null: SLURM schedules it, nothing computes on it


def why_not() -> str | None:
    """Why this machine cannot run the cluster (None: it can, installing the packages if need be)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to start munged, slurmctld and slurmd"
    for f in (CONF, GRES):
        if f.exists():
            return f"{f} exists: this machine has a SLURM setup of its own, which the test leaves alone"
    if all(shutil.which(d) for d in DAEMONS):
        return None
    if not shutil.which("apt-get"):
        return f"{', '.join(PACKAGES)} not installed and no apt-get to install them"
    res = subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], capture_output=True, text=True,
                         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=900)
    if res.returncode != 0 or not all(shutil.which(d) for d in DAEMONS):
        return f"apt-get install {' '.join(PACKAGES)} failed: {res.stderr.strip().splitlines()[-1:]}"
    return None


def conf(root: Path, host: str, cpus: int, mem_mb: int) -> str:
    return f"""ClusterName=mgdm-test
GresTypes=gpu
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={host} Gres=gpu:1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def start(root: Path) -> None:
    """Start the cluster, its state and logs under `root`."""
    host = socket.gethostname().split(".")[0]
    for d in ("state", "spool"):
        (root / d).mkdir(parents=True, exist_ok=True)
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 3 // 4
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(conf(root, host, os.cpu_count() or 1, mem_mb))
    GRES.write_text(f"NodeName={host} Name=gpu File=/dev/null\n")
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:  # no munged answering yet
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        subprocess.run(["munged", "--force", f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid",
                        f"--seed-file={root}/munged.seed"], check=True)
    subprocess.run(["slurmctld"], check=True)
    subprocess.run(["slurmd"], check=True)
    for _ in range(60):  # the node registers within seconds
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
        if out.strip() == "idle":
            return
        time.sleep(1)
    stop(root)
    raise RuntimeError(f"slurmd did not register: sinfo says {out.strip()!r}; see {root}/slurmd.log")


def stop(root: Path) -> None:
    for pid_file in (root / "slurmd.pid", root / "slurmctld.pid", root / "munged.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
        except (OSError, ValueError):
            pass
    CONF.unlink(missing_ok=True)
    GRES.unlink(missing_ok=True)
