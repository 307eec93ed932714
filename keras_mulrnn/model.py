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
from keras_mulrnn.distribute import check_batch_split
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
        self.gradient_clipnorm = None  # set by `training.build_model`; see `_clipped`

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
        zeroed whenever the optimizer's step is a multiple of `batches_per_pass`.

        Under a `tf.distribute` strategy with `R` replicas every replica receives the whole
        batch and trains on its own `batch_size / R` consecutive rows (replica `r`: rows
        `[r·b, (r+1)·b)`), whose states it carries in its own copy of the variables (they are
        `ON_READ`: never averaged or copied between replicas).
        """
        strategy = self.distribute_strategy
        check_batch_split(batch_size, strategy)
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            states = [
                tf.Variable(tf.zeros((batch_size // replicas, size)), trainable=False,
                            name=f"carry_{i}",
                            synchronization=tf.VariableSynchronization.ON_READ,
                            aggregation=tf.VariableAggregation.NONE)
                for i, size in enumerate(self.state_sizes)
            ]
        self._carry.states = states
        self._carry.batches_per_pass = batches_per_pass
        if replicas > 1:
            @tf.function
            def gather():
                local = strategy.run(lambda: [tf.identity(state) for state in states])
                return [strategy.gather(value, axis=0) for value in local]

            @tf.function
            def scatter(values):
                def assign(values):
                    for state, value in zip(states, values, strict=True):
                        state.assign(_own_rows(value))

                strategy.run(assign, args=(values,))

            self._carry.gather, self._carry.scatter = gather, scatter

    def carry_values(self):
        """The carried states of all rows, `(batch_size, units)` NumPy arrays gathered from
        every replica in row order. A collective operation under a multi-worker strategy:
        every worker must call it."""
        if self._carry.gather is None:
            return [state.numpy() for state in self._carry.states]
        return [value.numpy() for value in self._carry.gather()]

    def set_carry_values(self, values):
        """Loads `carry_values()` of a run with the same batch size, whatever its strategy."""
        if self._carry.scatter is None:
            for state, value in zip(self._carry.states, values, strict=True):
                state.assign(value)
        else:
            self._carry.scatter([tf.constant(value) for value in values])

    def _carried_in(self):
        step = self.optimizer.iterations
        keep = ops.cast(ops.not_equal(step % self._carry.batches_per_pass, 0), "float32")
        return [state * keep for state in self._carry.states]

    def train_step(self, data):
        ids, targets, weights = (
            _own_rows(x) for x in keras.utils.unpack_x_y_sample_weight(data)
        )
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
        self.optimizer.apply(self._clipped(gradients), self.trainable_variables)
        for variable, state in zip(self._carry.states, states):
            variable.assign(tf.stop_gradient(state))
        logs = self.compute_metrics(ids, targets, logits, sample_weight=weights)
        if _multi_worker(self.distribute_strategy):
            # Keras averages a multi-worker step's outputs over replicas *and* axis 0, which
            # scalars lack (tensorflow issue 72388). The metrics' variables sum all
            # replicas' updates, so every replica holds the global values: give them an axis.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy Keras builds the metrics from a first batch that it averages over
        # the replicas, a reduction that fails for integer ids under
        # MultiWorkerMirroredStrategy; any one replica's batch has the right shapes.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(self._local_value, next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator, data_batch)

    def _local_value(self, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return self.distribute_strategy.experimental_local_results(value)[0]
        return value

    def _clipped(self, gradients):
        """Gradients scaled so that the global batch's gradient has a norm of at most
        `self.gradient_clipnorm` (None: unchanged).

        Keras's optimizer would clip each replica's share of the gradient before summing
        them, which is not the one-device result; so with several replicas the shares are
        summed here first (one extra all-reduce), clipped, and handed to the optimizer as
        equal shares that it sums back."""
        if self.gradient_clipnorm is None:
            return gradients
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        gradients = [tf.convert_to_tensor(g) for g in gradients]
        if replicas > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        gradients, _ = tf.clip_by_global_norm(gradients, self.gradient_clipnorm)
        return [g / replicas for g in gradients] if replicas > 1 else gradients

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary": self.vocabulary.get_config(),
            **self.settings,
        }


def _multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()
    )


def _own_rows(batch):
    """This replica's rows of a whole batch (all of it without a distribution strategy)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    if replicas == 1:
        return batch
    rows = tf.shape(batch)[0] // replicas
    return batch[context.replica_id_in_sync_group * rows :][:rows]


class _Carry:
    """Holds the training-time states outside Keras's tracking, so they are not saved with
    the model (their shape depends on the batch size); checkpoints save them separately."""

    states = ()
    batches_per_pass = 1
    gather = scatter = None  # across replicas, when there are several
