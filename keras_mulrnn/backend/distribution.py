"""What a data-parallel strategy provides to the training loop, on any backend.

Truncated BPTT under data parallelism: the global batch of `B` rows is split into `R` equal
shares of consecutive rows, replica `r` owning rows `[r·B/R, (r+1)·B/R)` for the whole run, so
each replica continues the same rows from batch to batch and carries their recurrent state
itself. Nothing is rescaled: the global batch, the learning rate and the schedule are the
configuration's, and with the same global batch the updates equal one device's (the gradient
of the global batch, clipped as a whole).

`Distribution` is the one-device base; each backend module subclasses it for its strategies
(`tf.distribute` on TensorFlow, `keras.distribution.DataParallel` on JAX) and says how the
batches reach `model.fit`.
"""

import contextlib

import keras
import numpy as np


class Distribution:
    """One device. Subclasses override what their strategy changes."""

    name = "default"

    @property
    def replicas(self):
        """The number of data-parallel replicas (devices) over all workers."""
        return 1

    @property
    def is_chief(self):
        """Whether this process writes the run's files (only one process does)."""
        return True

    @property
    def worker_name(self):
        return "worker-0"

    def scope(self):
        """The context in which the model, its optimizer and its carry are created."""
        return contextlib.nullcontext()

    def xla_supported(self):
        """Whether the training step can be compiled with XLA under this strategy."""
        return True

    def check_batch(self, batch_size):
        """Every replica trains on `batch_size / replicas` whole rows: raise unless it divides."""
        if batch_size % self.replicas:
            raise ValueError(
                f"The batch of {batch_size} rows cannot be split evenly across "
                f"{self.replicas} replicas. Give a --batch-size that is a multiple of "
                f"{self.replicas}."
            )

    def serve(self, batches, start_step, steps):
        """The input of `model.fit` for `steps` batches of `batches` from `start_step`:
        exactly that many, each as `((ids, reset), targets, weights)`."""
        raise NotImplementedError

    def carry_variables(self, batch_size, sizes):
        """Variables holding the carried state of `batch_size` global rows, one `(rows,
        size)` float32 variable per entry of `sizes` (never autocast)."""
        with self.scope():
            return [keras.Variable(np.zeros((batch_size, size), "float32"), trainable=False,
                                   autocast=False, name=f"carry_{index}")
                    for index, size in enumerate(sizes)]

    def read_carry(self, variables):
        """The carried states of all global rows, in row order, as NumPy arrays. A collective
        operation across workers: every worker calls it."""
        return [keras.ops.convert_to_numpy(variable.value) for variable in variables]

    def write_carry(self, variables, values):
        """Loads `read_carry()` of a run with the same global batch, whatever its strategy."""
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
