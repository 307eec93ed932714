"""Data-parallel training with `tf.distribute` (TensorFlow backend only).

`--strategy default` trains on one device; `mirrored` on all GPUs (or logical devices) of
one machine (`tf.distribute.MirroredStrategy`); `multiworker` on several machines
(`tf.distribute.MultiWorkerMirroredStrategy`, the cluster described by `TF_CONFIG`).

Truncated BPTT under a strategy: every replica receives the whole global batch and keeps its
own `batch_size / replicas` consecutive rows (`CharLanguageModel.start_carry`), so each
replica continues the same rows from batch to batch and carries their state itself. The
global batch, the learning rate and the schedule are those of the configuration: nothing is
rescaled with the number of replicas, and with the same global batch the updates are those of
one device (the gradient of the global batch, clipped as a whole).
"""

import json
import os

import tensorflow as tf

from keras_mulrnn.validation import require_tensorflow

STRATEGIES = ("default", "mirrored", "multiworker")
_CREATED = {}  # one strategy of each kind per process (a cluster is joined once)


def check_strategy_name(name):
    if name not in STRATEGIES:
        raise ValueError(
            f"Invalid value for `strategy`: received {name!r}. Allowed: one of {STRATEGIES}."
        )


def check_batch_split(batch_size, strategy):
    """Every replica trains on `batch_size / replicas` whole rows: raise unless it divides."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"The batch of {batch_size} rows cannot be split evenly across {replicas} "
            f"replicas. Give a --batch-size that is a multiple of {replicas}."
        )


def make_strategy(name):
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`)."""
    check_strategy_name(name)
    require_tensorflow(f"--strategy {name} (tf.distribute)")
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _CREATED:
        if name == "multiworker":
            _check_tf_config()
            try:
                _CREATED[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as error:
                raise RuntimeError(
                    f"Could not join the cluster ({error}): create the strategy first thing, "
                    f"before any TensorFlow operation runs (the training scripts do; in your "
                    f"own program call keras_mulrnn.distribute.make_strategy('multiworker') "
                    f"right after the imports)."
                ) from None
        else:
            _CREATED[name] = tf.distribute.MirroredStrategy()
    return _CREATED[name]


def is_chief(strategy):
    """Whether this process writes the run's files: the `chief` task, or worker 0 of a
    cluster without one, or the only process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_name(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "worker-0"
    return f"{resolver.task_type}-{resolver.task_id}"


def xla_supported(strategy):
    """XLA cannot compile the collectives of several CPU replicas (TensorFlow has not
    implemented them); on GPUs and TPUs, and for one device, it can."""
    if _one_device(strategy):
        return True
    return not any("CPU" in device.upper() for device in strategy.extended.worker_devices)


def distribute_batches(strategy, dataset):
    """`dataset` (whole global batches) as a distributed dataset in which every replica gets
    the whole batch of each step (it keeps its own rows); unchanged for one device."""
    if _one_device(strategy):
        return dataset

    def replicate(context):
        local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
        return dataset.flat_map(
            lambda *batch: tf.data.Dataset.from_tensors(batch).repeat(local_replicas)
        )

    return strategy.distribute_datasets_from_function(replicate)


def _one_device(strategy):
    return (strategy.num_replicas_in_sync == 1
            and getattr(strategy, "cluster_resolver", None) is None)


def _check_tf_config():
    text = os.environ.get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise ValueError(
            f"--strategy multiworker needs the TF_CONFIG environment variable on every "
            f"machine, e.g. TF_CONFIG='{example}' (index 1 on the second machine)."
        )
    try:
        config = json.loads(text)
        config["cluster"]["worker"], config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"TF_CONFIG is not a valid cluster description ({type(error).__name__}: "
            f"{error}); expected e.g. '{example}'."
        ) from None
