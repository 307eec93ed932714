"""Dynamic evaluation (Krause et al., "Dynamic Evaluation of Neural Sequence Models", 2018).

A split is read in segments `s_1, s_2, …` of `seq_len` symbols, the state carried across all
of them as in static evaluation. Each segment is scored with the current weights `θ_{i−1}`
first, and only then are the weights adapted on it, so no symbol is ever scored by weights
that have seen it. The update is the paper's "RMS with an RMS global prior":

    θ_i = θ_{i−1} − η · ∇L(s_i) / (RMS_g + ε) + λ · min(RMS_g / mean(RMS_g), 1/λ) ⊙ (θ_g − θ_{i−1})

with `L` the mean loss (nats) of the segment, `θ_g` the trained weights, and `RMS_g` the root
mean square, per weight, of the gradients of segments of the *training* split (measured once
with the trained weights, `gradient_statistics`); `mean(RMS_g)` is its mean over all weights.
The second term decays the weights towards the trained ones, fastest where the training
gradients were largest. With `η = 0` nothing changes and dynamic BPC equals static BPC.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.data.batches import TBPTTBatches
from keras_mulrnn.lm import interruption
from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.model import LN2, symbol_bits
from keras_mulrnn.validation import check_non_negative_number, check_positive_int


@dataclasses.dataclass
class DynamicEvaluation:
    """Static and dynamic BPC of one split, scored over the same `symbols`."""

    static_bpc: float
    dynamic_bpc: float
    symbols: int
    learning_rate: float
    decay: float
    seq_len: int
    batch_size: int


def gradient_statistics(model, train_ids, batch_size=1, seq_len=50, max_segments=2000,
                        jit_compile=False):
    """`RMS_g`: per weight, the root mean square of the gradient of a segment's mean loss over
    the first `max_segments` segments of `train_ids` (laid out as in evaluation, the state
    carried). Returns one array per trainable variable of `model`."""
    check_positive_int("max_segments", max_segments)
    batches = TBPTTBatches(train_ids, batch_size, seq_len, name="training (statistics)")
    variables = model.trainable_variables
    step = _segment_step(model, jit_compile)
    squares = [np.zeros(v.shape, np.float64) for v in variables]
    states = model.zero_states(batch_size)
    segments = min(max_segments, batches.batches_per_pass)
    zero = ops.convert_to_tensor(0.0)
    zeros = [ops.zeros(v.shape) for v in variables]
    for index in range(segments):
        interruption.check()  # a Ctrl-C whose exception a library swallowed
        inputs, targets, weights = batches.window(index)
        _, _, states, gradients = step(inputs, targets, weights, states, zero, zero, zeros,
                                       zeros, zeros)
        for total, gradient in zip(squares, gradients):
            total += np.square(ops.convert_to_numpy(gradient).astype(np.float64))
    return [np.sqrt(total / segments).astype(np.float32) for total in squares]


def dynamic_evaluate(model, ids, statistics, learning_rate=3e-4, decay=1e-3, seq_len=50,
                     batch_size=1, epsilon=1e-5, jit_compile=False):
    """Static and dynamic BPC of `model` on `ids`; the model's weights are left unchanged.

    Args:
        model: a trained `CharLanguageModel`.
        ids: the split to evaluate (1-D symbol ids).
        statistics: `gradient_statistics(model, train_ids, ...)`.
        learning_rate: `η` (0: dynamic equals static).
        decay: `λ`, the pull towards the trained weights (0: none).
        seq_len: the segment length; the weights adapt after every segment.
        batch_size: rows read in parallel (1: the paper's protocol, one row through the whole
            split); with more, each update uses the mean loss of all rows' segments.
        epsilon: `ε`, guards weights whose training gradients were (nearly) zero.
    """
    for name, value in (("learning_rate", learning_rate), ("decay", decay),
                        ("epsilon", epsilon)):
        check_non_negative_number(name, value)
    variables = model.trainable_variables
    if len(statistics) != len(variables) or any(
        tuple(s.shape) != tuple(v.shape) for s, v in zip(statistics, variables)
    ):
        raise ValueError(
            "`statistics` do not match this model's weights: compute them with "
            "`gradient_statistics(model, train_ids)` for this model."
        )
    static_bpc, symbols = evaluate_bpc(model, ids, batch_size, seq_len, jit_compile)
    batches = TBPTTBatches(ids, batch_size, seq_len, name="evaluation")
    trained = [ops.convert_to_numpy(v.value) for v in variables]
    scaled = _update_scales(statistics, decay, epsilon)
    step = _segment_step(model, jit_compile)
    states = model.zero_states(batch_size)
    total_bits = total_symbols = 0.0
    anchors = [ops.convert_to_tensor(value) for value in trained]
    inverse_rms = [ops.convert_to_tensor(inverse) for inverse, _ in scaled]
    decay_rates = [ops.convert_to_tensor(rate) for _, rate in scaled]
    rate, pull = (ops.convert_to_tensor(float(value)) for value in (learning_rate, decay))
    try:
        for index in range(batches.batches_per_pass):
            interruption.check()  # a Ctrl-C whose exception a library swallowed
            inputs, targets, weights = batches.window(index)
            bits, count, states, _ = step(inputs, targets, weights, states, rate, pull,
                                          anchors, inverse_rms, decay_rates)
            total_bits += float(bits)
            total_symbols += float(count)
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)
    if int(round(total_symbols)) != symbols:
        raise AssertionError(f"scored {total_symbols} symbols of {symbols}")
    if not np.isfinite(total_bits):
        raise FloatingPointError(
            f"Dynamic evaluation diverged (the loss became NaN or infinite) with "
            f"learning_rate={learning_rate} and decay={decay}; the model's weights are "
            f"unchanged. Lower the learning rate or raise the decay."
        )
    return DynamicEvaluation(static_bpc, total_bits / total_symbols, symbols,
                             learning_rate, decay, seq_len, batch_size)


def _update_scales(statistics, decay, epsilon):
    """Per weight: `1 / (RMS_g + ε)` and the decay rate `min(RMS_g / mean(RMS_g), 1/λ)`."""
    mean = sum(float(s.sum()) for s in statistics) / sum(s.size for s in statistics)
    # (At most float32's largest number: the scales are float32 on every backend.)
    limit = min(1.0 / decay, float(np.finfo(np.float32).max)) if decay > 0 else np.inf
    return [(1.0 / (s + epsilon), np.minimum(s / max(mean, 1e-30), limit)) for s in statistics]


def _segment_step(model, jit_compile):
    """A compiled step: score a segment, take the gradient of its mean loss, and (with a
    non-zero rate) apply the dynamic-evaluation update towards `anchors` (`θ_g`) with the
    per-weight `inverse_rms` and `decay_rates`."""
    variables = model.trainable_variables

    def build():
        def step(inputs, targets, weights, states, learning_rate, decay, anchors,
                 inverse_rms, decay_rates):
            def loss():
                logits, new_states = model.forward(inputs, states, training=False)
                bits = symbol_bits(targets, logits)
                total, count = ops.sum(bits * weights), ops.sum(weights)
                return total * LN2 / ops.maximum(count, 1.0), (total, count, new_states)

            (_, (total, count, new_states)), gradients = backend.value_and_gradients(
                loss, variables)
            for variable, gradient, anchor, inverse, rate in zip(
                    variables, gradients, anchors, inverse_rms, decay_rates):
                variable.assign(variable - learning_rate * gradient * inverse
                                + decay * rate * (anchor - variable))
            return total, count, new_states, gradients

        return step

    return backend.compile_function(model, "dynamic_segment", build, jit_compile)
