"""The machinery every recurrent cell of the package shares.

Keras 3 has no `AbstractRNNCell`; `RecurrentCell` is this package's base class. It owns the
weights, their layout, weight normalization, dropout and the two halves of a step:

1. `project_inputs(x, weights)`: everything that reads only the input, `W_·x x + b` for all
   gates and `W_mx x` for all groups, in one matrix product. It works on one step `(B, d)` or
   on a whole sequence `(B, T, d)`, which is how the sequence layers hoist it out of the loop.
2. `recurrent_step(projected, states, weights)`: what depends on the previous state, `W_mh h`
   for all groups in one product, the intermediate states `m`, the transitions `W_gm m` (one
   product for a shared cell; for the others one per group on a CPU, one batched product
   over equal groups on a GPU: `transition_layout`), then the family's
   gate equations (`_update`, the only thing a family defines).

A cell family (mRNN, mLSTM, mGRU) subclasses `RecurrentCell`, names its gates and writes
`_update`. Every family has three transitions, all through the same code, so that a
comparison differs only in the transition: `"multiplicative"` (`W_gm m`), `"additive"` (the
plain cell's `U_g h`) and `"integration"` (Wu et al.'s multiplicative integration, whose
pre-activation `α ⊙ (W x) ⊙ (U h) + β₁ ⊙ (U h) + β₂ ⊙ (W x) + b` is written as an input part
`β₂ ⊙ W x + b` plus a recurrent part `(α ⊙ W x + β₁) ⊙ U h`: its input side is hoisted with
the rest). The Mogrifier (`mogrifier_rounds > 0`, Melis et al.) is an option of every cell:
`x_t` and `h_{t-1}` gate each other before the step reads them, so nothing of the input
side can be hoisted and `project_inputs` passes the input through to `recurrent_step`.
"""

import keras
from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.cells.sharing import resolve_groups, sharing_config
from keras_mulrnn.keras_private import DropoutRNNCell
from keras_mulrnn.validation import check_count, check_positive_int, check_rate

TRANSITIONS = ("multiplicative", "additive", "integration")

# The weight matrices that read the input: they use the kernel initializer, regularizer
# and constraint, the others (reading the state) the recurrent ones. (The Mogrifier's are
# named by `_mogrifier_matrices`.)
_INPUT_SIDE = ("kernel", "factor_input_kernel")
# Multiplicative integration's vectors, `α` and `β₁` (of `U h`) and `β₂` (of `W x`), start at
# 1: the additive block plus the whole second-order term (docs/DESIGN.md says why).
_INTEGRATION_VECTORS = {"alpha": "ones", "beta_recurrent": "ones", "beta_input": "ones"}

# Guards the weight-normalization divisor against an all-zero column.
_NORM_EPSILON = 1e-12


class RecurrentCell(keras.layers.Layer, DropoutRNNCell):
    """Base class of the package's RNN cells; see the module docstring.

    Subclasses set `gate_names` (canonical order) and `state_count`, and implement
    `_update(x, r, states)`, where `x[g]` and `r[g]` are the input part (bias included) and
    the recurrent part of gate `g`'s pre-activation. The constructor arguments are documented
    on the concrete cells.
    """

    gate_names = ()
    state_count = 1

    def __init__(
        self,
        units,
        rank=None,
        sharing="shared",
        transition="multiplicative",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        weight_norm=False,
        mogrifier_rounds=0,
        mogrifier_rank=None,
        seed=None,
        **kwargs,
    ):
        check_positive_int("units", units)
        if transition not in TRANSITIONS:
            raise ValueError(
                f"Invalid value for argument `transition`: received "
                f"transition={transition!r}. Allowed: one of {TRANSITIONS}."
            )
        if transition != "multiplicative" and rank is not None:
            raise ValueError(
                f"Invalid value for argument `rank`: received rank={rank!r} with "
                f"transition={transition!r}. Only a multiplicative cell has a "
                f"factorization; pass rank=None."
            )
        if rank is not None:
            check_positive_int("rank", rank)
        check_count("mogrifier_rounds", mogrifier_rounds)
        if mogrifier_rank is not None:
            check_positive_int("mogrifier_rank", mogrifier_rank)
            if not mogrifier_rounds:
                raise ValueError(
                    f"Invalid value for argument `mogrifier_rank`: received "
                    f"mogrifier_rank={mogrifier_rank!r} with mogrifier_rounds=0. The rank "
                    f"factorizes the Mogrifier's matrices; give mogrifier_rounds > 0 or "
                    f"mogrifier_rank=None."
                )
        check_rate("dropout", dropout)
        check_rate("recurrent_dropout", recurrent_dropout)
        super().__init__(**kwargs)

        self.units = units
        self.transition = transition
        self.multiplicative = transition == "multiplicative"
        self.integration = transition == "integration"
        self.mogrifier_rounds = mogrifier_rounds
        self.mogrifier_rank = mogrifier_rank
        self.rank = (units if rank is None else rank) if self.multiplicative else None
        self.groups = resolve_groups(self.gate_names, sharing) if self.multiplicative else ()
        # Weight columns and pre-activations follow the groups, so that each group's gates
        # are contiguous; for "shared", "unshared" and canonical partitions this is simply
        # the canonical order.
        self.gate_order = (
            tuple(gate for group in self.groups for gate in group)
            if self.multiplicative
            else self.gate_names
        )
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.weight_norm = bool(weight_norm)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)

        self.state_size = units if self.state_count == 1 else [units] * self.state_count
        self.output_size = units

    # ------------------------------------------------------------------ weights

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(_wrap_hint(self, f"input of shape {tuple(input_shape)}"))
        input_dim = input_shape[-1]
        width = len(self.gate_order) * self.units
        self._add_matrix("kernel", (input_dim, width))
        if self.multiplicative:
            factor_width = len(self.groups) * self.rank
            self._add_matrix("factor_input_kernel", (input_dim, factor_width))
            self._add_matrix("factor_recurrent_kernel", (self.units, factor_width))
            self._add_matrix("transition_kernel", (self.rank, width))
        else:
            self._add_matrix("recurrent_kernel", (self.units, width))
        if self.integration:
            for name, initializer in _INTEGRATION_VECTORS.items():
                setattr(self, name, self.add_weight(shape=(width,), name=name,
                                                    initializer=initializer))
        mogrifier = self._mogrifier_matrices(input_dim)
        for name, shape, input_side, initializer in mogrifier:
            self._add_matrix(name, shape, input_side, initializer)
        self._mogrifier_names = [matrix[0] for matrix in mogrifier]
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(width,),
                name="bias",
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def _bias_initializer(self):
        """The bias initializer; families override it (mLSTM's `unit_forget_bias`)."""
        return self.bias_initializer

    def _mogrifier_matrices(self, input_dim):
        """`(name, shape, reads the input, initializer)` of every Mogrifier matrix, in the
        order of its rounds: round `i` odd gates `x` from `h` (`Qⁱ`: `(n, d)`), even gates
        `h` from `x` (`Rⁱ`: `(d, n)`); at `mogrifier_rank` `k`, each is a `left` `(·, k)`
        times a `right` `(k, ·)`.

        Initialized as the paper's released code does: a full matrix with variance
        `1 / fan_in` (truncated normal), each factor with variance `(fan_in · k)^(-1/2)`,
        so that their product has that variance too."""
        matrices = []
        for round_ in range(1, self.mogrifier_rounds + 1):
            odd = round_ % 2 == 1
            name = f"mogrifier_{'q' if odd else 'r'}_{round_}"
            rows, columns = (self.units, input_dim) if odd else (input_dim, self.units)
            if self.mogrifier_rank is None:
                full = keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")
                matrices.append((name, (rows, columns), not odd, full))
                continue
            # Variances `(rows · k)^(-1/2)` each: `scale / fan_in` with the factor's fan-in.
            k = self.mogrifier_rank
            left = keras.initializers.VarianceScaling(
                (rows / k) ** 0.5, "fan_in", "truncated_normal")
            right = keras.initializers.VarianceScaling(
                (k / rows) ** 0.5, "fan_in", "truncated_normal")
            matrices += [(f"{name}_left", (rows, k), not odd, left),
                         (f"{name}_right", (k, columns), not odd, right)]
        return matrices

    def _add_matrix(self, name, shape, input_side=None, initializer=None):
        if input_side is None:
            input_side = name in _INPUT_SIDE
        if initializer is None:
            initializer = self.kernel_initializer if input_side else self.recurrent_initializer
        direction = self.add_weight(
            shape=shape,
            name=name,
            initializer=_independent(initializer, salt=len(self.weights)),
            regularizer=self.kernel_regularizer if input_side else self.recurrent_regularizer,
            constraint=self.kernel_constraint if input_side else self.recurrent_constraint,
        )
        setattr(self, name, direction)
        if self.weight_norm:
            # One gain per output column, started at the column's norm so that weight
            # normalization leaves the initial weights exactly as they were.
            gain = self.add_weight(
                shape=(shape[1],),
                name=f"{name}_gain",
                initializer=lambda shape, dtype=None: _column_norm(direction),
            )
            setattr(self, f"{name}_gain", gain)

    def _matrix(self, name):
        """The effective weight matrix `name`: `g · v / ||v||` with weight normalization."""
        direction = getattr(self, name)
        if not self.weight_norm:
            return direction
        gain = getattr(self, f"{name}_gain")
        return direction * (gain / _column_norm(direction))

    def prepared_weights(self):
        """The weights in the layout the step uses, in the compute dtype.

        Computed once per sequence by the sequence layers (weight normalization, fusing the
        input-side matrices, cutting the transition into its groups' blocks), and once per step when
        the cell runs inside `keras.layers.RNN`.
        """
        dtype = self.compute_dtype
        input_kernel = self._matrix("kernel")
        input_bias = self.bias
        weights = {}
        if self.multiplicative:
            factor_width = len(self.groups) * self.rank
            input_kernel = ops.concatenate(
                [input_kernel, self._matrix("factor_input_kernel")], axis=1
            )
            if input_bias is not None:
                input_bias = ops.concatenate(
                    [input_bias, ops.zeros((factor_width,), dtype=input_bias.dtype)]
                )
            weights["factor_recurrent"] = ops.cast(
                self._matrix("factor_recurrent_kernel"), dtype
            )
            weights["transition"] = self._arrange_transition(
                ops.cast(self._matrix("transition_kernel"), dtype)
            )
        else:
            weights["recurrent"] = ops.cast(self._matrix("recurrent_kernel"), dtype)
        weights["input_kernel"] = ops.cast(input_kernel, dtype)
        weights["input_bias"] = None if input_bias is None else ops.cast(input_bias, dtype)
        if self.integration:
            for name in _INTEGRATION_VECTORS:
                weights[name] = ops.cast(getattr(self, name), dtype)
        if self.mogrifier_rounds:
            # One matrix per round, or its (left, right) pair at a rank.
            matrices = [ops.cast(self._matrix(name), dtype) for name in self._mogrifier_names]
            weights["mogrifier"] = (matrices if self.mogrifier_rank is None
                                    else list(zip(matrices[::2], matrices[1::2])))
        return weights

    def _arrange_transition(self, transition):
        """Arranges `W_gm` (rank, gates·units) as `transition_layout()` says: the matrix
        itself, a `(groups, rank, gates·units / groups)` stack, or a list of one column block
        per group."""
        layout = self.transition_layout()
        if layout == "single":
            return transition
        sizes = self.group_widths()
        if layout == "batched":
            stacked = ops.reshape(transition, (self.rank, len(sizes), sizes[0]))
            return ops.transpose(stacked, (1, 0, 2))
        starts = [sum(sizes[:index]) for index in range(len(sizes))]
        return [transition[:, start : start + size] for start, size in zip(starts, sizes)]

    def transition_layout(self):
        """How the transitions `W_gm m^g` are multiplied: `"single"` (one group: one
        product), `"batched"` (groups of one size, where `backend.recurrence()` batches
        them: one batched product) or `"blocks"` (one product per group)."""
        if len(self.groups) == 1:
            return "single"
        if backend.recurrence().batched_groups and len(set(self.group_widths())) == 1:
            return "batched"
        return "blocks"

    def group_widths(self):
        """The pre-activation columns of each group (its gates × units), in `gate_order`."""
        return [len(group) * self.units for group in self.groups]

    # --------------------------------------------------------------------- step

    def project_inputs(self, inputs, weights):
        """For one step `(B, d)` or a whole sequence `(B, T, d)`: `[W_·x x + b | W_mx x]`
        (multiplicative), `W_·x x + b` (additive), `[β₂ ⊙ W_·x x + b | α ⊙ W_·x x + β₁]`
        (integration); with the Mogrifier, the input itself (its gating by `h_{t-1}` comes
        first: `recurrent_step` projects it)."""
        inputs = ops.cast(inputs, self.compute_dtype)
        if self.mogrifier_rounds:
            return inputs
        return self._project(inputs, weights)

    def _project(self, inputs, weights):
        projected = ops.matmul(inputs, weights["input_kernel"])
        bias = weights["input_bias"]
        if self.integration:
            # The input part of every pre-activation, and the coefficient of its `U h`.
            gates = projected * weights["beta_input"]
            return ops.concatenate([gates if bias is None else gates + bias,
                                    projected * weights["alpha"] + weights["beta_recurrent"]],
                                   axis=-1)
        return projected if bias is None else projected + bias

    def recurrent_step(self, projected, states, weights, recurrent_mask=None):
        """One step from the projected input and the previous states.

        The states keep their own dtype (float32 inside the package's sequence layers under
        a mixed policy); the products run in the compute dtype. The Mogrifier's rounds
        change the `x_t` and `h_{t-1}` that the products read, not the states that the gate
        equations carry (mLSTM's `c`, mGRU's `z ⊙ h_{t-1}`).
        """
        states = list(states)
        h_in = states[0] if recurrent_mask is None else states[0] * recurrent_mask
        if self.mogrifier_rounds:
            x, h_in = self.mogrify(projected, ops.cast(h_in, self.compute_dtype),
                                   weights["mogrifier"])
            projected = self._project(x, weights)
        width = len(self.gate_order) * self.units
        r, _, _ = self.recurrent_products(h_in, projected[..., width:], weights)
        return self.gate_update(projected[..., :width], r, states)

    def mogrify(self, x, h, matrices):
        """The Mogrifier's rounds: `x ← 2σ(h Qⁱ) ⊙ x` on odd rounds, `h ← 2σ(x Rⁱ) ⊙ h` on
        even ones (`matrices`: each round's matrix, or its `(left, right)` factors)."""
        for round_, matrix in enumerate(matrices, 1):
            source = h if round_ % 2 == 1 else x
            if isinstance(matrix, tuple):
                gate = ops.matmul(ops.matmul(source, matrix[0]), matrix[1])
            else:
                gate = ops.matmul(source, matrix)
            gate = 2.0 * ops.sigmoid(gate)
            if round_ % 2 == 1:
                x = gate * x
            else:
                h = gate * h
        return x, h

    def recurrent_products(self, h_in, factor_input, weights):
        """The products that read the previous state: `r` (B, gates·units) — `W_gm m^g`
        (multiplicative), `U_g h` (additive) or `(α ⊙ W x + β₁) ⊙ U h` (integration) for
        every gate — `m` (multiplicative; None otherwise) and the product of `h` that the
        input side multiplies, `W_mh h` or `U h` (None when additive). `factor_input` is
        the projected `W_mx x` of all groups, or integration's `α ⊙ W x + β₁`."""
        h_in = ops.cast(h_in, self.compute_dtype)
        if self.integration:
            uh = ops.matmul(h_in, weights["recurrent"])
            return factor_input * uh, None, uh
        if not self.multiplicative:
            return ops.matmul(h_in, weights["recurrent"]), None, None
        mh = ops.matmul(h_in, weights["factor_recurrent"])
        m = factor_input * mh
        return self._transition(m, weights["transition"]), m, mh

    def gate_update(self, x_gates, r, states):
        """The family's gate equations from the input part `x_gates` and recurrent part `r`
        of every pre-activation, computed in the states' dtype."""
        dtype = states[0].dtype
        return self._update(
            self._by_gate(ops.cast(x_gates, dtype)), self._by_gate(ops.cast(r, dtype)), states
        )

    def _transition(self, m, transition):
        """`W_gm m^G` for every gate, from all groups' intermediate states `m` (B, G·k)."""
        return grouped_product(m, transition)

    def _by_gate(self, tensor):
        return dict(zip(self.gate_order, ops.split(tensor, len(self.gate_order), axis=-1)))

    def _update(self, x, r, states):
        raise NotImplementedError

    def call(self, inputs, states=None, training=False):
        if states is None or len(inputs.shape) != 2:
            raise ValueError(_wrap_hint(self, f"input of shape {tuple(inputs.shape)}"))
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        if training and self.dropout > 0:
            inputs = inputs * self.get_dropout_mask(inputs)
        recurrent_mask = None
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self.get_recurrent_dropout_mask(states[0])
        weights = self.prepared_weights()
        return self.recurrent_step(
            self.project_inputs(inputs, weights), states, weights, recurrent_mask
        )

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.units), dtype=self.variable_dtype)
            for _ in range(self.state_count)
        ]

    # ------------------------------------------------------------ serialization

    def get_config(self):
        config = {
            "units": self.units,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "weight_norm": self.weight_norm,
            "seed": self.seed,
            "transition": self.transition,
            "rank": self.rank,
            "mogrifier_rounds": self.mogrifier_rounds,
            "mogrifier_rank": self.mogrifier_rank,
        }
        if len(self.gate_names) > 1:
            config["sharing"] = (
                sharing_config(self.groups, self.gate_names) if self.multiplicative else "shared"
            )
        return {**super().get_config(), **config}


def grouped_product(x, weights):
    """`x` (B, Σ aᵢ) times the block-diagonal matrix of `weights`, as `_arrange_transition`
    lays them out: one matrix (a, c); a stack (G, a, c), batched over `x`'s G equal parts; or
    a list of blocks (aᵢ, cᵢ), one product per part. (Also the backward product, with every
    block transposed.)"""
    if isinstance(weights, (list, tuple)):
        bounds = [0]
        for block in weights[:-1]:
            bounds.append(bounds[-1] + block.shape[0])
        parts = ops.split(x, bounds[1:], axis=-1) if len(weights) > 1 else [x]
        return ops.concatenate(
            [ops.matmul(part, block) for part, block in zip(parts, weights)], axis=-1
        )
    if len(weights.shape) == 3:
        groups, inner, width = weights.shape
        parts = ops.reshape(x, (-1, groups, inner))
        return ops.reshape(ops.einsum("bga,gac->bgc", parts, weights), (-1, groups * width))
    return ops.matmul(x, weights)


def _independent(initializer, salt):
    """`initializer` for one more weight, drawing values of its own.

    One Keras random initializer draws the same stream from its seed at every call, so the
    same instance used for two matrices (the kernel initializer for `W_·x` and `W_mx`, the
    recurrent one for `W_mh` and `W_gm`) would start the second as a reshaped prefix of the
    first. An unseeded initializer is copied with a seed of its own (drawn from Keras's
    global seed: `keras.utils.set_random_seed` still reproduces it); a seeded one is copied
    with its seed plus `salt`, the weight's position in the cell."""
    get_config = getattr(initializer, "get_config", None)
    config = get_config() if get_config is not None else {}
    if "seed" not in config or isinstance(config["seed"], dict):
        return initializer  # nothing random, or a seed generator (it advances per call)
    if config["seed"] is not None:
        config["seed"] += salt
    return initializer.__class__.from_config(config)


def _column_norm(matrix):
    return ops.sqrt(ops.sum(ops.square(matrix), axis=0) + _NORM_EPSILON)


def _wrap_hint(cell, received):
    name = type(cell).__name__
    layer = name[: -len("Cell")] if name.endswith("Cell") else name
    return (
        f"{name} is a recurrent *cell*: it processes one time step `(batch, features)` "
        f"together with its states, but it received {received} without states. To process "
        f"sequences `(batch, time, features)`, wrap it as `keras.layers.RNN({name}(...))` "
        f"or use the sequence layer `keras_mulrnn.{layer}(...)`."
    )
