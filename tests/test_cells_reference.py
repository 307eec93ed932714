"""The cells and sequence layers equal an independent NumPy implementation of docs/DESIGN.md."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mulrnn as km
from reference import raw_weights, reference_weights, run, step

D, N = 4, 6
SHARINGS = {
    "rnn": ["shared"],
    "lstm": ["shared", "unshared", (("i", "f", "o"), ("u",)), (("i", "o"), ("f", "u"))],
    "gru": ["shared", "unshared", (("z", "r"), ("h",))],
}
NO_MOGRIFIER = {}
CASES = [
    (family, sharing, rank, use_bias, NO_MOGRIFIER)
    for family, sharings in SHARINGS.items()
    for sharing in sharings
    for rank in (3, N, 9)  # k < n, k = n, k > n
    for use_bias in (True, False)
] + [(family, transition, None, use_bias, NO_MOGRIFIER) for family in SHARINGS
     for transition in ("additive", "integration") for use_bias in (True, False)]
# The Mogrifier over every family and transition: rounds odd and even, full and low rank
# (its rank below and above the sizes it maps between).
MOGRIFIER_CASES = [
    (family, sharing, rank, True, dict(mogrifier_rounds=rounds, mogrifier_rank=mogrifier_rank))
    for family, sharing, rank, rounds, mogrifier_rank in [
        ("lstm", "additive", None, 5, None),  # the Mogrifier LSTM as published
        ("lstm", "additive", None, 4, 2),
        ("lstm", "shared", 3, 3, None),
        ("lstm", "unshared", 9, 2, 8),
        ("lstm", "integration", None, 6, None),
        ("gru", "additive", None, 3, None),
        ("gru", "shared", 3, 4, 2),
        ("gru", "integration", None, 2, 2),
        ("rnn", "shared", N, 1, None),
        ("rnn", "integration", None, 3, 2),
    ]
]


def _id(case):
    family, sharing, rank, use_bias, options = case
    sharing = sharing if isinstance(sharing, str) else "+".join("".join(g) for g in sharing)
    mogrifier = (f"-mogrifier{options['mogrifier_rounds']}k{options['mogrifier_rank']}"
                 if options else "")
    return f"{family}-{sharing}-k{rank}-{'bias' if use_bias else 'nobias'}{mogrifier}"


def randomized(obj, seed, scale=0.5):
    """Gives every weight of a built layer or cell random values (biases included)."""
    rng = np.random.default_rng(seed)
    obj.set_weights([scale * rng.standard_normal(w.shape) for w in obj.get_weights()])
    return obj


def variant(name, rank=5):
    """`(parametrization, rank, options)` of a test case's name: a parametrization, with
    "/mogrifierR" or "/mogrifierRkK" for the Mogrifier's rounds and rank (e.g.
    "additive/mogrifier5", "shared/mogrifier4k2"); `rank` for a multiplicative cell."""
    if not isinstance(name, str) or "/" not in name:
        parametrization, options = name, {}
    else:
        parametrization, mogrifier = name.split("/mogrifier")
        rounds, _, mogrifier_rank = mogrifier.partition("k")
        options = dict(mogrifier_rounds=int(rounds),
                       mogrifier_rank=int(mogrifier_rank) if mogrifier_rank else None)
    unfactored = parametrization in ("additive", "integration")
    return parametrization, None if unfactored else rank, options


def built_cell(family, sharing, rank, seed=0, input_dim=D, **kwargs):
    cell = km.make_cell(family, sharing, units=N, rank=rank, **kwargs)
    cell.build((None, input_dim))
    return randomized(cell, seed)


def initial_states(family, batch, rng):
    count = 2 if family == "lstm" else 1
    return [0.5 * rng.standard_normal((batch, N)) for _ in range(count)]


@pytest.mark.parametrize("case", CASES + MOGRIFIER_CASES, ids=_id)
def test_cell_step_matches_reference(case):
    family, sharing, rank, use_bias, options = case
    cell = built_cell(family, sharing, rank, use_bias=use_bias, **options)
    p = reference_weights(cell)
    rng = np.random.default_rng(1)
    states = initial_states(family, 3, rng)
    for _ in range(5):
        x = rng.standard_normal((3, D))
        want_h, want_states = step(family, p, x, states)
        got_h, got_states = cell(x.astype("float32"), [s.astype("float32") for s in states])
        np.testing.assert_allclose(got_h, want_h, atol=1e-5, rtol=0)
        for got, want in zip(got_states, want_states):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        states = want_states


@pytest.mark.parametrize("case", CASES + MOGRIFIER_CASES, ids=_id)
def test_sequences_match_reference(case):
    family, sharing, rank, use_bias, options = case
    cell = built_cell(family, sharing, rank, use_bias=use_bias, **options)
    p = reference_weights(cell)
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((3, 50, D))
    states = initial_states(family, 3, rng)
    want, want_states = run(family, p, xs, states)

    layer = km.make_layer(family, sharing, units=N, rank=rank, use_bias=use_bias,
                          return_sequences=True, return_state=True, **options)
    layer.build((None, 50, D))
    layer.set_weights(cell.get_weights())
    wrapped = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    f32 = [s.astype("float32") for s in states]
    for model in (layer, wrapped):
        got, *got_states = model(xs.astype("float32"), initial_state=f32)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        for g, w in zip(got_states, want_states):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", list(SHARINGS))
@pytest.mark.parametrize("sharing,options,gains", [
    ("shared", {}, 4), ("unshared", {}, 4), ("additive", {}, 2), ("integration", {}, 2),
    ("shared", dict(mogrifier_rounds=3), 4 + 3), ("additive", dict(mogrifier_rounds=2), 2 + 2),
    ("integration", dict(mogrifier_rounds=3, mogrifier_rank=2), 2 + 6),
], ids=["shared", "unshared", "additive", "integration", "shared-mogrifier3",
        "additive-mogrifier2", "integration-mogrifier3k2"])
def test_weight_norm_matches_reference(family, sharing, options, gains):
    """One gain per matrix (`α, β` are vectors: none), the Mogrifier's matrices and factors
    included."""
    rank = None if sharing in ("additive", "integration") else 5
    cell = built_cell(family, sharing, rank, weight_norm=True, **options)
    names = [v.path.split("/")[-1] for v in cell.weights]
    assert sum(name.endswith("_gain") for name in names) == gains
    p = reference_weights(cell)
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((2, 20, D))
    states = initial_states(family, 2, rng)
    want, _ = run(family, p, xs, states)
    got = keras.layers.RNN(cell, return_sequences=True)(
        xs.astype("float32"), initial_state=[s.astype("float32") for s in states])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_weight_norm_starts_at_the_unnormalized_weights():
    keras.utils.set_random_seed(7)
    plain = km.MLSTMCell(N, rank=5)
    plain.build((None, D))
    keras.utils.set_random_seed(7)
    normed = km.MLSTMCell(N, rank=5, weight_norm=True)
    normed.build((None, D))
    x = np.ones((2, D), "float32")
    states = [np.full((2, N), 0.3, "float32")] * 2
    np.testing.assert_allclose(normed(x, states)[0], plain(x, states)[0], atol=1e-6)


@pytest.mark.parametrize("family,sharing,options", [
    ("rnn", "shared", {}), ("lstm", "shared", {}), ("lstm", "unshared", {}),
    ("lstm", (("i", "f", "o"), ("u",)), {}), ("gru", "unshared", {}), ("gru", "additive", {}),
    ("lstm", "additive", {}), ("lstm", "integration", {}), ("gru", "integration", {}),
    ("rnn", "integration", {}), ("lstm", "additive", dict(mogrifier_rounds=3)),
    ("gru", "shared", dict(mogrifier_rounds=2, mogrifier_rank=2)),
    ("lstm", "integration", dict(mogrifier_rounds=4, mogrifier_rank=2)),
])
def test_gradients_match_finite_differences(family, sharing, options):
    """Backprop through 5 steps (float64) against central differences of the reference
    (through the fused backward pass where it applies: integration's included)."""
    d, n, k, batch, steps = 3, 4, 3, 2, 5
    rank = None if sharing in ("additive", "integration") else k
    layer = km.make_layer(family, sharing, units=n, rank=rank, dtype="float64",
                          return_sequences=True, **options)
    layer.build((None, steps, d))
    randomized(layer, seed=4)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((batch, steps, d))
    probe = rng.standard_normal((batch, steps, n))
    cell = layer.cell

    xs_var = tf.Variable(xs)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(xs_var) * probe)
    grads = tape.gradient(loss, cell.trainable_variables + [xs_var])

    zeros = [np.zeros((batch, n))] * (2 if family == "lstm" else 1)

    def reference_loss(raw, inputs):
        out, _ = run(family, reference_weights(cell, raw), inputs, zeros)
        return np.sum(out * probe)

    raw = raw_weights(cell)
    eps = 1e-6
    for variable, grad in zip(cell.trainable_variables, grads):
        name = variable.path.split("/")[-1]
        numeric = np.zeros(variable.shape)
        for index in np.ndindex(*variable.shape):
            for sign in (1, -1):
                shifted = {key: value.copy() for key, value in raw.items()}
                shifted[name][index] += sign * eps
                numeric[index] += sign * reference_loss(shifted, xs) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    numeric = np.zeros(xs.shape)
    for index in np.ndindex(*xs.shape):
        for sign in (1, -1):
            shifted = xs.copy()
            shifted[index] += sign * eps
            numeric[index] += sign * reference_loss(raw, shifted) / (2 * eps)
    np.testing.assert_allclose(grads[-1].numpy(), numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family,sharing", [
    ("lstm", "unshared"), ("lstm", (("i", "f", "o"), ("u",))), ("lstm", (("i", "o"), ("f", "u"))),
    ("gru", "unshared"), ("gru", (("z", "r"), ("h",))),
])
def test_unshared_with_identical_factors_is_the_shared_cell(family, sharing):
    k = 5
    shared = built_cell(family, "shared", k)
    unshared = km.make_cell(family, sharing, units=N, rank=k)
    unshared.build((None, D))
    groups = len(unshared.groups)
    # Same gate weights (re-ordered to the unshared cell's gate order), every group's factors
    # equal to the shared cell's single factorization.
    values = dict(zip([v.path.split("/")[-1] for v in shared.weights], shared.get_weights()))

    def reorder(matrix):
        parts = dict(zip(shared.gate_order, np.split(matrix, len(shared.gate_order), axis=-1)))
        return np.concatenate([parts[g] for g in unshared.gate_order], axis=-1)

    new = {
        "kernel": reorder(values["kernel"]),
        "bias": reorder(values["bias"]),
        "transition_kernel": reorder(values["transition_kernel"]),
        "factor_input_kernel": np.tile(values["factor_input_kernel"], (1, groups)),
        "factor_recurrent_kernel": np.tile(values["factor_recurrent_kernel"], (1, groups)),
    }
    unshared.set_weights([new[v.path.split("/")[-1]] for v in unshared.weights])
    xs = np.random.default_rng(6).standard_normal((3, 30, D)).astype("float32")
    want = keras.layers.RNN(shared, return_sequences=True)(xs)
    got = keras.layers.RNN(unshared, return_sequences=True)(xs)
    # Equal up to float32 rounding: the products are summed in a different order.
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", list(SHARINGS))
def test_integration_with_alpha_zero_and_betas_one_is_the_additive_cell(family):
    """Wu et al.: `α = 0, β₁ = β₂ = 1` gives back the additive block `Wx + Uh + b`."""
    additive = built_cell(family, "additive", None)
    integration = km.make_cell(family, "integration", units=N)
    integration.build((None, D))
    values = dict(zip([v.path.split("/")[-1] for v in additive.weights],
                      additive.get_weights()))
    width = len(integration.gate_order) * N
    values.update(alpha=np.zeros(width), beta_recurrent=np.ones(width),
                  beta_input=np.ones(width))
    integration.set_weights([values[v.path.split("/")[-1]] for v in integration.weights])
    xs = np.random.default_rng(7).standard_normal((3, 20, D)).astype("float32")
    np.testing.assert_allclose(keras.layers.RNN(integration, return_sequences=True)(xs),
                               keras.layers.RNN(additive, return_sequences=True)(xs),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("family,sharing,rank", [("lstm", "additive", None),
                                                 ("gru", "shared", 3),
                                                 ("rnn", "integration", None)])
def test_a_mogrifier_whose_matrices_are_zero_is_the_cell_without_it(family, sharing, rank):
    """Every round's gate is then `2σ(0) = 1`: `x` and `h` pass unchanged."""
    plain = built_cell(family, sharing, rank)
    mogrified = km.make_cell(family, sharing, units=N, rank=rank, mogrifier_rounds=4,
                             mogrifier_rank=2)
    mogrified.build((None, D))
    values = dict(zip([v.path.split("/")[-1] for v in plain.weights], plain.get_weights()))
    mogrified.set_weights([values.get(v.path.split("/")[-1], np.zeros(v.shape))
                           for v in mogrified.weights])
    xs = np.random.default_rng(8).standard_normal((3, 20, D)).astype("float32")
    np.testing.assert_allclose(keras.layers.RNN(mogrified, return_sequences=True)(xs),
                               keras.layers.RNN(plain, return_sequences=True)(xs),
                               atol=1e-6, rtol=0)
    assert len(mogrified.weights) == len(plain.weights) + 8  # 4 rounds, 2 factors each


def test_every_matrix_starts_from_values_of_its_own():
    """One initializer serves several matrices (the kernel initializer `W_·x` and `W_mx`, the
    recurrent one `W_mh` and `W_gm`, the Mogrifier's two factors): each draws its own
    values (Keras's initializer, called twice, would repeat its stream), reproducibly under
    Keras's global seed; at a Mogrifier rank the factors' product has variance
    `1 / fan_in`, as a full Mogrifier matrix has."""
    def built(seed, **kwargs):
        keras.utils.set_random_seed(seed)
        cell = km.MLSTMCell(64, rank=64, mogrifier_rounds=2, mogrifier_rank=16, **kwargs)
        cell.build((None, 64))
        return {v.path.split("/")[-1]: np.asarray(v.numpy(), np.float64) for v in cell.weights}

    weights = built(1)
    pairs = [("kernel", "factor_input_kernel"), ("factor_recurrent_kernel", "transition_kernel"),
             ("mogrifier_q_1_left", "mogrifier_q_1_right"),
             ("mogrifier_q_1_left", "mogrifier_r_2_left")]
    for a, b in pairs:
        size = min(weights[a].size, weights[b].size)
        correlation = np.corrcoef(weights[a].ravel()[:size], weights[b].ravel()[:size])[0, 1]
        assert abs(correlation) < 0.1, (a, b, correlation)  # |r| ~ 1/√size ≈ 0.03 if apart
    again = built(1)
    assert all(np.array_equal(weights[name], again[name]) for name in weights)
    seeded = built(1, kernel_initializer=keras.initializers.GlorotUniform(seed=5))
    assert np.array_equal(seeded["kernel"], built(2, kernel_initializer=(
        keras.initializers.GlorotUniform(seed=5)))["kernel"])  # a user's seed still fixes it
    products = [weights[f"mogrifier_{n}_left"] @ weights[f"mogrifier_{n}_right"]
                for n in ("q_1", "r_2")]
    for product in products:  # variance 1/64 each (64 × 64 entries: a few percent off)
        assert product.var() * 64 == pytest.approx(1.0, rel=0.1)
