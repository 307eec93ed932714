"""Recurrent cells: mRNN, mLSTM, mGRU, each multiplicative (shared or unshared), additive or
with multiplicative integration, and each with the Mogrifier as an option."""

from keras_mulrnn.cells.base import RecurrentCell
from keras_mulrnn.cells.mgru import MGRUCell
from keras_mulrnn.cells.mlstm import MLSTMCell
from keras_mulrnn.cells.mrnn import MRNNCell
from keras_mulrnn.cells.sharing import resolve_groups

__all__ = ["RecurrentCell", "MRNNCell", "MLSTMCell", "MGRUCell", "resolve_groups"]
