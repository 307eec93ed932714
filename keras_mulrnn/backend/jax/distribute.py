"""Data-parallel training on JAX with Keras's distribution API.

`--strategy data-parallel` sets `keras.distribution.DataParallel` over every local device
(and every host, once `jax.distributed.initialize()` has joined them): each step is one SPMD
program over the global batch, whose rows are sharded over the devices along the mesh's
batch axis. The carried state is sharded the same way, so each device keeps the state of
the rows it trains on (the row layout: `keras_mulrnn.backend.distribution`). Each host feeds
its own consecutive share of the rows, and host 0 writes the run's files.
"""

import jax
import keras
import numpy as np
from jax.experimental import multihost_utils

from keras_mulrnn.backend.distribution import Distribution
from keras_mulrnn.data.sources import BatchSequence

_CREATED = {}


def make_distribution(name, wait_timeout):
    """The `Distribution` called `name` ("default" or "data-parallel"). Keras's distribution
    is process-wide: making one sets it (or, for "default", clears it) for what is built
    next. It waits for no other process (`wait_timeout` is unused): hosts join before, in
    the user's `jax.distributed.initialize()`, which has a timeout of its own."""
    if name == "default":
        keras.distribution.set_distribution(None)
        return OneDevice()
    if name not in _CREATED:
        _CREATED[name] = DataParallel()
    keras.distribution.set_distribution(_CREATED[name].distribution)
    return _CREATED[name]


class OneDevice(Distribution):
    """One device, fed by a `keras.utils.PyDataset`."""

    def serve(self, batches, start_step, steps):
        return BatchSequence(batches, start_step, steps)


class DataParallel(Distribution):
    """`keras.distribution.DataParallel` over every device of every host."""

    name = "data-parallel"

    def __init__(self):
        self.distribution = keras.distribution.DataParallel()
        self.batch_axis = self.distribution.batch_dim_name

    @property
    def replicas(self):
        return jax.device_count()

    @property
    def is_chief(self):
        return jax.process_index() == 0

    @property
    def worker_name(self):
        return f"host-{jax.process_index()}"

    def serve(self, batches, start_step, steps):
        rows = batches.batch_size // jax.process_count()
        first = jax.process_index() * rows
        return BatchSequence(batches, start_step, steps, slice(first, first + rows))

    def carry_variables(self, batch_size, sizes):
        layout = keras.distribution.TensorLayout([self.batch_axis, None],
                                                 self.distribution.device_mesh)
        return [keras.Variable(np.zeros((batch_size, size), "float32"), trainable=False,
                               autocast=False, name=f"carry_{index}", layout=layout)
                for index, size in enumerate(sizes)]

    def read_carry(self, variables):
        return [np.asarray(multihost_utils.process_allgather(variable.value, tiled=True))
                for variable in variables]
