"""Every invalid argument fails at construction, naming the argument, the value and what is
allowed."""

import pytest

import keras_mulrnn as km

BAD = [
    (km.MLSTMCell, {"units": 0}, r"`units`.*units=0.*positive integer"),
    (km.MGRUCell, {"units": -3}, r"`units`.*units=-3.*positive integer"),
    (km.MRNNCell, {"units": 2.5}, r"`units`.*units=2.5.*positive integer"),
    (km.MLSTMCell, {"units": 8, "rank": 0}, r"`rank`.*rank=0.*positive integer"),
    (km.MGRUCell, {"units": 8, "rank": -1}, r"`rank`.*rank=-1.*positive integer"),
    (km.MLSTMCell, {"units": 8, "sharing": "partial"},
     r"`sharing`.*'partial'.*'shared', 'unshared'"),
    (km.MLSTMCell, {"units": 8, "sharing": (("i", "f", "o"), ("x",))},
     r"`sharing`.*unknown gate.*'x'.*\('i', 'f', 'o', 'u'\)"),
    (km.MLSTMCell, {"units": 8, "sharing": (("i", "f"), ("o",))},
     r"`sharing`.*missing \['u'\]"),
    (km.MGRUCell, {"units": 8, "sharing": (("z", "r"), ("r", "h"))},
     r"`sharing`.*repeated \['r'\]"),
    (km.MGRUCell, {"units": 8, "sharing": ("z", "r", "h")}, r"`sharing`.*partition"),
    (km.MLSTMCell, {"units": 8, "dropout": 1.0}, r"`dropout`.*dropout=1.0.*\[0, 1\)"),
    (km.MLSTMCell, {"units": 8, "dropout": -0.1}, r"`dropout`.*dropout=-0.1.*\[0, 1\)"),
    (km.MGRUCell, {"units": 8, "recurrent_dropout": 1.5},
     r"`recurrent_dropout`.*recurrent_dropout=1.5.*\[0, 1\)"),
    (km.MRNNCell, {"units": 8, "transition": "quadratic"},
     r"`transition`.*'quadratic'.*'multiplicative', 'additive'"),
    (km.MLSTMCell, {"units": 8, "transition": "additive", "rank": 4},
     r"`rank`.*rank=4.*additive"),
    (km.MLSTM, {"units": 0}, r"`units`.*units=0"),
    (km.MGRU, {"units": 8, "sharing": "nope"}, r"`sharing`.*'nope'"),
]


@pytest.mark.parametrize("constructor,kwargs,message", BAD)
def test_invalid_argument(constructor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        constructor(**kwargs)


def test_factory_rejects_unknown_family_and_parametrization():
    with pytest.raises(ValueError, match=r"`family`.*'lstmx'.*\('rnn', 'lstm', 'gru'\)"):
        km.make_cell("lstmx", "shared", units=8)
    with pytest.raises(ValueError, match=r"`sharing`.*'half'"):
        km.make_layer("gru", "half", units=8)
