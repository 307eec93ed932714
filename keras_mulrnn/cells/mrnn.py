"""mRNN: the multiplicative RNN (Sutskever et al., 2011)."""

import keras
from keras import ops

from keras_mulrnn.cells.base import RecurrentCell


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class MRNNCell(RecurrentCell):
    """Cell of the multiplicative RNN: one step of the `MRNN` layer.

        m_t = (W_mx x_t) ⊙ (W_mh h_{t-1})
        h_t = tanh(W_hx x_t + W_hm m_t + b_h)

    The cell has a single transform, so sharing does not apply: `sharing` is accepted for a
    uniform interface, and every valid mode gives the same cell. With
    `transition="additive"`, `W_hm m_t` becomes `U h_{t-1}` (the plain tanh RNN); with
    `transition="integration"`, `h_t = tanh(α ⊙ (W_hx x_t) ⊙ (U h_{t-1}) + β₁ ⊙ (U h_{t-1})
    + β₂ ⊙ (W_hx x_t) + b_h)` (the MI-RNN). The Mogrifier (`mogrifier_rounds > 0`, our
    extension to this cell) gates `x_t` and `h_{t-1}` before the products, as in `MLSTMCell`.

    Args:
        units, rank, transition, use_bias, initializers, regularizers, constraints, dropout,
        recurrent_dropout, weight_norm, mogrifier_rounds, mogrifier_rank, seed: as for
        `MLSTMCell` (weight normalization adds `2n + 2k` gains, `2n` additive or integration,
        plus the Mogrifier's).

    Weight layout: `kernel` `(d, n)` = `W_hx`, `factor_input_kernel` `(d, k)` = `W_mx`,
    `factor_recurrent_kernel` `(n, k)` = `W_mh`, `transition_kernel` `(k, n)` = `W_hm` (or
    `recurrent_kernel` `(n, n)` = `U` when additive or integration, then `alpha`,
    `beta_recurrent`, `beta_input` `(n,)`), the Mogrifier's matrices as for `MLSTMCell`,
    `bias` `(n,)`.
    """

    gate_names = ("h",)

    def __init__(self, units, rank=None, sharing="shared", **kwargs):
        super().__init__(units, rank=rank, sharing=sharing, **kwargs)

    def _update(self, x, r, states):
        h = ops.tanh(x["h"] + r["h"])
        return h, [h]
