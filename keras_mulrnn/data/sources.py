"""The training batches as a `keras.utils.PyDataset`: how they reach `model.fit` on a backend
without `tf.data` (JAX). The batches themselves are defined once, in `batches`."""

import keras


class BatchSequence(keras.utils.PyDataset):
    """Exactly `steps` training batches of `batches` from global step `start_step`, each
    `((ids, reset), targets, weights)`, restricted to the global rows `rows` (a slice: the
    rows this process feeds under data parallelism; all by default)."""

    def __init__(self, batches, start_step, steps, rows=slice(None)):
        super().__init__()
        self.batches, self.start_step, self.steps, self.rows = batches, start_step, steps, rows

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        if not 0 <= index < self.steps:
            raise IndexError(f"batch {index} of {self.steps}")
        (ids, reset), targets, weights = self.batches.batch(self.start_step + index)
        rows = self.rows
        return (ids[rows], reset[rows]), targets[rows], weights[rows]
