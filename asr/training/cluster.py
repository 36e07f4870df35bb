"""Which processes one training job runs on, from what the scheduler provides; called first thing in asr-train.

In this order: `TF_CONFIG` when it is set; else, inside a SLURM step of several tasks (srun, or submitit on a
cluster), TensorFlow's SlurmClusterResolver with CPU-safe settings and a port derived from the job id; else,
inside a submitit job of several tasks on one machine (the local executor), 127.0.0.1 with one port per
task; else one process. A discovered cluster is written to `TF_CONFIG`, which MultiWorkerMirroredStrategy
reads; nothing here imports TensorFlow unless SLURM is found, and nothing creates a TensorFlow op.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
# Ports of a job's workers on a node start at PORT_BASE + PORT_STRIDE x (job id mod PORT_SPAN / PORT_STRIDE):
# jobs with consecutive ids (a submitit batch, a job array) get disjoint blocks of PORT_STRIDE ports (tasks per
# node), and the range stays below the Linux ephemeral ports (32768-60999) the OS hands to outgoing connections.
PORT_BASE = 20000
PORT_SPAN = 10000
PORT_STRIDE = 16
# Proxy variables gRPC honours even for the workers' own addresses (DESIGN.md §4): dropped for local clusters.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "GRPC_PROXY")
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class ClusterError(RuntimeError):
    """A cluster description that cannot be used (a malformed TF_CONFIG...)."""


@dataclass(frozen=True)
class Cluster:
    """The workers of one job and which of them this process is."""

    workers: tuple[str, ...] = ()  # host:port of every worker; empty: one process
    index: int = 0  # this process's place in `workers`
    source: str = "single"  # TF_CONFIG, slurm, submitit or single
    chief_task: bool = field(default=False)  # TF_CONFIG names a separate "chief" task and this is it

    @property
    def num_workers(self) -> int:
        """Processes taking part (1 for a single process)."""
        return max(len(self.workers), 1)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory (worker 0, or the TF_CONFIG chief)."""
        return self.chief_task or self.index == 0

    def tf_config(self) -> dict:
        """The TF_CONFIG of this process in the cluster."""
        return {"cluster": {"worker": list(self.workers)}, "task": {"type": "worker", "index": self.index}}


def port_base(job_id: str) -> int:
    """The first port of a job's workers: a stable function of the scheduler's job id."""
    number = int(job_id) if job_id.isdigit() else zlib.crc32(job_id.encode("utf-8"))
    return PORT_BASE + PORT_STRIDE * (number % (PORT_SPAN // PORT_STRIDE))


def from_tf_config(text: str) -> Cluster:
    """The cluster of a TF_CONFIG value; ClusterError naming what is wrong."""
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = str(task["type"]), int(task["index"])
        chief = list(cluster.get("chief", []))
        workers = tuple(chief + list(cluster.get("worker", [])))
    except (ValueError, KeyError, TypeError) as e:
        raise ClusterError(
            f'TF_CONFIG is not a cluster description ({e}); expected {{"cluster": {{"worker": ["host:port", ...]}}, '
            f'"task": {{"type": "worker", "index": 0}}}} or unset it'
        ) from None
    if kind not in ("chief", "worker"):
        raise ClusterError(f"TF_CONFIG task type {kind!r}: asr-train runs only chief and worker tasks")
    position = index if kind == "chief" else len(chief) + index
    if not 0 <= position < len(workers):
        raise ClusterError(f"TF_CONFIG task {kind} {index} is not in its cluster of {len(workers)} tasks")
    return Cluster(workers, position, TF_CONFIG, chief_task=kind == "chief")


def from_slurm(environ: Mapping[str, str]) -> Cluster:
    """The cluster of a SLURM step of several tasks (the SLURM_STEP_* variables srun sets)."""
    import tensorflow as tf

    tasks_per_node = max(int(n.split("(")[0]) for n in environ["SLURM_STEP_TASKS_PER_NODE"].split(","))
    # GPU counts given, so the resolver does not run nvidia-smi (missing on CPU nodes; gpus_per_node=0 crashes
    # it, tensorflow#56894); auto_set_gpu=False leaves CUDA_VISIBLE_DEVICES to SLURM.
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=port_base(environ.get("SLURM_JOB_ID", "0")),
        gpus_per_node=tasks_per_node,
        gpus_per_task=1,
        auto_set_gpu=False,
    )
    spec = resolver.cluster_spec().as_dict()
    _, index = resolver.get_task_info()
    return Cluster(tuple(spec["worker"]), int(index), "slurm")


def from_submitit(environ: Mapping[str, str]) -> Cluster | None:
    """The cluster of a submitit job of several tasks on this machine (its local executor), else None."""
    if "SUBMITIT_LOCAL_JOB_ID" not in environ:
        return None
    tasks = int(environ.get("SUBMITIT_LOCAL_NTASKS", "1"))
    if tasks < 2:
        return None
    if tasks > PORT_STRIDE:
        raise ClusterError(f"{tasks} tasks on one machine: at most {PORT_STRIDE} (a block of ports per job)")
    base = port_base(environ["SUBMITIT_LOCAL_JOB_ID"])
    workers = tuple(f"127.0.0.1:{base + rank}" for rank in range(tasks))
    return Cluster(workers, int(environ.get("SUBMITIT_LOCAL_GLOBALID", "0")), "submitit")


def discover(environ: Mapping[str, str] = os.environ) -> Cluster:
    """This process's cluster, from TF_CONFIG, a SLURM step or a submitit job; a single process otherwise."""
    if environ.get(TF_CONFIG):
        return from_tf_config(environ[TF_CONFIG])
    if int(environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1 and "SLURM_PROCID" in environ:
        return from_slurm(environ)
    return from_submitit(environ) or Cluster()


def export(cluster: Cluster, environ: MutableMapping[str, str] = os.environ) -> None:
    """Make a discovered cluster TensorFlow's: TF_CONFIG set, proxies dropped when every worker is local."""
    if cluster.num_workers < 2:
        return
    if cluster.source != TF_CONFIG:
        environ[TF_CONFIG] = json.dumps(cluster.tf_config())
    hosts = sorted({address.rsplit(":", 1)[0] for address in cluster.workers})
    if all(host in LOCAL_HOSTS for host in hosts):
        for name in PROXY_VARIABLES:
            environ.pop(name, None)
    else:  # the workers reach each other directly, not through a proxy
        for name in ("no_proxy", "NO_PROXY"):
            environ[name] = ",".join(filter(None, [environ.get(name, ""), *hosts]))
    log.info(
        "cluster from %s: worker %d of %d (%s)", cluster.source, cluster.index, cluster.num_workers, ", ".join(hosts)
    )


def setup(environ: MutableMapping[str, str] = os.environ) -> Cluster:
    """discover + export: the first thing asr-train does (before TensorFlow creates anything)."""
    cluster = discover(environ)
    export(cluster, environ)
    return cluster
