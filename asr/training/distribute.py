"""tf.distribute for one training job: logical CPUs, the strategy, and each replica's share of every batch.

The configured batch (or frame budget) is the global one. Each planned batch is split into one piece per
replica (np.array_split of its length-sorted indices, so the pieces pad alike); a worker's input pipeline
reads only its replicas' pieces, in replica order, and tf.distribute hands consecutive elements to
consecutive local replicas. Every worker thus sees the same number of steps, and one step of all replicas
together covers exactly the planned batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from asr.data.batching import EpochPlan, make_dataset, padding_share
from asr.data.validation import Example
from asr.errors import UserError
from asr.training.cluster import Cluster
from asr.training.options import Strategy

log = logging.getLogger(__name__)


class DistributeError(UserError, RuntimeError):
    """A strategy setting this process cannot honour."""


def split_cpu(devices: int) -> None:
    """Split the host CPU into `devices` logical devices (before TensorFlow starts in this process)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu) or [None]
    if len(current) == devices:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:
        raise DistributeError(
            f"trainer.cpu_devices={devices}: TensorFlow already started in this process with {len(current)} CPU "
            f"device(s) (an earlier job of a multirun); run one job per process (hydra/launcher=submitit_local) "
            f"or keep trainer.cpu_devices the same for every job"
        ) from None


def resolve(kind: Strategy, cluster: Cluster, cpu_devices: int | None) -> Strategy:
    """The strategy `auto` stands for here: multi_worker for several tasks, mirrored for several GPUs or
    logical CPUs, else default."""
    if kind != Strategy.auto:
        return kind
    if cluster.num_workers > 1:
        return Strategy.multi_worker
    if len(tf.config.list_physical_devices("GPU")) > 1 or (cpu_devices or 1) > 1:
        return Strategy.mirrored
    return Strategy.default


def make_strategy(kind: Strategy, cluster: Cluster, cpu_devices: int | None) -> tf.distribute.Strategy:
    """The tf.distribute strategy of a job (create it before any other TensorFlow op of the process)."""
    if (cpu_devices or 1) > 1:
        split_cpu(cpu_devices)
    kind = resolve(kind, cluster, cpu_devices)
    if kind == Strategy.multi_worker:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == Strategy.mirrored:
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    else:
        strategy = tf.distribute.get_strategy()
    log.info(
        "strategy: %s, %d worker(s), %d replica(s) in sync",
        kind.value,
        cluster.num_workers if kind == Strategy.multi_worker else 1,
        strategy.num_replicas_in_sync,
    )
    return strategy


def is_distributed(strategy: tf.distribute.Strategy) -> bool:
    """Whether batches go through the strategy's input distribution (the strategies make_strategy creates)."""
    return isinstance(strategy, tf.distribute.MirroredStrategy | tf.distribute.MultiWorkerMirroredStrategy)


def replica_plans(plans: Sequence[EpochPlan], replicas: int, first: int, count: int) -> list[EpochPlan]:
    """The plans that feed replicas first .. first + count - 1: every batch cut into `replicas` pieces, these
    replicas' pieces in order (batch 0's pieces, then batch 1's...)."""
    shares = []
    for plan in plans:
        pieces = []
        for batch in plan.batches:
            if len(batch) < replicas:
                raise ValueError(f"a batch of {len(batch)} utterances cannot feed {replicas} replicas")
            pieces += np.array_split(batch, replicas)[first : first + count]
        lengths = plan.lengths if plan.lengths is not None else np.zeros(0, np.int64)
        shares.append(EpochPlan(pieces, plan.variant, padding_share(lengths, pieces) if len(lengths) else 0.0, lengths))
    return shares


def distributed_dataset(
    strategy: tf.distribute.Strategy, examples: Sequence[Example], plans: Sequence[EpochPlan], repeat: bool = False
):
    """The batches of `plans` for Keras fit under `strategy`: a plain dataset for one device, else each input
    pipeline's share (see replica_plans), repeated if asked (a distributed dataset has no known length, so
    Keras is given validation_steps and reads the same iterator every epoch)."""
    if not is_distributed(strategy):
        return make_dataset(examples, plans)
    replicas = strategy.num_replicas_in_sync

    def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        dataset = make_dataset(examples, replica_plans(plans, replicas, context.input_pipeline_id * local, local))
        return dataset.repeat() if repeat else dataset

    return strategy.distribute_datasets_from_function(pipeline)
