"""Bits per character over an entire split (docs/DESIGN.md, "Metric").

The split is laid out as `TBPTTBatches` rows; the state is carried across every batch of a
row and never reset mid-row, and every symbol after the first is scored exactly once (the
padding of the last window has weight 0). With `batch_size=1` this is the protocol of the
papers: one row, the state carried across the whole split. A larger batch runs faster and
starts `batch_size - 1` more rows from a zero state.
"""

import numpy as np
from keras import ops

from keras_mulrnn import backend, memory
from keras_mulrnn.data.batches import TBPTTBatches
from keras_mulrnn.lm import interruption
from keras_mulrnn.lm.model import symbol_bits
from keras_mulrnn.lm.randomness import preserved_random_state


def evaluate_bpc(model, ids, batch_size=1, seq_len=100, jit_compile=False):
    """Returns `(bpc, symbols_scored)` of `model` on the id array `ids`."""
    check_ids(model, ids)
    batches = TBPTTBatches(ids, batch_size, seq_len, name="evaluation")
    memory.check_scoring(model.settings["units"], model.settings["num_layers"],
                         len(model.vocabulary), batches.batch_size, batches.seq_len)
    score = scoring_function(model, jit_compile)
    states = model.zero_states(batch_size)
    total_bits, total_symbols = 0.0, 0.0
    with preserved_random_state(model):
        for index in range(batches.batches_per_pass):
            interruption.check()  # a Ctrl-C whose exception a library swallowed
            inputs, targets, weights = batches.window(index)
            bits, symbols, states = score(inputs, targets, weights, states)
            total_bits += float(bits)
            total_symbols += float(symbols)
    if int(round(total_symbols)) != batches.symbols:
        raise AssertionError(
            f"scored {total_symbols} symbols of {batches.symbols}: the layout lost some"
        )
    return total_bits / total_symbols, int(round(total_symbols))


def check_ids(model, ids):
    """Refuses ids that are not symbols of the model's vocabulary (on JAX an index out of
    range would silently give a wrong figure)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"The ids to score must be a 1-D array of integers, not {ids.dtype} of shape "
            f"{ids.shape}: encode the text with the model's vocabulary.")
    if len(ids) and (ids.min() < 0 or ids.max() >= len(model.vocabulary)):
        raise ValueError(
            f"The ids to score run from {ids.min()} to {ids.max()}, outside the model's "
            f"vocabulary of {len(model.vocabulary)} symbols: encode the text with the "
            f"model's vocabulary.")


def scoring_function(model, jit_compile=False):
    """The compiled `(inputs, targets, weights, states) -> (bits, symbols, states)` of one
    window: the summed bits of its weighted targets, their number, the states after it."""

    def build():
        def score(inputs, targets, weights, states):
            logits, states = model.forward(inputs, states, training=False)
            bits = symbol_bits(targets, logits)
            return ops.sum(bits * weights), ops.sum(weights), states

        return score

    return backend.compile_function(model, "score", build, jit_compile)
