"""Data-parallel training with `tf.distribute`, and the `tf.data` input pipeline.

`--strategy default` trains on one device; `mirrored` on all GPUs (or logical devices) of
one machine (`tf.distribute.MirroredStrategy`); `multiworker` on several machines
(`tf.distribute.MultiWorkerMirroredStrategy`, the cluster described by `TF_CONFIG`). The
row layout and what stays as on one device: `keras_mulrnn.backend.distribution`.

Each worker's input pipeline serves, for every step, its replicas' shares of the global
batch in replica order (`distribute_datasets_from_function` hands a pipeline's consecutive
elements to its replicas in turn); each replica carries the state of its rows in its own
copy of the carry variables (`ON_READ`: never averaged or copied between replicas).
"""

import json
import os
import socket
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_mulrnn.backend.distribution import Distribution
from keras_mulrnn.lm import interruption

_CREATED = {}  # one strategy of each kind per process (a cluster is joined once)


def make_distribution(name, wait_timeout):
    """The `Distribution` called `name` ("default", "mirrored" or "multiworker"); a
    multi-worker one first waits up to `wait_timeout` seconds for its peers."""
    if name == "default":
        return OneDevice()
    if name not in _CREATED:
        if name == "multiworker":
            _wait_for_peers(_check_tf_config(), wait_timeout)
            try:
                strategy = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as error:
                raise RuntimeError(
                    f"Could not join the cluster ({error}): create the strategy first thing, "
                    f"before any TensorFlow operation runs (the training scripts do; in your "
                    f"own program call keras_mulrnn.backend.make_distribution('multiworker') "
                    f"right after the imports)."
                ) from None
        else:
            strategy = tf.distribute.MirroredStrategy()
        _CREATED[name] = Strategy(name, strategy)
    return _CREATED[name]


def replica_sum(gradients):
    gradients = [tf.convert_to_tensor(g) for g in gradients]
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas > 1:
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    return gradients, replicas


def step_logs(logs):
    """Keras averages a multi-worker step's outputs over replicas *and* axis 0, which
    scalars lack (tensorflow issue 72388). The metrics' variables sum all replicas'
    updates, so every replica holds the global values: give them an axis."""
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            strategy.extended._in_multi_worker_mode()):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def dataset(batches, start_step, steps):
    """A `tf.data.Dataset` of exactly `steps` training batches of `batches` from global step
    `start_step` (NumPy's `batches.batch` runs in the pipeline's threads)."""
    (ids, reset), targets, weights = batches.batch(start_step)

    def batch(step):
        (ids, reset), targets, weights = batches.batch(int(step))
        return ids, reset, targets, weights

    def load(step):
        values = tf.numpy_function(batch, [step], [tf.int32, tf.float32, tf.int32, tf.float32],
                                   stateful=False)
        for value, like in zip(values, (ids, reset, targets, weights)):
            value.set_shape(like.shape)
        ids_, reset_, targets_, weights_ = values
        return (ids_, reset_), targets_, weights_

    return (tf.data.Dataset.range(start_step, start_step + steps)
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


class OneDevice(Distribution):
    """One device, fed by `tf.data`."""

    def serve(self, batches, start_step, steps):
        return dataset(batches, start_step, steps)


class Strategy(Distribution):
    """`tf.distribute.MirroredStrategy` or `MultiWorkerMirroredStrategy`."""

    def __init__(self, name, strategy):
        self.name, self.strategy = name, strategy
        # Per carried state (keyed by its first variable, so that it goes with its model):
        # the compiled functions that gather and scatter it.
        self._carry_functions = {}

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self):
        """The `chief` task, or worker 0 of a cluster without one, or the only process."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or resolver.task_type is None:
            return True
        if resolver.task_type == "chief":
            return True
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief

    @property
    def worker_name(self):
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or resolver.task_type is None:
            return "worker-0"
        return f"{resolver.task_type}-{resolver.task_id}"

    def scope(self):
        return self.strategy.scope()

    def xla_supported(self):
        """XLA cannot compile the collectives of several CPU replicas (TensorFlow has not
        implemented them); on GPUs and TPUs, and for one replica, it can."""
        if self.replicas == 1 and not self._multi_worker():
            return True
        return not any("CPU" in device.upper()
                       for device in self.strategy.extended.worker_devices)

    def serve(self, batches, start_step, steps):
        replicas = self.replicas

        def pipeline(context):
            local = replicas // context.num_input_pipelines
            first = context.input_pipeline_id * local  # this worker's first replica

            def shares(inputs, targets, weights):
                def split(value):
                    per_replica = tf.reshape(value, [replicas, -1, *value.shape[1:]])
                    return per_replica[first : first + local]

                ids, reset = inputs
                return tf.data.Dataset.from_tensor_slices(
                    ((split(ids), split(reset)), split(targets), split(weights)))

            return dataset(batches, start_step, steps).flat_map(shares)

        return self.strategy.distribute_datasets_from_function(pipeline)

    def carry_variables(self, batch_size, sizes):
        rows = batch_size // self.replicas
        with self.strategy.scope():
            return [keras.Variable(np.zeros((rows, size), "float32"), trainable=False,
                                   autocast=False, synchronization="on_read",
                                   aggregation="none", name=f"carry_{index}")
                    for index, size in enumerate(sizes)]

    def read_carry(self, variables):
        return [value.numpy() for value in self._carry_function(variables, "read")()]

    def write_carry(self, variables, values):
        self._carry_function(variables, "write")([tf.constant(v) for v in values])

    def _carry_function(self, variables, kind):
        # Per model, keyed by its first carry variable's id and forgotten with that variable
        # (a Keras variable is not hashable, and a later model's variable may reuse the id).
        key = id(variables[0])
        if key not in self._carry_functions:
            self._carry_functions[key] = {}
            weakref.finalize(variables[0], self._carry_functions.pop, key, None)
        functions = self._carry_functions[key]
        if kind not in functions:
            functions[kind] = (_gather if kind == "read" else _scatter)(
                self.strategy, [v.value for v in variables])
        return functions[kind]

    def _multi_worker(self):
        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            self.strategy.extended._in_multi_worker_mode()
        )


def _gather(strategy, states):
    """The carried states of all replicas, concatenated in replica (= row) order."""

    @tf.function
    def gather():
        local = strategy.run(lambda: [tf.identity(state) for state in states])
        return [strategy.gather(value, axis=0) for value in local]

    return gather


def _scatter(strategy, states):
    """Gives every replica its rows of whole-batch states."""

    @tf.function
    def scatter(values):
        def assign(values):
            context = tf.distribute.get_replica_context()
            rows = values[0].shape[0] // context.num_replicas_in_sync
            first = context.replica_id_in_sync_group * rows
            for state, value in zip(states, values, strict=True):
                state.assign(value[first : first + rows])

        strategy.run(assign, args=(values,))

    return scatter


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
        # This task's own address (an index past the end fails here, not in TensorFlow).
        config["cluster"][config["task"]["type"]][config["task"]["index"]]
        if not all(isinstance(address, str) and _port(address)
                   for tasks in config["cluster"].values() for address in tasks):
            raise ValueError("every address must be HOST:PORT")
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(
            f"TF_CONFIG is not a valid cluster description ({type(error).__name__}: "
            f"{error}); expected e.g. '{example}'."
        ) from None
    return config


def _wait_for_peers(config, timeout):
    """Returns once every other task of the cluster `config` (TF_CONFIG) accepts
    connections. TensorFlow's own wait for them, in the strategy's constructor, holds the
    interpreter in C++ with no timeout: neither a Ctrl-C nor anything else could end it.
    Meanwhile this task listens on its own port, so that its peers' waits end too (once they
    see it, TensorFlow's server takes the port over), and accepts and closes their probes at
    every poll (a full backlog would drop later probes, and the peers would wait in vain)."""
    cluster, task = config["cluster"], config["task"]
    own = cluster[task["type"]][task["index"]]
    peers = [address for tasks in cluster.values() for address in tasks if address != own]
    dual = socket.has_dualstack_ipv6()
    try:
        listener = socket.create_server(("", _port(own)), backlog=len(peers) + 1,
                                        family=socket.AF_INET6 if dual else socket.AF_INET,
                                        dualstack_ipv6=dual)
    except OSError as error:
        raise OSError(f"This worker cannot listen on {own} (its address in TF_CONFIG): "
                      f"{error.strerror}. Free the port or give another one.") from None
    listener.setblocking(False)
    waiting = list(peers)

    def all_answer():
        while True:  # the probes of the peers so far
            try:
                listener.accept()[0].close()
            except (BlockingIOError, InterruptedError):
                break
        waiting[:] = [address for address in waiting if not _answers(address)]
        return not waiting

    def failure():
        return (f"No answer from {', '.join(waiting)} of the TF_CONFIG cluster after "
                f"{timeout:g} s: start the training on every machine of the cluster with the "
                f"same command (each with its own task in TF_CONFIG), or wait longer with "
                f"--wait-timeout.")

    try:
        interruption.wait_until(all_answer, timeout,
                                "the other workers of the TF_CONFIG cluster", failure)
    finally:
        listener.close()


def _port(address):
    try:
        port = int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError(f"TF_CONFIG's address {address!r} is not HOST:PORT with a port "
                         f"from 1 to 65535.")
    return port


def _answers(address):
    """Whether something accepts connections at `address` (HOST:PORT)."""
    return interruption.answers(address.rsplit(":", 1)[0].strip("[]"), _port(address))
