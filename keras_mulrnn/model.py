"""The character language model and its bits-per-character metric.

`CharLanguageModel`: embedding → one or more recurrent layers of any family and
parametrization → logits over the vocabulary. Its `forward(ids, states)` takes and returns
the recurrent states explicitly; training carries them from batch to batch in variables that
the model owns but does not save (they depend on the batch size), and resets them at the
start of each pass over the split, which it knows from the optimizer's step counter. So the
position in the data, the schedule and the reset all follow from one number, the step, and
nothing depends on Keras's stateful layers (awkward under `tf.distribute`).
"""

import math

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses.loss import unscale_loss_for_distribution

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
        parametrization: `"additive"`, `"shared"`, `"unshared"` or a partition of the gates.
        units: hidden units of every recurrent layer.
        rank: factorization rank (default `units`; None for additive).
        num_layers: number of stacked recurrent layers.
        embedding_dim: size of the symbol embedding.
        input_dropout: variational dropout of the embedded input (one mask per sequence).
        recurrent_dropout: variational dropout of `h_{t-1}` inside every layer.
        output_dropout: dropout between layers (variational) and before the output layer.
        weight_norm: weight normalization of every recurrent weight matrix.
        seed: seed of the dropout masks.
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
            weight_norm=weight_norm, seed=seed,
        )
        self.embedding = keras.layers.Embedding(len(vocabulary), embedding_dim)
        self.recurrent_layers = [
            make_layer(
                family, parametrization, units=units, rank=rank,
                dropout=input_dropout if index == 0 else output_dropout,
                recurrent_dropout=recurrent_dropout, weight_norm=weight_norm,
                seed=None if seed is None else seed + index,
                return_sequences=True, return_state=True, name=f"recurrent_{index}",
            )
            for index in range(num_layers)
        ]
        self.output_dropout = keras.layers.Dropout(output_dropout, seed=seed)
        # Logits in float32 so that the loss is float32 under a mixed policy.
        self.head = keras.layers.Dense(len(vocabulary), dtype="float32", name="logits")
        self._carry = _Carry()

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
        first, and the new states; `states=None` starts from zero."""
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

    def call(self, ids, training=False):
        return self.forward(ids, self.zero_states(ops.shape(ids)[0]), training)[0]

    # ----------------------------------------------------- carried training state

    def start_carry(self, batch_size, batches_per_pass):
        """Creates the carried states for training with `batch_size` rows; the state is
        zeroed whenever the optimizer's step is a multiple of `batches_per_pass`."""
        self._carry.states = [
            tf.Variable(tf.zeros((batch_size, size)), trainable=False, name=f"carry_{i}")
            for i, size in enumerate(self.state_sizes)
        ]
        self._carry.batches_per_pass = batches_per_pass

    @property
    def carried_states(self):
        return self._carry.states

    def _carried_in(self):
        step = self.optimizer.iterations
        keep = ops.cast(ops.not_equal(step % self._carry.batches_per_pass, 0), "float32")
        return [state * keep for state in self._carry.states]

    def train_step(self, data):
        ids, targets, weights = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits, states = self.forward(ids, self._carried_in(), training=True)
            loss = self.compute_loss(
                x=ids, y=targets, y_pred=logits, sample_weight=weights, training=True
            )
            # As Keras's own TensorFlow `train_step` does: track the per-replica loss, and
            # scale it for a loss-scaling (float16) optimizer.
            self._loss_tracker.update_state(
                unscale_loss_for_distribution(loss), sample_weight=tf.shape(ids)[0]
            )
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        for variable, state in zip(self._carry.states, states):
            variable.assign(tf.stop_gradient(state))
        return self.compute_metrics(ids, targets, logits, sample_weight=weights)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary": self.vocabulary.get_config(),
            **self.settings,
        }


class _Carry:
    """Holds the training-time states outside Keras's tracking, so they are not saved with
    the model (their shape depends on the batch size); checkpoints save them separately."""

    states = ()
    batches_per_pass = 1
