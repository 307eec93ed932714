"""The fused sequence function on TensorFlow: a `tf.while_loop` with a `tf.custom_gradient`.

What it computes and the products of its backward pass are in `keras_mulrnn.backend.fused`;
this module runs them: the forward loop saves each step's output, recurrent products and
non-output states in `TensorArray`s, and the backward loops (one per chunk of steps, laid out
at trace time) differentiate the gate equations with `tf.GradientTape`, then form each chunk's
weight gradients in one product. Outputs and gradients equal Keras's generic loop (tested).
"""

import tensorflow as tf

from keras_mulrnn.backend import fused as plan


def sequence_function(cell):
    """`f(sequence, mask, *states0, *recurrent) -> (outputs, *final_states)` over the projected
    inputs `sequence` (T, B, P), time major; `recurrent` are `plan.recurrent_inputs`."""
    count = cell.state_count
    width = plan.gate_width(cell)

    @tf.custom_gradient
    def sequence_function(sequence, mask, *args):
        states0, recurrent = list(args[:count]), list(args[count:])
        steps = tf.shape(sequence)[0]

        def forward(t, states, saved):
            r, m, mh = cell.recurrent_products(states[0] * mask, sequence[t][:, width:],
                                               plan.recurrent_weights(cell, recurrent))
            h, new_states = cell.gate_update(sequence[t][:, :width], r, states)
            # Saved for the backward pass: the output, the states before the step (all but
            # h, which is the previous output), and the products.
            values = [h, r, *states[1:], *plan.kept_products(cell, m, mh)]
            saved = [array.write(t, value) for array, value in zip(saved, values)]
            return t + 1, [tf.convert_to_tensor(s) for s in new_states], saved

        kinds = [states0[0].dtype, sequence.dtype] + [s.dtype for s in states0[1:]]
        kinds += [sequence.dtype] * plan.kept_count(cell)
        saved = [tf.TensorArray(dtype, size=steps, clear_after_read=False) for dtype in kinds]
        _, final, saved = tf.while_loop(lambda t, *_: t < steps, forward, (0, states0, saved))
        # Only the outputs are stacked into one tensor; the backward pass reads the rest
        # step by step from the arrays (stacking would copy them all).
        outputs = saved[0].stack()
        saved = [outputs] + saved[1:]

        def grad(d_outputs, *d_final):
            return _backward(cell, sequence, mask, states0, recurrent, saved, d_outputs,
                             d_final)

        return (outputs, *final), grad

    return sequence_function


def _backward(cell, sequence, mask, states0, recurrent, saved, d_outputs, d_final):
    count = cell.state_count
    width = plan.gate_width(cell)
    steps = tf.shape(sequence)[0]
    outputs, saved_r, *rest = saved
    saved_other, products = rest[: count - 1], rest[count - 1 :]
    h_prev = tf.concat([states0[0][None], outputs[:-1]], axis=0)
    d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
    d_final = [tf.zeros_like(s) if d is None else d for s, d in zip(states0, d_final)]
    transposed = plan.transposed_weights(recurrent)

    def backward_step(t, d_states):
        """Step `t` backwards: the gradients of the states before it, of its projected input,
        and of its recurrent products' outputs (`dr`, and `d(W_mh h)`)."""
        x_t, r = sequence[t], saved_r.read(t)
        before = [h_prev[t]] + [other.read(t) for other in saved_other]
        with tf.GradientTape() as tape:
            tape.watch([x_t, r] + before)
            h, new_states = cell.gate_update(x_t[:, :width], r, before)
        # `d_before[0]` is h_{t-1}'s direct path through the gate equations (mGRU's z ⊙ h);
        # its path through the products is added below.
        d_x_gates, d_r, *d_before = tape.gradient(
            [h] + list(new_states[1:]), [x_t, r] + before,
            output_gradients=[d_states[0] + d_outputs[t]] + list(d_states[1:]),
            unconnected_gradients=tf.UnconnectedGradients.ZERO)
        mh = products[-1].read(t) if products else None
        d_h_in, d_factor_input, d_mh = plan.recurrent_input_gradient(
            cell, d_r, x_t[:, width:], mh, transposed)
        if d_factor_input is not None:
            d_x_gates = tf.concat([d_x_gates[:, :width], d_factor_input], axis=-1)
        d_h = d_before[0] + tf.cast(d_h_in, before[0].dtype) * mask
        return [d_h] + d_before[1:], d_x_gates, d_r, d_mh

    # A sequence of unknown length is one chunk (XLA always knows the length).
    static_steps = sequence.shape[0]
    bounds = plan.chunk_bounds(static_steps) if static_steps is not None else [(0, steps)]
    d_states, d_sequence = d_final, tf.TensorArray(sequence.dtype, size=steps)
    d_weights = [tf.zeros(w.shape, tf.float32) for w in recurrent]
    for start, end in reversed(bounds):
        arrays = [tf.TensorArray(sequence.dtype, size=end - start)
                  for _ in range(2 if products else 1)]

        def inner(i, d_states, d_sequence, arrays, start=start, end=end):
            t = end - 1 - i
            d_states, d_x_t, d_r, d_mh = backward_step(t, d_states)
            arrays = [a.write(t - start, d) for a, d in zip(arrays, (d_r, d_mh))]
            return i + 1, d_states, d_sequence.write(t, d_x_t), arrays

        _, d_states, d_sequence, arrays = tf.while_loop(
            lambda i, *_, start=start, end=end: i < end - start, inner,
            (0, d_states, d_sequence, arrays))
        h_rows = plan.rows(tf.cast(h_prev[start:end] * mask, sequence.dtype))
        grads = plan.weight_gradients(
            cell, recurrent, rows_product, h_rows, plan.rows(arrays[0].stack()),
            m_rows=(plan.rows(products[0].gather(tf.range(start, end)))
                    if cell.multiplicative else None),
            d_mh_rows=plan.rows(arrays[1].stack()) if products else None)
        d_weights = [total + g for total, g in zip(d_weights, grads)]
    d_recurrent = [tf.cast(g, w.dtype) for g, w in zip(d_weights, recurrent)]
    # The recurrent dropout mask is drawn, not learned: it gets no gradient.
    return (d_sequence.stack(), None, *d_states, *d_recurrent)


def rows_product(a, b):
    """`aᵀ b` over the leading rows dimension (per group for 3-D operands), in float32.

    TensorFlow's `matmul` cannot return float32 from bfloat16 operands, and its bfloat16
    result is rounded after summing thousands of rows; so half-precision operands are cast
    to float32 first (exact: every bfloat16 value is a float32 value). The cost: the weight
    gradients' products, about a third of a step's products, run at float32 speed and read
    operands twice the size."""
    if a.dtype != tf.float32:
        a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    if a.shape.rank == 3:
        return tf.einsum("ngx,ngy->gxy", a, b)
    return tf.matmul(a, b, transpose_a=True)
