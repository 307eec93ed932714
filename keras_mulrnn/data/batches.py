"""Batches for truncated backpropagation through time (DESIGN.md section 3).

`TBPTTBatches` cuts a split's symbol stream into `B` contiguous rows; batch `j` holds columns
`[jT, (j+1)T)` of every row and the targets are the same window shifted by one symbol, so a
model that carries its state continues every row from one batch to the next. Rows are
padded to a whole number of windows and every target gets a weight, 1 for a real symbol and 0
for padding: every symbol after the first is a target exactly once, and no tail is dropped.

`ShuffledWindows` is the non-stateful alternative: independent windows in a shuffled order,
with the state reset for every batch.

Both are addressed by the global step, so training resumes at the exact batch it stopped at.
"""

import math

import numpy as np
import tensorflow as tf

from keras_mulrnn.validation import check_positive_int


def _check_sizes(batch_size, seq_len):
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)


class TBPTTBatches:
    """Contiguous rows of one split for stateful training or evaluation.

    Args:
        ids: 1-D array of symbol ids.
        batch_size: `B`, the number of rows.
        seq_len: `T`, the window length.
        min_batches: raise unless the split fills at least this many full batches (training
            asks for 1: a corpus shorter than one batch is an error, not a silent no-op).
    """

    resets_every_batch = False

    def __init__(self, ids, batch_size, seq_len, min_batches=0, name="split"):
        _check_sizes(batch_size, seq_len)
        targets = len(ids) - 1
        if targets < max(batch_size, min_batches * batch_size * seq_len):
            need = max(batch_size, min_batches * batch_size * seq_len) + 1
            raise ValueError(
                f"The {name} split has {len(ids)} symbols, fewer than the {need} that "
                f"batch_size={batch_size} × seq_len={seq_len} needs. Use a smaller batch size "
                f"or sequence length, or more data."
            )
        self.batch_size, self.seq_len = batch_size, seq_len
        self.row_length = math.ceil(targets / batch_size)
        self.batches_per_pass = math.ceil(self.row_length / seq_len)
        width = self.batches_per_pass * seq_len + 1
        starts = np.arange(batch_size) * self.row_length
        self.rows = np.zeros((batch_size, width), dtype=ids.dtype)
        for row, start in zip(self.rows, starts):
            piece = ids[start : start + width]
            row[: len(piece)] = piece
        # Row r predicts the targets ids[start_r + 1 : start_r + row_length_r + 1].
        self.row_targets = np.clip(targets - starts, 0, self.row_length).astype(np.int64)
        self.symbols = targets

    def window(self, step):
        """`(inputs, targets, weights)` of batch `step` as NumPy arrays `(B, T)`."""
        start = (step % self.batches_per_pass) * self.seq_len
        chunk = self.rows[:, start : start + self.seq_len + 1]
        columns = start + np.arange(self.seq_len)
        weights = (columns[None, :] < self.row_targets[:, None]).astype(np.float32)
        return chunk[:, :-1].astype(np.int32), chunk[:, 1:].astype(np.int32), weights

    def dataset(self, start_step=0, steps=None):
        """A `tf.data.Dataset` of `(inputs, targets, weights)` from global step `start_step`,
        cycling over the split for `steps` batches (forever when None)."""
        # A variable, not a constant: a constant would be copied into the dataset's graph.
        rows = tf.Variable(self.rows, trainable=False, name="tbptt_rows")
        row_targets = tf.constant(self.row_targets)
        seq_len, per_pass = self.seq_len, self.batches_per_pass

        def window(step):
            start = (step % per_pass) * seq_len
            chunk = tf.cast(rows[:, start : start + seq_len + 1], tf.int32)
            columns = start + tf.range(seq_len, dtype=tf.int64)
            weights = tf.cast(columns[None, :] < row_targets[:, None], tf.float32)
            return chunk[:, :-1], chunk[:, 1:], weights

        steps_range = (
            tf.data.Dataset.counter(start_step)
            if steps is None
            else tf.data.Dataset.range(start_step, start_step + steps)
        )
        return steps_range.map(window, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE
        )


class ShuffledWindows:
    """Independent windows of `seq_len + 1` symbols in a seeded, shuffled order.

    The tail shorter than one window is not used; every batch starts from a zero state.
    """

    resets_every_batch = True

    def __init__(self, ids, batch_size, seq_len, seed=0, name="split"):
        _check_sizes(batch_size, seq_len)
        self.windows = (len(ids) - 1) // seq_len
        if self.windows < batch_size:
            raise ValueError(
                f"The {name} split has {len(ids)} symbols, fewer than one batch of "
                f"batch_size={batch_size} windows of seq_len={seq_len}. Use a smaller batch "
                f"size or sequence length, or more data."
            )
        self.ids, self.batch_size, self.seq_len, self.seed = ids, batch_size, seq_len, seed
        self.batches_per_pass = self.windows // batch_size

    def dataset(self, start_step=0, steps=None):
        ids = tf.Variable(self.ids, trainable=False, name="corpus_ids")
        seq_len = self.seq_len

        def window(indices):
            offsets = indices[:, None] * seq_len + tf.range(seq_len + 1, dtype=tf.int64)
            chunk = tf.cast(tf.gather(ids, offsets), tf.int32)
            return chunk[:, :-1], chunk[:, 1:], tf.ones(tf.shape(chunk[:, 1:]), tf.float32)

        dataset = (
            tf.data.Dataset.range(self.windows)
            .shuffle(self.windows, seed=self.seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(self.batch_size, drop_remainder=True)
            .skip(start_step)  # resumes the same order: the shuffles are seeded
        )
        if steps is not None:
            dataset = dataset.take(steps)
        return dataset.map(window, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE
        )
