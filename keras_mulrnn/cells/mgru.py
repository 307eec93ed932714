"""mGRU: the multiplicative GRU, shared or unshared."""

import keras
from keras import ops

from keras_mulrnn.cells.base import RecurrentCell


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class MGRUCell(RecurrentCell):
    """Cell of the multiplicative GRU: one step of the `MGRU` layer.

    With `m^g` the intermediate state of the group holding gate `g` (see `MLSTMCell`):

        z = σ(W_zx x_t + W_zm m^z + b_z)      r = σ(W_rx x_t + W_rm m^r + b_r)
        ĥ = tanh(W_hx x_t + r ⊙ (W_hm m^h) + b_h)
        h_t = z ⊙ h_{t-1} + (1 − z) ⊙ ĥ

    The reset gate applies after the candidate's projection (Keras's `reset_after=True`).
    With `transition="additive"`, `W_gm m^g` becomes `U_g h_{t-1}` (the plain GRU). With
    `transition="integration"` (the MI-GRU), each pre-activation is multiplicative
    integration's block (see `MLSTMCell`), the candidate's with the reset gate on its
    recurrent product, as above:

        ĥ = tanh(α_h ⊙ (W_hx x_t) ⊙ (r ⊙ U_h h_{t-1}) + β₁_h ⊙ (r ⊙ U_h h_{t-1})
                 + β₂_h ⊙ (W_hx x_t) + b_h)

    With the Mogrifier (`mogrifier_rounds > 0`, our extension to the GRU), the gated `x_t`
    and `h_{t-1}` enter every product; `z ⊙ h_{t-1}` keeps the unmodified state.

    Args:
        units, rank, transition, use_bias, initializers, regularizers, constraints, dropout,
        recurrent_dropout, weight_norm, mogrifier_rounds, mogrifier_rank, seed: as for
        `MLSTMCell` (weight normalization adds `6n + 2Gk` gains, `6n` additive or
        integration, plus the Mogrifier's).
        sharing: `"shared"`, `"unshared"`, or a partition of `("z", "r", "h")`.

    Weight layout as for `MLSTMCell`, with `3n` gate columns in `cell.gate_order`.
    """

    gate_names = ("z", "r", "h")

    def __init__(self, units, rank=None, sharing="shared", **kwargs):
        super().__init__(units, rank=rank, sharing=sharing, **kwargs)

    def _update(self, x, r, states):
        h = states[0]
        z = ops.sigmoid(x["z"] + r["z"])
        reset = ops.sigmoid(x["r"] + r["r"])
        candidate = ops.tanh(x["h"] + reset * r["h"])
        h = z * h + (1 - z) * candidate
        return h, [h]
