"""The fused sequence function on JAX: a `lax.scan` with a `jax.custom_vjp`.

What it computes and the products of its backward pass are in `keras_mulrnn.backend.fused`;
this module runs them: the forward scan keeps each step's output, recurrent products and
non-output states (the scan stacks them once), and the backward pass scans each chunk of steps
in reverse (the chunks laid out at trace time), differentiating the gate equations with
`jax.vjp`, then forms the chunk's weight gradients in one product each. A `custom_vjp`
cannot differentiate what it closes over, so every prepared weight is an explicit argument;
the cell itself contributes only its equations. Outputs and gradients equal Keras's generic
loop (tested).
"""

import jax
import jax.numpy as jnp

from keras_mulrnn import backend
from keras_mulrnn.backend import fused as plan


def sequence_function(cell):
    """`f(sequence, mask, *states0, *recurrent) -> (outputs, *final_states)` over the projected
    inputs `sequence` (T, B, P), time major; `recurrent` are `plan.recurrent_inputs`."""
    count = cell.state_count
    width = plan.gate_width(cell)
    unroll = backend.recurrence().scan_unroll

    def forward(sequence, mask, states0, recurrent):
        weights = plan.recurrent_weights(cell, recurrent)

        def step(states, x_t):
            r, m, mh = cell.recurrent_products(states[0] * mask, x_t[:, width:], weights)
            h, new_states = cell.gate_update(x_t[:, :width], r, list(states))
            # Kept for the backward pass: the output, the states before the step (all but
            # h, which is the previous output), and the products.
            kept = (h, r, tuple(states[1:]), tuple(plan.kept_products(cell, m, mh)))
            return tuple(new_states), kept

        return jax.lax.scan(step, tuple(states0), sequence, unroll=unroll)

    @jax.custom_vjp
    def function(sequence, mask, states0, recurrent):
        final, kept = forward(sequence, mask, states0, recurrent)
        return kept[0], final

    def function_forward(sequence, mask, states0, recurrent):
        final, kept = forward(sequence, mask, states0, recurrent)
        return (kept[0], final), (sequence, mask, states0, recurrent, kept)

    def function_backward(residuals, cotangents):
        sequence, mask, states0, recurrent, kept = residuals
        d_outputs, d_final = cotangents
        return _backward(cell, sequence, mask, states0, recurrent, kept, d_outputs, d_final,
                         unroll)

    function.defvjp(function_forward, function_backward)

    def run(sequence, mask, *args):
        outputs, final = function(sequence, mask, tuple(args[:count]), tuple(args[count:]))
        return (outputs, *final)

    return run


def _backward(cell, sequence, mask, states0, recurrent, kept, d_outputs, d_final, unroll):
    width = plan.gate_width(cell)
    outputs, saved_r, saved_other, products = kept
    h_prev = jnp.concatenate([states0[0][None], outputs[:-1]], axis=0)
    transposed = plan.transposed_weights(recurrent)

    def gate_equations(x_gates, r, before):
        h, new_states = cell.gate_update(x_gates, r, list(before))
        return (h, *new_states[1:])

    def backward_step(d_states, step):
        """One step backwards: the gradients of the states before it, of its projected
        input, and of its recurrent products' outputs (`dr`, and `d(W_mh h)`)."""
        x_t, r, other, mh, h_before, d_output = step
        before = (h_before, *other)
        _, vjp = jax.vjp(gate_equations, x_t[:, :width], r, before)
        # `d_before[0]` is h_{t-1}'s direct path through the gate equations (mGRU's z ⊙ h);
        # its path through the products is added below.
        d_x_gates, d_r, d_before = vjp((d_states[0] + d_output, *d_states[1:]))
        d_h_in, d_factor_input, d_mh = plan.recurrent_input_gradient(
            cell, d_r, x_t[:, width:], mh, transposed)
        d_x = (d_x_gates if d_factor_input is None
               else jnp.concatenate([d_x_gates, d_factor_input], axis=-1))
        d_h = d_before[0] + d_h_in.astype(h_before.dtype) * mask
        return (d_h, *d_before[1:]), (d_x, d_r, d_mh)

    d_states = tuple(d_final)
    d_sequence = []
    d_weights = [jnp.zeros(w.shape, jnp.float32) for w in recurrent]
    for start, end in reversed(plan.chunk_bounds(sequence.shape[0])):
        steps = (sequence[start:end], saved_r[start:end],
                 tuple(other[start:end] for other in saved_other),
                 products[-1][start:end] if products else None,
                 h_prev[start:end], d_outputs[start:end])
        d_states, (d_x, d_r, d_mh) = jax.lax.scan(backward_step, d_states, steps,
                                                  reverse=True, unroll=unroll)
        h_rows = plan.rows((h_prev[start:end] * mask).astype(sequence.dtype))
        grads = plan.weight_gradients(
            cell, recurrent, rows_product, h_rows, plan.rows(d_r),
            m_rows=plan.rows(products[0][start:end]) if cell.multiplicative else None,
            d_mh_rows=plan.rows(d_mh) if products else None)
        d_weights = [total + g for total, g in zip(d_weights, grads)]
        d_sequence.insert(0, d_x)
    d_recurrent = tuple(g.astype(w.dtype) for g, w in zip(d_weights, recurrent))
    # The recurrent dropout mask is drawn, not learned: its gradient is zero.
    return (jnp.concatenate(d_sequence, axis=0), jnp.zeros_like(mask), d_states, d_recurrent)


def rows_product(a, b):
    """`aᵀ b` over the leading rows dimension (per group for 3-D operands), accumulated and
    returned in float32 (`preferred_element_type`: bfloat16 operands are not rounded to
    bfloat16 after summing thousands of rows).

    XLA on a CPU runs a product that contracts the leading dimension of both operands at
    half the speed of a plain product (measured: BENCHMARKS.md) and folds a transpose into
    the product unless stopped: there (`Recurrence.materialized_transpose`) `aᵀ` is
    materialized behind an optimization barrier, then multiplied as usual. A GPU's product
    reads the operand in place."""
    if a.ndim == 2 and backend.recurrence().materialized_transpose:
        transposed = jax.lax.optimization_barrier(jnp.swapaxes(a, -1, -2))
        return jnp.matmul(transposed, b, preferred_element_type=jnp.float32)
    batch = ((1,), (1,)) if a.ndim == 3 else ((), ())
    return jax.lax.dot_general(a, b, (((0,), (0,)), batch),
                               preferred_element_type=jnp.float32)
