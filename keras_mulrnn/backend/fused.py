"""What the fused sequence function computes, written once for every backend.

Automatic differentiation of a recurrence loop forms the gradient of every recurrent weight
matrix inside the backward loop: at every step an outer product whose inner dimension is only
the batch, added into an accumulator. The fused function instead lets the backward loop carry
only the gradients of the states and record, per step, the gradient of each recurrent
product's output; every `CHUNK_STEPS` steps, each recurrent weight gradient is **one** matrix
product over all `steps × batch` rows of the chunk (`H_prevᵀ · dMH`, `Mᵀ · dR`), near the
matrix-multiply peak, without holding those per-step gradients for the whole sequence.

The family's elementwise gate equations (`cell.gate_update`) are differentiated by the
backend's own autodiff inside each backward step, so no per-family calculus is written by
hand: only the products around them, the same for every family. This module holds the parts
the backends share: when the fused function applies, which prepared weights it reads, the
chunk plan, and the transposed products of the backward step, in `keras.ops`.
"""

from keras import ops

from keras_mulrnn.cells.base import grouped_product

# Steps per chunk of the weight-gradient products in the backward pass (with batch 64 or
# more, thousands of rows per product).
CHUNK_STEPS = 32


def supports(cell, mask, unroll):
    """Whether the fused function applies to a call: without a mask or unrolling, for every
    family and transition, but not with the Mogrifier, whose input side cannot be hoisted
    out of the loop (its `x_t` is gated by `h_{t-1}` before any product)."""
    return mask is None and not unroll and not cell.mogrifier_rounds


def kept_products(cell, m, mh):
    """What the forward pass keeps of a step's recurrent products for the backward pass:
    `m` and `W_mh h` (multiplicative), `U h` (integration: the coefficient's gradient is
    `dr ⊙ U h`), nothing (additive)."""
    return [m, mh] if cell.multiplicative else [mh] if cell.integration else []


def kept_count(cell):
    return len(kept_products(cell, None, None))


def recurrent_inputs(cell, weights):
    """The prepared weights that the recurrent products read, as the flat list of the
    function's weight arguments: `U`, or `W_mh` and `W_gm` (one matrix, one stack of the
    groups' blocks, or one block per group: `cell.transition_layout()`).

    Integration's `α, β₁, β₂` are not among them: they act on the input side only, which is
    computed (and differentiated by the backend's autodiff) before the function, so the
    function sees them only through its projected input."""
    if not cell.multiplicative:
        return [weights["recurrent"]]
    transition = weights["transition"]
    return [weights["factor_recurrent"],
            *(transition if isinstance(transition, list) else [transition])]


def recurrent_weights(cell, recurrent):
    """The weights `cell.recurrent_products` reads, from `recurrent_inputs`' list."""
    if not cell.multiplicative:
        return {"recurrent": recurrent[0]}
    transition = list(recurrent[1:])
    return {"factor_recurrent": recurrent[0],
            "transition": transition[0] if len(transition) == 1 else transition}


def chunk_bounds(steps):
    """`[(start, end)]` of the backward pass's chunks over `steps` (a Python int: the chunks
    are laid out at trace time so that every shape is static, as XLA needs)."""
    return [(start, min(start + CHUNK_STEPS, steps)) for start in range(0, steps, CHUNK_STEPS)]


def gate_width(cell):
    return len(cell.gate_order) * cell.units


def transposed_weights(recurrent):
    """The recurrent weights transposed once per sequence (each block of a stack), as the
    backward steps read them."""
    return [ops.swapaxes(weight, -1, -2) for weight in recurrent]


def recurrent_input_gradient(cell, d_r, factor_input, mh, transposed):
    """The backward step through the recurrent products, from `dr` (B, gates·units) and the
    `transposed_weights`.

    Returns `(d_h_in, d_factor_input, d_mh)`: the gradient of the (masked) previous state,
    of the projected `W_mx x` (integration: `α ⊙ W x + β₁`) and of `W_mh h` (integration:
    `U h`); the last two None when additive.
    """
    if cell.integration:
        d_uh = d_r * factor_input
        return ops.matmul(d_uh, transposed[0]), d_r * mh, d_uh
    if not cell.multiplicative:
        return ops.matmul(d_r, transposed[0]), None, None
    blocks = transposed[1:]
    d_m = grouped_product(d_r, blocks[0] if len(blocks) == 1 else blocks)
    d_mh = d_m * factor_input
    return ops.matmul(d_mh, transposed[0]), d_m * mh, d_mh


def rows(tensor):
    """`(steps, batch, width)` as `(steps · batch, width)`."""
    return ops.reshape(tensor, (-1, tensor.shape[-1]))


def weight_gradients(cell, recurrent, rows_product, h_rows, d_r_rows, m_rows=None,
                     d_mh_rows=None):
    """The recurrent weight gradients of one chunk, each one product over all its rows (one
    batched product for a stack of blocks), in float32, in the order of `recurrent`
    (`recurrent_inputs`, whose layout they follow: the backward pass may be traced apart
    from the forward one).

    `rows_product(a, b)` is the backend's `aᵀ b` for `a` `(rows, x)` and `b` `(rows, y)`
    (or `(rows, groups, ·)`, per group): a contraction over the long rows dimension, which
    each backend's matrix multiply runs best in its own way (`keras_mulrnn.backend`)."""
    if cell.integration:
        return [rows_product(h_rows, d_mh_rows)]
    if not cell.multiplicative:
        return [rows_product(h_rows, d_r_rows)]
    groups, widths = len(cell.groups), cell.group_widths()
    if len(recurrent) == 2 and len(recurrent[1].shape) == 3:  # one stack of the blocks
        transition = [rows_product(ops.reshape(m_rows, (-1, groups, cell.rank)),
                                   ops.reshape(d_r_rows, (-1, groups, widths[0])))]
    else:
        m_parts = _split(m_rows, [cell.rank] * groups)
        r_parts = _split(d_r_rows, widths)
        transition = [rows_product(m, d_r) for m, d_r in zip(m_parts, r_parts)]
    return [rows_product(h_rows, d_mh_rows), *transition]


def _split(tensor, widths):
    """`tensor`'s last axis cut into consecutive pieces of `widths`."""
    if len(widths) == 1:
        return [tensor]
    bounds = [sum(widths[: index + 1]) for index in range(len(widths) - 1)]
    return ops.split(tensor, bounds, axis=-1)
