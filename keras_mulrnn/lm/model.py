"""The character language model and its bits-per-character metric.

`CharLanguageModel`: embedding → one or more recurrent layers of any family and
parametrization → logits over the vocabulary. `forward(ids, states)` takes and returns the
recurrent states explicitly (evaluation, generation, analysis). Training calls the model on
`(ids, reset)` instead: the states then come from variables that the model carries from batch
to batch and assigns inside `call`, zeroed for the rows whose `reset` flag is 1 (the first
batch of a pass over the split). So Keras's own `train_step` trains it on every backend, and
the position in the data, the schedule and the resets all follow from one number, the step.

The carried state is not part of the model: it is left out of `.keras` files and weight
lists (its shape is the training batch's), kept in float32 under a mixed policy, and saved
by the training checkpoints separately.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.data.vocabulary import Vocabulary
from keras_mulrnn.factory import make_layer
from keras_mulrnn.validation import check_positive_int

LN2 = math.log(2.0)


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class BitsPerCharacter(keras.metrics.Metric):
    """Mean of `−log2 p(target)` over every weighted symbol (weights mark real symbols)."""

    def __init__(self, name="bpc", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        bits = symbol_bits(y_true, y_pred)
        if sample_weight is None:
            sample_weight = ops.ones_like(bits)
        sample_weight = ops.cast(sample_weight, bits.dtype)
        self.total.assign_add(ops.sum(bits * sample_weight))
        self.count.assign_add(ops.sum(sample_weight))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)


def symbol_bits(targets, logits):
    """`−log2 p(target)` of every position, in float32."""
    nats = keras.losses.sparse_categorical_crossentropy(
        targets, ops.cast(logits, "float32"), from_logits=True
    )
    return nats / LN2


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class CharLanguageModel(keras.Model):
    """A character (or byte) language model over any recurrent family.

    Args:
        vocabulary: a `Vocabulary` (or its config dict); saved with the model.
        family: `"rnn"`, `"lstm"` or `"gru"`.
        parametrization: `"additive"`, `"integration"`, `"shared"`, `"unshared"` or a
            partition of the gates.
        units: hidden units of every recurrent layer.
        rank: factorization rank (default `units`; None for additive and integration).
        num_layers: number of stacked recurrent layers.
        embedding_dim: size of the symbol embedding.
        input_dropout: variational dropout of the embedded input (one mask per sequence).
        recurrent_dropout: variational dropout of `h_{t-1}` inside every layer.
        output_dropout: dropout between layers (variational) and before the output layer.
        weight_norm: weight normalization of every recurrent weight matrix.
        mogrifier_rounds, mogrifier_rank: the Mogrifier's rounds (0: none) and the rank of
            its matrices (None: full), in every recurrent layer.
        seed: seed of the dropout masks.
        dtype: the dtype policy of every layer but the output layer, whose logits are
            float32 (`"mixed_bfloat16"`: products in bfloat16, weights and states float32).

    Called on ids `(B, T)`, it returns the logits `(B, T, V)` from a zero state; called on
    `(ids, reset)` after `start_carry`, it continues the carried state (training).
    """

    def __init__(
        self,
        vocabulary,
        family="lstm",
        parametrization="shared",
        units=512,
        rank=None,
        num_layers=1,
        embedding_dim=64,
        input_dropout=0.0,
        recurrent_dropout=0.0,
        output_dropout=0.0,
        weight_norm=False,
        mogrifier_rounds=0,
        mogrifier_rank=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(vocabulary, dict):
            vocabulary = Vocabulary.from_config(vocabulary)
        check_positive_int("num_layers", num_layers)
        check_positive_int("embedding_dim", embedding_dim)
        self.vocabulary = vocabulary
        self.settings = dict(
            family=family, parametrization=parametrization, units=units, rank=rank,
            num_layers=num_layers, embedding_dim=embedding_dim, input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout, output_dropout=output_dropout,
            weight_norm=weight_norm, mogrifier_rounds=mogrifier_rounds,
            mogrifier_rank=mogrifier_rank, seed=seed,
        )
        # The model's dtype policy (e.g. `dtype="mixed_bfloat16"`) is its layers'.
        policy = self.dtype_policy
        self.embedding = keras.layers.Embedding(len(vocabulary), embedding_dim, dtype=policy)
        self.recurrent_layers = [
            make_layer(
                family, parametrization, units=units, rank=rank,
                dropout=input_dropout if index == 0 else output_dropout,
                recurrent_dropout=recurrent_dropout, weight_norm=weight_norm,
                mogrifier_rounds=mogrifier_rounds, mogrifier_rank=mogrifier_rank,
                seed=None if seed is None else seed + index,
                return_sequences=True, return_state=True, name=f"recurrent_{index}",
                dtype=policy,
            )
            for index in range(num_layers)
        ]
        self.output_dropout = keras.layers.Dropout(output_dropout, seed=seed, dtype=policy)
        # Logits in float32 so that the loss is float32 under a mixed policy.
        self.head = keras.layers.Dense(len(vocabulary), dtype="float32", name="logits")
        self.carry = CarriedState()

    @property
    def state_sizes(self):
        """The size of every recurrent state, layer by layer (the flat `states` order)."""
        return [self.settings["units"]] * sum(
            layer.cell.state_count for layer in self.recurrent_layers
        )

    def zero_states(self, batch_size):
        return [ops.zeros((batch_size, size), "float32") for size in self.state_sizes]

    def forward(self, ids, states, training=False):
        """Logits `(B, T, V)` and the new states, from ids `(B, T)` and the states."""
        outputs, new_states = self.hidden_sequences(ids, states, training)
        return self.head(self.output_dropout(outputs[-1], training=training)), new_states

    def hidden_sequences(self, ids, states=None, training=False):
        """The output sequence `h_1 … h_T` `(B, T, units)` of every recurrent layer, bottom
        first, and the new states (float32); `states=None` starts from zero."""
        if states is None:
            states = self.zero_states(ops.shape(ids)[0])
        x = self.embedding(ids)
        outputs, new_states = [], []
        position = 0
        for layer in self.recurrent_layers:
            count = layer.cell.state_count
            x, *layer_states = layer(
                x, initial_state=states[position : position + count], training=training
            )
            outputs.append(x)
            new_states.extend(ops.cast(s, "float32") for s in layer_states)
            position += count
        return outputs, new_states

    def call(self, inputs, training=False):
        if isinstance(inputs, (list, tuple)):
            ids, reset = inputs
            logits, states = self.forward(ids, self.carry.states_for(ids, reset), training)
            self.carry.update(states)
            return logits
        return self.forward(inputs, self.zero_states(ops.shape(inputs)[0]), training)[0]

    # ----------------------------------------------------- carried training state

    def start_carry(self, batch_size, distribution):
        """Creates (or zeroes) the carried states of `batch_size` global rows, laid out by
        `distribution` (a `keras_mulrnn.backend` distribution: each replica or device holds
        its own rows)."""
        self.carry.start(batch_size, self.state_sizes, distribution)

    def carry_values(self):
        """The carried states of all rows as NumPy arrays (a collective operation under a
        multi-worker strategy: every worker calls it)."""
        return self.carry.distribution.read_carry(self.carry.states)

    def set_carry_values(self, values):
        """Loads `carry_values()` of a run with the same global batch, whatever its strategy."""
        self.carry.distribution.write_carry(self.carry.states, values)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return backend.step_logs(super().compute_metrics(x, y, y_pred, sample_weight))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Training builds the model, its loss and metrics before it starts the carry
        # (`lm.optimization.build_model`), so there is nothing to peek at; Keras's TensorFlow
        # trainer would otherwise average a first batch over the replicas, which fails for
        # integer ids under MultiWorkerMirroredStrategy.
        if not self.carry.started:
            super()._maybe_symbolic_build(iterator, data_batch)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary": self.vocabulary.get_config(),
            **self.settings,
        }


class CarriedState(keras.layers.Layer):
    """The carried training state of a `CharLanguageModel`.

    Its variables are tracked (so that every backend's trainer updates them, JAX's through
    its stateless step), but they are not weights: `weights` leaves them out, and saving and
    loading skip them.
    """

    def __init__(self, **kwargs):
        super().__init__(name="carried_state", trainable=False, **kwargs)
        self.states = []
        self.distribution = None
        self.batch_size = None  # global rows
        self.built = True

    @property
    def started(self):
        return bool(self.states)

    def start(self, batch_size, sizes, distribution):
        """Makes the variables of `batch_size` global rows of states of `sizes`; a second
        start (for the same batch: the variables are tracked once) zeroes them."""
        if self.started:
            if batch_size != self.batch_size:
                raise ValueError(
                    f"The carried state was started for a batch of {self.batch_size} rows, "
                    f"not {batch_size}; build a new model to train with another batch size."
                )
            distribution.write_carry(self.states, [np.zeros((batch_size, size), "float32")
                                                   for size in sizes])
        else:
            self.states = distribution.carry_variables(batch_size, sizes)
        self.distribution, self.batch_size = distribution, batch_size

    def states_for(self, ids, reset):
        """The states a training batch starts from: the carried ones, zeroed where `reset`."""
        if not self.started:
            raise ValueError(
                "The model was called on (ids, reset), which continues the carried training "
                "state, before start_carry(batch_size, distribution). Call it on ids alone "
                "to start from a zero state."
            )
        rows = ids.shape[0]
        if rows is not None and rows != self.states[0].shape[0]:
            raise ValueError(
                f"The training batch has {rows} rows, but the carried state was made for "
                f"{self.states[0].shape[0]}."
            )
        # (`where`, not a product: a carried NaN must not survive a reset.)
        reset = ops.expand_dims(ops.cast(reset, "bool"), -1)
        return [ops.where(reset, 0.0, state.value) for state in self.states]

    def update(self, states):
        for variable, state in zip(self.states, states, strict=True):
            variable.assign(ops.stop_gradient(state))

    @property
    def weights(self):
        return []

    def save_own_variables(self, store):
        """The carried state is never saved with the model (checkpoints save it apart)."""

    def load_own_variables(self, store):
        """Nothing to load: see `save_own_variables`."""
