"""Batches for truncated backpropagation through time (docs/DESIGN.md, "Data").

Every window and every order is defined here once, in NumPy, and addressed by the global
step, so that training resumes at the exact batch it stopped at and every backend's input
pipeline (`tf.data` on TensorFlow, a `keras.utils.PyDataset` elsewhere; see `sources`)
serves exactly the same batches.

`TBPTTBatches` cuts a split's symbol stream into `B` contiguous rows; batch `j` holds columns
`[jT, (j+1)T)` of every row and the targets are the same window shifted by one symbol, so a
model that carries its state continues every row from one batch to the next. Rows are
padded to a whole number of windows and every target gets a weight, 1 for a real symbol and 0
for padding: every symbol after the first is a target exactly once, and no tail is dropped.

`ShuffledWindows` is the non-stateful alternative: independent windows in a seeded order, a
new permutation for every pass, with the state reset for every batch.

A training batch is `((ids, reset), targets, weights)`: `reset` `(B,)` is 1 for a row whose
carried state must start from zero at this batch (the first batch of a pass, or every batch
of shuffled windows), so that it splits with the rows across devices.
"""

import functools
import math

import numpy as np

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
        name: the split's name, for error messages.
        rows_flag: the setting that chose `batch_size`, for error messages.
    """

    resets_every_batch = False

    def __init__(self, ids, batch_size, seq_len, min_batches=0, name="split",
                 rows_flag="--batch-size"):
        _check_sizes(batch_size, seq_len)
        targets = len(ids) - 1
        if min_batches and targets < min_batches * batch_size * seq_len:
            raise ValueError(
                f"The {name} split has {len(ids)} symbols, fewer than the "
                f"{min_batches * batch_size * seq_len + 1} that one batch of {batch_size} "
                f"rows ({rows_flag}) × {seq_len} symbols (--seq-len) needs. Use fewer rows, "
                f"shorter windows or more data."
            )
        if targets < batch_size:
            raise ValueError(
                f"The {name} split has {len(ids)} symbols: too few for {batch_size} rows "
                f"({rows_flag}), which need at least {batch_size + 1} (one target each). Use "
                f"fewer rows or more data."
            )
        self.row_length = math.ceil(targets / batch_size)
        # A window longer than a row would only be padding (evaluation may ask for one).
        seq_len = min(seq_len, self.row_length)
        self.batch_size, self.seq_len = batch_size, seq_len
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

    def batch(self, step):
        """The training batch `((ids, reset), targets, weights)` of global step `step`."""
        inputs, targets, weights = self.window(step)
        reset = np.full(self.batch_size, step % self.batches_per_pass == 0, np.float32)
        return (inputs, reset), targets, weights


class ShuffledWindows:
    """Independent windows of `seq_len + 1` symbols, `batch_size` per batch, in an order that
    is a new seeded permutation of all windows for every pass.

    The tail shorter than one window is not used, nor (in each pass) the windows left over
    after the last whole batch; every batch starts from a zero state.
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
        # A pass's permutation is drawn once and kept while its batches are served.
        self.order = functools.lru_cache(maxsize=2)(self._order)

    def _order(self, pass_index):
        """The permutation of the windows in pass `pass_index`."""
        return np.random.default_rng([self.seed, pass_index]).permutation(self.windows)

    def batch(self, step):
        """The training batch `((ids, reset), targets, weights)` of global step `step`."""
        pass_index, position = divmod(step, self.batches_per_pass)
        indices = self.order(pass_index)[position * self.batch_size :][: self.batch_size]
        offsets = indices[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        chunk = self.ids[offsets].astype(np.int32)
        reset = np.ones(self.batch_size, np.float32)
        return (chunk[:, :-1], reset), chunk[:, 1:], np.ones(chunk[:, 1:].shape, np.float32)
