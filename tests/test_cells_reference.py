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
CASES = [
    (family, sharing, rank, use_bias)
    for family, sharings in SHARINGS.items()
    for sharing in sharings
    for rank in (3, N, 9)  # k < n, k = n, k > n
    for use_bias in (True, False)
] + [(family, "additive", None, use_bias) for family in SHARINGS for use_bias in (True, False)]


def _id(case):
    family, sharing, rank, use_bias = case
    sharing = sharing if isinstance(sharing, str) else "+".join("".join(g) for g in sharing)
    return f"{family}-{sharing}-k{rank}-{'bias' if use_bias else 'nobias'}"


def randomized(obj, seed, scale=0.5):
    """Gives every weight of a built layer or cell random values (biases included)."""
    rng = np.random.default_rng(seed)
    obj.set_weights([scale * rng.standard_normal(w.shape) for w in obj.get_weights()])
    return obj


def built_cell(family, sharing, rank, seed=0, input_dim=D, **kwargs):
    cell = km.make_cell(family, sharing, units=N, rank=rank, **kwargs)
    cell.build((None, input_dim))
    return randomized(cell, seed)


def initial_states(family, batch, rng):
    count = 2 if family == "lstm" else 1
    return [0.5 * rng.standard_normal((batch, N)) for _ in range(count)]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_cell_step_matches_reference(case):
    family, sharing, rank, use_bias = case
    cell = built_cell(family, sharing, rank, use_bias=use_bias)
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


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_sequences_match_reference(case):
    family, sharing, rank, use_bias = case
    cell = built_cell(family, sharing, rank, use_bias=use_bias)
    p = reference_weights(cell)
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((3, 50, D))
    states = initial_states(family, 3, rng)
    want, want_states = run(family, p, xs, states)

    layer = km.make_layer(family, sharing, units=N, rank=rank, use_bias=use_bias,
                          return_sequences=True, return_state=True)
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
@pytest.mark.parametrize("sharing", ["shared", "unshared", "additive"])
def test_weight_norm_matches_reference(family, sharing):
    cell = built_cell(family, sharing, None if sharing == "additive" else 5, weight_norm=True)
    names = [v.path.split("/")[-1] for v in cell.weights]
    assert sum(name.endswith("_gain") for name in names) == (4 if sharing != "additive" else 2)
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


@pytest.mark.parametrize("family,sharing", [
    ("rnn", "shared"), ("lstm", "shared"), ("lstm", "unshared"),
    ("lstm", (("i", "f", "o"), ("u",))), ("gru", "unshared"), ("gru", "additive"),
    ("lstm", "additive"),
])
def test_gradients_match_finite_differences(family, sharing):
    """Backprop through 5 steps (float64) against central differences of the reference."""
    d, n, k, batch, steps = 3, 4, 3, 2, 5
    rank = None if sharing == "additive" else k
    layer = km.make_layer(family, sharing, units=n, rank=rank, dtype="float64",
                          return_sequences=True)
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
