"""Bits per character over an entire split (DESIGN.md section 3).

The split is laid out as `TBPTTBatches` rows; the state is carried across every batch of a
row and never reset mid-row, and every symbol after the first is scored exactly once (the
padding of the last window has weight 0). With `batch_size=1` this is the protocol of the
papers: one row, the state carried across the whole split. A larger batch runs faster and
starts `batch_size - 1` more rows from a zero state.
"""

import tensorflow as tf

from keras_mulrnn.compiled import cached_function
from keras_mulrnn.data.batches import TBPTTBatches
from keras_mulrnn.model import symbol_bits
from keras_mulrnn.randomness import preserved_random_state
from keras_mulrnn.validation import require_tensorflow


def evaluate_bpc(model, ids, batch_size=1, seq_len=100, jit_compile=False):
    """Returns `(bpc, symbols_scored)` of `model` on the id array `ids`."""
    require_tensorflow("evaluate_bpc()")
    batches = TBPTTBatches(ids, batch_size, seq_len, name="evaluation")
    step = _scoring_step(model, jit_compile)
    states = model.zero_states(batch_size)
    total_bits, total_symbols = 0.0, 0.0
    with preserved_random_state(model):
        for index in range(batches.batches_per_pass):
            inputs, targets, weights = batches.window(index)
            bits, symbols, states = step(inputs, targets, weights, states)
            total_bits += float(bits)
            total_symbols += float(symbols)
    if int(round(total_symbols)) != batches.symbols:
        raise AssertionError(
            f"scored {total_symbols} symbols of {batches.symbols}: the layout lost some"
        )
    return total_bits / total_symbols, int(round(total_symbols))


def _scoring_step(model, jit_compile):
    def build():
        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def score(inputs, targets, weights, states):
            logits, states = model.forward(inputs, states, training=False)
            bits = symbol_bits(targets, logits)
            return tf.reduce_sum(bits * weights), tf.reduce_sum(weights), states

        return score

    return cached_function(model, ("score", jit_compile), build)
