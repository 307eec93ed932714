"""Sequence layers `MRNN`, `MLSTM`, `MGRU`: the cells run over whole sequences.

Each is a `keras.layers.RNN` over its cell (so every `RNN` argument works: `return_sequences`,
`return_state`, `go_backwards`, `stateful`, `unroll`, masks) with these differences in how the
loop runs: the input side of every time step, `W_·x x_t + b` and `W_mx x_t`, is computed in
one matrix product before the recurrence; the weights are prepared (weight-normalized, fused,
arranged by group) once per sequence instead of once per step; where the backend has one
(`keras_mulrnn.backend.fused_sequence`), the recurrence runs as one function with a
hand-written backward pass. The results are those of running the cell step by step.

Two conventions differ from `keras.layers.RNN`: the states are carried in the variable dtype
(float32 under a mixed policy) from the initial state to the returned one, so a state that a
model carries from call to call never passes through bfloat16; and dropout masks are drawn
only when training, so inference never advances the seed generators.
"""

import keras
from keras import ops
from keras import tree

from keras_mulrnn import backend
from keras_mulrnn.backend import fused as fused_plan
from keras_mulrnn.cells import MGRUCell, MLSTMCell, MRNNCell
from keras_mulrnn.keras_private import backend_rnn

# Arguments of `keras.layers.Layer` that belong to the sequence layer, not to its cell.
_LAYER_ARGUMENTS = ("name", "trainable", "input_shape", "batch_input_shape", "batch_size")


class RecurrentLayer(keras.layers.RNN):
    """Base class of the sequence layers; subclasses set `cell_class`.

    Args:
        units: positive int, the size of the hidden state.
        return_sequences, return_state, go_backwards, stateful, unroll, zero_output_for_mask:
            as for `keras.layers.RNN`.
        fused: run the sequence with the backend's hand-written backward pass
            (`keras_mulrnn.backend.fused`: same results, faster training) where it applies;
            False always uses Keras's generic loop.
        **kwargs: the cell's arguments (`rank`, `sharing`, `transition`, `dropout`, ...; see
            the cell's docstring) and the layer's (`name`, `dtype`, `trainable`).
    """

    cell_class = None

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        fused=True,
        **kwargs,
    ):
        layer_kwargs = {key: kwargs.pop(key) for key in _LAYER_ARGUMENTS if key in kwargs}
        cell = self.cell_class(
            units,
            dtype=kwargs.pop("dtype", None),
            trainable=layer_kwargs.get("trainable", True),
            name="cell",
            **kwargs,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            dtype=cell.dtype_policy,
            **layer_kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.fused = fused

    @property
    def units(self):
        return self.cell.units

    def call(self, sequences, initial_state=None, mask=None, training=False):
        # `keras.layers.RNN.call`, but for the two conventions of the module docstring.
        cell = self.cell
        if self.unroll and sequences.shape[1] is None:
            raise ValueError(
                "Cannot unroll an RNN whose time dimension is undefined: give the inputs a "
                "fixed length (e.g. `keras.Input((100, features))`)."
            )
        if initial_state is None:
            initial_state = (self.states if self.stateful
                             else self.get_initial_state(batch_size=ops.shape(sequences)[0]))
        initial_state = [ops.cast(state, cell.variable_dtype)
                         for state in tree.flatten(initial_state)]
        if training:
            self._maybe_config_dropout_masks(cell, sequences[:, 0, :], initial_state)
        last_output, outputs, states = self.inner_loop(
            sequences=sequences, initial_state=initial_state, mask=mask, training=training)
        if training:
            self._maybe_reset_dropout_masks(cell)
        if self.stateful:
            for variable, state in zip(tree.flatten(self.states), states):
                variable.assign(ops.cast(state, variable.dtype))
        output = outputs if self.return_sequences else last_output
        output = ops.cast(output, self.compute_dtype)
        if self.return_state:
            return output, *states
        return output

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        # `RNN.call` has already drawn this sequence's dropout masks; reuse them.
        if training and cell.dropout > 0:
            input_mask = cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * ops.expand_dims(input_mask, 1)
        recurrent_mask = None
        if training and cell.recurrent_dropout > 0:
            recurrent_mask = cell.get_recurrent_dropout_mask(initial_state[0])
        weights = cell.prepared_weights()
        sequence_function = (backend.fused_sequence(cell)
                             if self.fused and fused_plan.supports(cell, mask, self.unroll)
                             else None)
        if sequence_function is not None:
            # Time major from the start: transposing the narrow input costs little, while
            # transposing its projection (and that projection's gradient) would copy the
            # largest tensors of the step.
            projected = cell.project_inputs(ops.transpose(sequences, (1, 0, 2)), weights)
            if self.go_backwards:
                projected = ops.flip(projected, axis=0)
            if recurrent_mask is None:
                recurrent_mask = ops.ones_like(initial_state[0])
            outputs, *states = sequence_function(
                projected, recurrent_mask, *initial_state,
                *fused_plan.recurrent_inputs(cell, weights))
            outputs = ops.transpose(outputs, (1, 0, 2))
            return outputs[:, -1], outputs, list(states)
        projected = cell.project_inputs(sequences, weights)

        def step(projected_t, states):
            return cell.recurrent_step(projected_t, states, weights, recurrent_mask)

        return backend_rnn(
            step,
            projected,
            initial_state,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )

    def get_config(self):
        config = {**super().get_config(), "fused": self.fused}
        cell_config = config.pop("cell")["config"]
        for key in ("name", "dtype", "trainable"):
            cell_config.pop(key, None)
        return {**config, **cell_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class MRNN(RecurrentLayer):
    """Multiplicative RNN layer over sequences; equations and arguments in `MRNNCell`."""

    cell_class = MRNNCell


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class MLSTM(RecurrentLayer):
    """Multiplicative LSTM layer over sequences; equations and arguments in `MLSTMCell`.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((100,)),
        keras.layers.Embedding(205, 64),
        keras_mulrnn.MLSTM(512, sharing="unshared", rank=256, return_sequences=True),
        keras.layers.Dense(205),
    ])
    ```
    """

    cell_class = MLSTMCell


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class MGRU(RecurrentLayer):
    """Multiplicative GRU layer over sequences; equations and arguments in `MGRUCell`."""

    cell_class = MGRUCell
