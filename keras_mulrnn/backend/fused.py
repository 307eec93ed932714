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

# Steps per chunk of the weight-gradient products in the backward pass (with batch 64 or
# more, thousands of rows per product).
CHUNK_STEPS = 32


def supports(cell, mask, unroll):
    """Whether the fused function applies: no mask, no unrolling, and (multiplicative) groups
    of equal sizes (shared, unshared, equal partitions)."""
    if mask is not None or unroll:
        return False
    return not cell.multiplicative or len({len(group) for group in cell.groups}) == 1


def recurrent_names(cell):
    """The prepared weights that the recurrent products read (the function's weight inputs)."""
    return ["factor_recurrent", "transition"] if cell.multiplicative else ["recurrent"]


def chunk_bounds(steps):
    """`[(start, end)]` of the backward pass's chunks over `steps` (a Python int: the chunks
    are laid out at trace time so that every shape is static, as XLA needs)."""
    return [(start, min(start + CHUNK_STEPS, steps)) for start in range(0, steps, CHUNK_STEPS)]


def gate_width(cell):
    return len(cell.gate_order) * cell.units


def transposed_weights(cell, recurrent):
    """The recurrent weights as the backward steps read them, transposed once per sequence:
    `U_gᵀ`, or `W_mhᵀ` and `W_gmᵀ` (equal groups keep their `(groups, rank, size)` layout,
    which the batched product of `recurrent_input_gradient` reads as it is)."""
    if not cell.multiplicative:
        return [ops.transpose(recurrent[0])]
    transition = recurrent[1]
    if len(cell.groups) > 1:
        return [ops.transpose(recurrent[0]), transition]
    return [ops.transpose(recurrent[0]), ops.transpose(transition)]


def recurrent_input_gradient(cell, d_r, factor_input, mh, transposed):
    """The backward step through the recurrent products, from `dr` (B, gates·units) and the
    `transposed_weights`.

    Returns `(d_h_in, d_factor_input, d_mh)`: the gradient of the (masked) previous state,
    of the projected `W_mx x` and of `W_mh h` (the last two None when additive).
    """
    if not cell.multiplicative:
        return ops.matmul(d_r, transposed[0]), None, None
    if len(cell.groups) == 1:
        d_m = ops.matmul(d_r, transposed[1])
    else:
        groups = len(cell.groups)
        grouped = ops.reshape(d_r, (-1, groups, d_r.shape[-1] // groups))
        d_m = ops.reshape(ops.einsum("bgs,gks->bgk", grouped, transposed[1]),
                          (-1, groups * cell.rank))
    d_mh = d_m * factor_input
    return ops.matmul(d_mh, transposed[0]), d_m * mh, d_mh


def rows(tensor):
    """`(steps, batch, width)` as `(steps · batch, width)`."""
    return ops.reshape(tensor, (-1, tensor.shape[-1]))


def weight_gradients(cell, rows_product, h_rows, d_r_rows, m_rows=None, d_mh_rows=None):
    """The recurrent weight gradients of one chunk, each one product over all its rows.

    `rows_product(a, b)` is the backend's `aᵀ b` for `a` `(..., rows, x)` and `b`
    `(..., rows, y)`: a contraction over the long rows dimension, which each backend's
    matrix multiply runs best in its own way."""
    if not cell.multiplicative:
        return [rows_product(h_rows, d_r_rows)]
    return [rows_product(h_rows, d_mh_rows), _transition_weight_gradient(
        cell, rows_product, m_rows, d_r_rows)]


def _transition_weight_gradient(cell, rows_product, m_rows, d_r_rows):
    """The gradient of the arranged transition weights from all rows at once."""
    if len(cell.groups) == 1:
        return rows_product(m_rows, d_r_rows)
    groups = len(cell.groups)
    m = ops.transpose(ops.reshape(m_rows, (-1, groups, cell.rank)), (1, 0, 2))
    d_r = ops.transpose(ops.reshape(d_r_rows, (-1, groups, d_r_rows.shape[-1] // groups)),
                        (1, 0, 2))
    return rows_product(m, d_r)  # (groups, rank, size)
