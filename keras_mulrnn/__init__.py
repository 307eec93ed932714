"""keras_mulrnn: multiplicative recurrent cells (mRNN, mLSTM, mGRU) for Keras 3.

The public names below load on first use, all together (with Keras and its backend), so that
`import keras_mulrnn` is cheap and the command lines can parse their arguments before the
backend starts. Importing the package registers every class of the package with Keras's
serialization as soon as Keras is loaded (`registration` says how), so that
`keras.saving.load_model` loads every `.keras` file the package writes;
`keras_mulrnn.load_model` does so in safe mode with a clear message for a bad file.

The package is laid out by concern:

- `cells/`, `layers.py`, `factory.py`, `params.py`: the cells, their sequence layers, and
  their sizes; every backend;
- `backend/`: the one interface over what differs between Keras backends, with one module
  per backend (`backend/tensorflow/`, `backend/jax/`);
- `data/`: corpora, vocabularies and the truncated-BPTT batches (NumPy);
- `lm/`: the character language model toolkit: model, training, checkpoints, evaluation,
  generation, the command line;
- `analysis/`: the sharing study, error recovery, dynamic evaluation.
"""

import importlib

from keras_mulrnn import registration

# The one place the version is written: setup.py reads it from here.
__version__ = "0.2.0"

# Public name → the module that defines it.
_PUBLIC = {
    "RecurrentCell": "keras_mulrnn.cells",
    "MRNNCell": "keras_mulrnn.cells",
    "MLSTMCell": "keras_mulrnn.cells",
    "MGRUCell": "keras_mulrnn.cells",
    "RecurrentLayer": "keras_mulrnn.layers",
    "MRNN": "keras_mulrnn.layers",
    "MLSTM": "keras_mulrnn.layers",
    "MGRU": "keras_mulrnn.layers",
    "make_cell": "keras_mulrnn.factory",
    "make_layer": "keras_mulrnn.factory",
    "count_params": "keras_mulrnn.params",
    "matching_rank": "keras_mulrnn.params",
    "rank_for_budget": "keras_mulrnn.params",
    "units_for_budget": "keras_mulrnn.params",
    "stack_params": "keras_mulrnn.params",
    "CharLanguageModel": "keras_mulrnn.lm.model",
    "BitsPerCharacter": "keras_mulrnn.lm.model",
    "TrainConfig": "keras_mulrnn.lm.config",
    "train": "keras_mulrnn.lm.training",
    "evaluate_bpc": "keras_mulrnn.lm.evaluation",
    "generate": "keras_mulrnn.lm.generation",
    "load_model": "keras_mulrnn.saving",
    "dynamic_evaluate": "keras_mulrnn.analysis.dynamic_evaluation",
    "gradient_statistics": "keras_mulrnn.analysis.dynamic_evaluation",
    "error_recovery": "keras_mulrnn.analysis.recovery",
    "state_cosine": "keras_mulrnn.analysis.recovery",
}

__all__ = list(_PUBLIC)

# The subpackages and modules, also reachable as attributes (`keras_mulrnn.data`).
_SUBMODULES = ("analysis", "backend", "cells", "data", "factory", "layers", "lm", "params",
               "registration", "saving", "validation")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'keras_mulrnn' has no attribute {name!r}")
    for public, module in _PUBLIC.items():
        globals()[public] = getattr(importlib.import_module(module), public)
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


registration.register_when_keras_loads()
