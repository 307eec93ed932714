"""The recurrence over a whole sequence with a hand-written backward pass (TensorFlow).

Automatic differentiation of a `tf.while_loop` computes the gradient of every recurrent
weight matrix inside the backward loop: at every step an outer product whose inner dimension
is only the batch, added into an accumulator. Here the backward loop only carries the
gradients of the states and records, per step, the gradient of each recurrent product's
output; every `CHUNK_STEPS` steps, every recurrent weight gradient gets **one** matrix product
over all `steps × batch` rows of the chunk (`H_prevᵀ · dMH`, `Mᵀ · dR`), which runs near the
matrix-multiply peak without holding those per-step gradients for the whole sequence.

The family's elementwise gate equations (`cell._update`) are differentiated by
`tf.GradientTape` inside each backward step, so this module holds no per-family calculus:
only the products around them are written by hand, and they are the same for every family.
Used by the sequence layers on TensorFlow, without masks or unrolling, for additive cells and
for multiplicative cells whose groups have equal sizes (shared, unshared, equal partitions).
Results and gradients equal those of the plain loop (tested).
"""

import tensorflow as tf

# Steps per chunk of the weight-gradient products in the backward pass (with batch 64 or
# more, thousands of rows per product).
CHUNK_STEPS = 32


def supports(cell, mask, unroll):
    """Whether the fused loop applies to this call."""
    if mask is not None or unroll:
        return False
    return not cell.multiplicative or len({len(group) for group in cell.groups}) == 1


def run(cell, sequence, initial_state, weights, recurrent_mask, go_backwards):
    """Runs `cell` over the projected inputs `sequence`, time major (T, B, P), from
    `initial_state`; returns `(last_output, outputs (B, T, n), final_states)` like
    `keras.src.backend.rnn`."""
    if go_backwards:
        sequence = tf.reverse(sequence, [0])
    recurrent = [weights[name] for name in _recurrent_names(cell)]
    if recurrent_mask is None:
        recurrent_mask = tf.ones_like(initial_state[0])
    outputs, *states = _sequence_function(cell)(sequence, recurrent_mask, *initial_state,
                                                *recurrent)
    outputs = tf.transpose(outputs, (1, 0, 2))
    return outputs[:, -1], outputs, list(states)


def _recurrent_names(cell):
    """The prepared weights that the recurrent products read (the loop's weight inputs)."""
    return ["factor_recurrent", "transition"] if cell.multiplicative else ["recurrent"]


def _sequence_function(cell):
    count = cell.state_count
    width = len(cell.gate_order) * cell.units

    names = _recurrent_names(cell)

    def step(x_t, r, before):
        return cell.gate_update(x_t[:, :width], r, before)

    @tf.custom_gradient
    def sequence_function(sequence, mask, *args):
        states0, recurrent = list(args[:count]), list(args[count:])
        steps = tf.shape(sequence)[0]

        def forward(t, states, saved):
            r, m, mh = cell.recurrent_products(states[0] * mask, sequence[t][:, width:],
                                               dict(zip(names, recurrent)))
            h, new_states = step(sequence[t], r, states)
            # Saved for the backward pass: the output, the states before the step (all but
            # h, which is the previous output), and the products.
            values = [h, r, *states[1:]] + ([m, mh] if m is not None else [])
            saved = [array.write(t, value) for array, value in zip(saved, values)]
            return t + 1, [tf.convert_to_tensor(s) for s in new_states], saved

        kinds = [states0[0].dtype, sequence.dtype] + [s.dtype for s in states0[1:]]
        kinds += [sequence.dtype] * 2 if cell.multiplicative else []
        saved = [tf.TensorArray(dtype, size=steps, clear_after_read=False) for dtype in kinds]
        _, final, saved = tf.while_loop(lambda t, *_: t < steps, forward, (0, states0, saved))
        # Only the outputs are stacked into one tensor; the backward pass reads the rest
        # step by step from the arrays (stacking would copy them all).
        outputs = saved[0].stack()
        saved = [outputs] + saved[1:]

        def grad(d_outputs, *d_final):
            return _backward(cell, step, sequence, mask, states0, recurrent, saved,
                             d_outputs, d_final)

        return (outputs, *final), grad

    return sequence_function


def _backward(cell, step, sequence, mask, states0, recurrent, saved, d_outputs, d_final):
    count = cell.state_count
    width = len(cell.gate_order) * cell.units
    steps = tf.shape(sequence)[0]
    outputs, saved_r, *rest = saved
    saved_other, products = rest[: count - 1], rest[count - 1 :]
    h_prev = tf.concat([states0[0][None], outputs[:-1]], axis=0)
    d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
    d_final = [tf.zeros_like(s) if d is None else d for s, d in zip(states0, d_final)]

    def backward_step(t, d_states):
        """Step `t` backwards: the gradients of the states before it, of its projected input,
        and of its recurrent products' outputs (`dr`, and `d(W_mh h)`)."""
        x_t, r = sequence[t], saved_r.read(t)
        before = [h_prev[t]] + [other.read(t) for other in saved_other]
        with tf.GradientTape() as tape:
            tape.watch([x_t, r] + before)
            h, new_states = step(x_t, r, before)
        # `d_before[0]` is h_{t-1}'s direct path through the gate equations (mGRU's z ⊙ h);
        # its path through the products is added below.
        d_x_t, d_r, *d_before = tape.gradient(
            [h] + list(new_states[1:]), [x_t, r] + before,
            output_gradients=[d_states[0] + d_outputs[t]] + list(d_states[1:]),
            unconnected_gradients=tf.UnconnectedGradients.ZERO)
        d_mh = None
        if cell.multiplicative:
            mh = products[1].read(t)
            d_m = _transition_transpose(cell, d_r, recurrent[1])
            d_mh = d_m * x_t[:, width:]
            d_x_t = tf.concat([d_x_t[:, :width], d_m * mh], axis=-1)
            d_h_in = tf.matmul(d_mh, recurrent[0], transpose_b=True)
        else:
            d_h_in = tf.matmul(d_r, recurrent[0], transpose_b=True)
        d_h = d_before[0] + tf.cast(d_h_in, before[0].dtype) * mask
        return [d_h] + d_before[1:], d_x_t, d_r, d_mh

    # The weight gradients are products over all `time × batch` rows of the recurrent inputs
    # and of `dr` / `d(W_mh h)`. Formed chunk by chunk of CHUNK_STEPS steps (still thousands
    # of rows, near the matmul peak), they never hold those gradients for the whole sequence.
    # The chunks are laid out when the graph is built, so that every shape is static (XLA
    # needs that); a sequence of unknown length is one chunk.
    if sequence.shape[0] is None:
        bounds = [(0, steps)]
    else:
        bounds = [(start, min(start + CHUNK_STEPS, sequence.shape[0]))
                  for start in range(0, sequence.shape[0], CHUNK_STEPS)]
    d_states, d_sequence = d_final, tf.TensorArray(sequence.dtype, size=steps)
    d_weights = [tf.zeros(w.shape, tf.float32) for w in recurrent]
    for start, end in reversed(bounds):
        arrays = [tf.TensorArray(sequence.dtype, size=end - start)
                  for _ in range(2 if cell.multiplicative else 1)]

        def inner(i, d_states, d_sequence, arrays, start=start, end=end):
            t = end - 1 - i
            d_states, d_x_t, d_r, d_mh = backward_step(t, d_states)
            arrays = [a.write(t - start, d) for a, d in zip(arrays, (d_r, d_mh))]
            return i + 1, d_states, d_sequence.write(t, d_x_t), arrays

        _, d_states, d_sequence, arrays = tf.while_loop(
            lambda i, *_, start=start, end=end: i < end - start, inner,
            (0, d_states, d_sequence, arrays))
        h_rows = _rows(tf.cast(h_prev[start:end] * mask, sequence.dtype))
        d_r_rows = _rows(arrays[0].stack())
        if cell.multiplicative:
            m_rows = _rows(products[0].gather(tf.range(start, end)))
            grads = [tf.matmul(h_rows, _rows(arrays[1].stack()), transpose_a=True),
                     _transition_weight_grad(cell, m_rows, d_r_rows)]
        else:
            grads = [tf.matmul(h_rows, d_r_rows, transpose_a=True)]
        d_weights = [total + tf.cast(g, total.dtype) for total, g in zip(d_weights, grads)]
    d_recurrent = [tf.cast(g, w.dtype) for g, w in zip(d_weights, recurrent)]
    # The recurrent dropout mask is drawn, not learned: it gets no gradient.
    return (d_sequence.stack(), None, *d_states, *d_recurrent)


def _rows(tensor):
    return tf.reshape(tensor, (-1, tensor.shape[-1]))


def _transition_transpose(cell, d_r, transition):
    """`dm` from `dr`: the transpose of `cell._transition`."""
    if len(cell.groups) == 1:
        return tf.matmul(d_r, transition, transpose_b=True)
    grouped = tf.reshape(d_r, (-1, len(cell.groups), transition.shape[-1]))
    d_m = tf.einsum("bgs,gks->bgk", grouped, transition)
    return tf.reshape(d_m, (-1, len(cell.groups) * cell.rank))


def _transition_weight_grad(cell, m_rows, d_r_rows):
    """The gradient of the arranged transition weights from all rows at once."""
    if len(cell.groups) == 1:
        return tf.matmul(m_rows, d_r_rows, transpose_a=True)
    groups = len(cell.groups)
    m = tf.transpose(tf.reshape(m_rows, (-1, groups, cell.rank)), (1, 0, 2))
    d_r = tf.transpose(tf.reshape(d_r_rows, (-1, groups, d_r_rows.shape[-1] // groups)),
                       (1, 0, 2))
    return tf.matmul(m, d_r, transpose_a=True)  # (groups, rank, size)
