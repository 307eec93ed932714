"""mLSTM: the multiplicative LSTM (Krause et al., 2016), shared or unshared."""

import keras
from keras import ops

from keras_mulrnn.cells.base import RecurrentCell


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class MLSTMCell(RecurrentCell):
    """Cell of the multiplicative LSTM: one step of the `MLSTM` layer.

    With `m^G = (W^G_mx x_t) ⊙ (W^G_mh h_{t-1})` the intermediate state of gate group `G`
    and `m^g` that of the group holding gate `g`:

        i = σ(W_ix x_t + W_im m^i + b_i)      f = σ(W_fx x_t + W_fm m^f + b_f)
        o = σ(W_ox x_t + W_om m^o + b_o)      u = tanh(W_ux x_t + W_um m^u + b_u)
        c_t = f ⊙ c_{t-1} + i ⊙ u             h_t = o ⊙ tanh(c_t)

    With `transition="additive"`, `W_gm m^g` becomes `U_g h_{t-1}` (the plain LSTM, the
    control group of the sharing study). With `transition="integration"` (multiplicative
    integration, Wu et al. 2016: the MI-LSTM), every pre-activation `W_gx x_t + U_g h_{t-1}
    + b_g` becomes

        α_g ⊙ (W_gx x_t) ⊙ (U_g h_{t-1}) + β₁_g ⊙ (U_g h_{t-1}) + β₂_g ⊙ (W_gx x_t) + b_g

    with vectors `α_g, β₁_g, β₂_g` of size `n` (no rank, no sharing). With
    `mogrifier_rounds=r > 0` (the Mogrifier LSTM, Melis et al. 2020), before the update
    `x_t` and `h_{t-1}` gate each other for `r` rounds, `x ← 2σ(h Qⁱ) ⊙ x` on odd rounds
    and `h ← 2σ(x Rⁱ) ⊙ h` on even ones, and the gates read the results (`c_{t-1}` is left
    as it is); this works with every transition (the Mogrifier mLSTM is our extension).
    States: `[h, c]`.

    Args:
        units: positive int, `n`, the size of `h` and `c`.
        rank: positive int, `k`, the size of each intermediate state. Default `units`.
        sharing: `"shared"` (one `m` for all gates, mLSTM as published), `"unshared"` (one
            factorization per gate), or a partition of `("i", "f", "o", "u")` such as
            `(("i", "f", "o"), ("u",))`.
        transition: `"multiplicative"` (default), `"additive"` or `"integration"`.
        use_bias: whether the gates have biases `b_g`.
        unit_forget_bias: if True (default), the forget gate's bias starts at 1.
        kernel_initializer, recurrent_initializer, bias_initializer: initializers of the
            input-side matrices (`W_gx`, `W_mx`), the state-side matrices (`W_mh`, `W_gm`, or
            `U_g`) and the biases.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: regularizers of the
            same three groups of weights.
        kernel_constraint, recurrent_constraint, bias_constraint: constraints, likewise.
        dropout: fraction of the input units dropped, one mask per sequence.
        recurrent_dropout: fraction of `h_{t-1}` dropped before every product that reads it,
            one mask per sequence.
        weight_norm: if True, every weight matrix is `g · v / ||v||` with one gain per output
            column (`8n + 2Gk` gains multiplicative, `8n` additive or integration, plus the
            Mogrifier's), started at the initial column norms.
        mogrifier_rounds: `r ≥ 0`, the Mogrifier's rounds (0: none).
        mogrifier_rank: `k_m`, each round's matrix as the product of two factors of rank
            `k_m` (default None: full matrices).
        seed: seed of the dropout masks.

    Weight layout (what `get_weights` returns, for copying weights in and out): `kernel`
    `(d, 4n)`, then `factor_input_kernel` `(d, G·k)` = `[W^G_mx]` and
    `factor_recurrent_kernel` `(n, G·k)` = `[W^G_mh]` over groups `cell.groups`,
    `transition_kernel` `(k, 4n)` = `[W_gm]`, or `recurrent_kernel` `(n, 4n)` = `[U_g]` when
    additive or integration, then integration's `alpha`, `beta_recurrent` (`β₁`) and
    `beta_input` (`β₂`), each `(4n,)`; the Mogrifier's `mogrifier_q_1` `(n, d)`,
    `mogrifier_r_2` `(d, n)`, `mogrifier_q_3`, … (`Qⁱ`, `Rⁱ` as right-multiplied matrices),
    or at a rank `mogrifier_q_1_left` `(n, k_m)` and `mogrifier_q_1_right` `(k_m, d)`, …;
    `bias` `(4n,)`. Gate columns follow `cell.gate_order` (the groups' gates in turn;
    canonical `i, f, o, u` unless a partition reorders them).
    """

    gate_names = ("i", "f", "o", "u")
    state_count = 2

    def __init__(self, units, rank=None, sharing="shared", unit_forget_bias=True, **kwargs):
        super().__init__(units, rank=rank, sharing=sharing, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        forget = self.gate_order.index("f")
        base = self.bias_initializer
        units = self.units

        def initializer(shape, dtype=None):
            parts = ops.split(base(shape, dtype=dtype), len(self.gate_order))
            parts[forget] = ops.ones((units,), dtype=dtype)
            return ops.concatenate(parts)

        return initializer

    def _update(self, x, r, states):
        c = states[1]
        i = ops.sigmoid(x["i"] + r["i"])
        f = ops.sigmoid(x["f"] + r["f"])
        o = ops.sigmoid(x["o"] + r["o"])
        u = ops.tanh(x["u"] + r["u"])
        c = f * c + i * u
        h = o * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}
