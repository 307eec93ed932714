"""keras_mulrnn: multiplicative recurrent cells (mRNN, mLSTM, mGRU) for Keras 3."""

from keras_mulrnn.cells import MGRUCell, MLSTMCell, MRNNCell, RecurrentCell
from keras_mulrnn.factory import make_cell, make_layer
from keras_mulrnn.layers import MGRU, MLSTM, MRNN, RecurrentLayer
from keras_mulrnn.params import (
    count_params,
    matching_rank,
    rank_for_budget,
    stack_params,
    units_for_budget,
)
from keras_mulrnn.model import BitsPerCharacter, CharLanguageModel
from keras_mulrnn.evaluation import evaluate_bpc
from keras_mulrnn.dynamic_evaluation import dynamic_evaluate, gradient_statistics
from keras_mulrnn.analysis import error_recovery, state_cosine
from keras_mulrnn.generation import generate
from keras_mulrnn.saving import load_model
from keras_mulrnn.training import TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "MRNNCell",
    "MLSTMCell",
    "MGRUCell",
    "RecurrentCell",
    "MRNN",
    "MLSTM",
    "MGRU",
    "RecurrentLayer",
    "make_cell",
    "make_layer",
    "count_params",
    "matching_rank",
    "rank_for_budget",
    "units_for_budget",
    "stack_params",
    "CharLanguageModel",
    "BitsPerCharacter",
    "evaluate_bpc",
    "dynamic_evaluate",
    "gradient_statistics",
    "error_recovery",
    "state_cosine",
    "generate",
    "load_model",
    "TrainConfig",
    "train",
]
