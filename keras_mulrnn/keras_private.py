"""Every private Keras name the package depends on, in one place.

Keras 3 exports no public form of these. A Keras upgrade may move or rename any of them:
`tests/test_keras_private.py` checks each one against the installed Keras and says which
went missing and what depends on it. Import the private modules from here, never from
`keras.src` elsewhere, and list here every private method the package calls or overrides.
"""

# The backend-neutral recurrence loop that `keras.layers.RNN` itself runs (a `tf.while_loop`
# on TensorFlow, `lax.scan` on JAX): the sequence layers run the cells with it.
from keras.src.backend import rnn as backend_rnn

# Whether JAX code runs inside Keras's stateless scope (its trainer's pure step): the JAX
# backend's fused pass reads variables through it.
from keras.src.backend.common.stateless_scope import get_stateless_scope

# Keras's `RNN` layer pre-builds one dropout mask per sequence only for cells that inherit
# this mixin (an `isinstance` check), so inheriting it is what makes variational dropout
# work inside `keras.layers.RNN` and keeps the JAX loop pure.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

# The private methods the package calls or overrides: (the class that defines it, its name,
# the module that uses it and how). The class is given by its module and name: a backend's
# trainer is looked at only where that backend is installed.
METHODS = [
    ("keras.src.trainers.trainer.Trainer", "_symbolic_build",
     "lm/optimization.py builds the model, its loss and metrics before the carry starts"),
    ("keras.src.backend.tensorflow.trainer.TensorFlowTrainer", "_maybe_symbolic_build",
     "lm/model.py overrides it: no first-batch peek once the carry has started"),
    ("keras.src.optimizers.base_optimizer.BaseOptimizer", "_get_current_learning_rate",
     "lm/optimization.py overrides it: the NaN roll-back's learning-rate scale"),
    ("keras.src.optimizers.base_optimizer.BaseOptimizer", "_clip_gradients",
     "lm/optimization.py overrides it: the global norm of the whole global batch"),
    ("keras.src.backend.jax.trainer.JAXTrainer", "jax_state_sync",
     "backend/jax writes the trainer's state back into the variables before a checkpoint"),
    ("keras.src.layers.rnn.dropout_rnn_cell.DropoutRNNCell", "get_dropout_mask",
     "layers.py builds the input dropout mask of a sequence once"),
    ("keras.src.layers.rnn.dropout_rnn_cell.DropoutRNNCell", "get_recurrent_dropout_mask",
     "layers.py builds the recurrent dropout mask of a sequence once"),
]

__all__ = ["backend_rnn", "get_stateless_scope", "DropoutRNNCell", "METHODS"]
