"""Make any cell or sequence layer from `(family, parametrization, units, rank)`.

Families: `"rnn"` (mRNN), `"lstm"` (mLSTM), `"gru"` (mGRU). Parametrizations:
`"additive"` (the plain RNN/LSTM/GRU transition `U_g h`, the control group),
`"integration"` (multiplicative integration, Wu et al. 2016: no rank, no sharing),
`"shared"` (one intermediate state for all gates), `"unshared"` (one per gate), or an
explicit partition of the family's gate names such as `(("i", "f", "o"), ("u",))`, also
written as a string of gate letters, `"ifo+u"` (the form that command lines and saved
configurations use). `"gates+candidate"` names the partition that separates the candidate
(`u` of mLSTM, `h` of mGRU) from the gates of any family. For the single-transform `"rnn"`
family, `"shared"`, `"unshared"`, `"gates+candidate"` and `"multiplicative"` are the same
cell.
"""

from keras_mulrnn.cells import MGRUCell, MLSTMCell, MRNNCell, resolve_groups
from keras_mulrnn.layers import MGRU, MLSTM, MRNN

CELLS = {"rnn": MRNNCell, "lstm": MLSTMCell, "gru": MGRUCell}
LAYERS = {"rnn": MRNN, "lstm": MLSTM, "gru": MGRU}
PARAMETRIZATIONS = ("additive", "integration", "shared", "unshared", "gates+candidate")
# The parametrizations that are transitions of their own, with no factorization to share.
UNFACTORED = ("additive", "integration")


def cell_class(family):
    """The cell class of `family`; raises `ValueError` for an unknown family."""
    if family not in CELLS:
        raise ValueError(
            f"Invalid value for argument `family`: received family={family!r}. "
            f"Allowed: one of {tuple(CELLS)}."
        )
    return CELLS[family]


def transition_arguments(family, parametrization):
    """The cell arguments (`transition`, `sharing`) that a parametrization stands for."""
    gate_names = cell_class(family).gate_names
    if parametrization in UNFACTORED:
        return {"transition": parametrization}
    if parametrization == "multiplicative" and len(gate_names) == 1:
        parametrization = "shared"
    if parametrization == "gates+candidate":
        *gates, candidate = gate_names  # the candidate comes last in every family
        parametrization = (tuple(gates), (candidate,)) if gates else "shared"
    elif isinstance(parametrization, str) and "+" in parametrization:
        parametrization = tuple(tuple(group) for group in parametrization.split("+"))
    # Validates the mode or partition and names the family's gates in any error.
    resolve_groups(gate_names, parametrization)
    return {"transition": "multiplicative", "sharing": parametrization}


def make_cell(family, parametrization="shared", units=256, rank=None, **kwargs):
    """A cell of `family` in `parametrization`; `kwargs` go to the cell (see its docstring)."""
    return cell_class(family)(
        units, rank=rank, **transition_arguments(family, parametrization), **kwargs
    )


def make_layer(family, parametrization="shared", units=256, rank=None, **kwargs):
    """The sequence layer (e.g. `MLSTM`) of `family`; `kwargs` go to the layer and its cell."""
    return LAYERS[family](
        units, rank=rank, **transition_arguments(family, parametrization), **kwargs
    )
