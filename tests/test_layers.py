"""Sequence-layer behaviour: masks, state, wrappers, saving, dropout, mixed precision."""

import keras
import numpy as np
import pytest

import keras_mulrnn as km
from reference import reference_weights, run
from test_cells_reference import D, N, randomized, variant

FAMILY_CASES = [
    ("rnn", "shared"), ("lstm", "shared"), ("lstm", "unshared"), ("gru", "shared"),
    ("gru", "unshared"), ("lstm", "additive"), ("gru", "additive"), ("rnn", "additive"),
    ("lstm", "integration"), ("gru", "integration"), ("lstm", "additive/mogrifier5"),
    ("gru", "shared/mogrifier4k2"), ("rnn", "integration/mogrifier3"),
]


def make(family, sharing, **kwargs):
    parametrization, rank, options = variant(sharing)
    return km.make_layer(family, parametrization, units=N, rank=rank, **options, **kwargs)


def inputs(batch=3, steps=12, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, steps, D)).astype("float32")


@pytest.mark.parametrize("family,sharing", FAMILY_CASES)
def test_masked_steps_carry_state_unchanged(family, sharing):
    xs = inputs()
    mask = np.ones(xs.shape[:2], bool)
    mask[0, 4:7] = False  # a gap in the middle of row 0
    mask[1, 9:] = False  # a padded tail in row 1
    layer = randomized(_built(make(family, sharing, return_sequences=True, return_state=True)), 1)
    out, *states = layer(xs, mask=mask)
    out = np.asarray(out)
    # Keras convention: a masked step repeats the previous output; the state is held.
    np.testing.assert_array_equal(out[0, 4], out[0, 3])
    np.testing.assert_array_equal(out[0, 6], out[0, 3])
    np.testing.assert_array_equal(out[1, 11], out[1, 8])
    # Row 0 equals the reference run over its unmasked steps only.
    kept = xs[:1, mask[0]]
    zeros = [np.zeros((1, N))] * (2 if family == "lstm" else 1)
    want, _ = run(family, reference_weights(layer.cell), kept, zeros)
    np.testing.assert_allclose(out[0, -1], want[0, -1], atol=1e-5)
    want_row1, want_states = run(family, reference_weights(layer.cell), xs[1:2, :9], zeros)
    np.testing.assert_allclose(states[0][1], want_states[0][0], atol=1e-5)


def _built(layer, steps=12):
    layer.build((None, steps, D))
    return layer


@pytest.mark.parametrize("family,sharing", FAMILY_CASES)
def test_stateful_two_halves_equal_one_pass(family, sharing):
    xs = inputs(batch=2, steps=16)
    whole = randomized(_built(make(family, sharing, return_sequences=True), 16), 2)
    stateful = make(family, sharing, return_sequences=True, stateful=True)
    stateful.build((2, 8, D))
    stateful.set_weights(whole.get_weights())
    want = whole(xs)
    first, second = stateful(xs[:, :8]), stateful(xs[:, 8:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), want, atol=1e-6)
    stateful.reset_state()
    np.testing.assert_allclose(stateful(xs[:, :8]), first, atol=1e-6)


@pytest.mark.parametrize("family,sharing", FAMILY_CASES)
def test_sequence_layer_equals_rnn_of_cell(family, sharing):
    layer = randomized(_built(make(family, sharing, return_sequences=True)), 3)
    parametrization, rank, options = variant(sharing)
    cell = km.make_cell(family, parametrization, units=N, rank=rank, **options)
    wrapped = keras.layers.RNN(cell, return_sequences=True)
    wrapped.build((None, 12, D))
    wrapped.set_weights(layer.get_weights())
    for go_backwards in (False, True):
        layer.go_backwards = wrapped.go_backwards = go_backwards
        np.testing.assert_allclose(layer(inputs()), wrapped(inputs()), atol=1e-6)


def test_unroll_equals_loop():
    looped = randomized(_built(make("lstm", "unshared", return_sequences=True)), 4)
    unrolled = _built(make("lstm", "unshared", return_sequences=True, unroll=True))
    unrolled.set_weights(looped.get_weights())
    np.testing.assert_allclose(unrolled(inputs()), looped(inputs()), atol=1e-6)


def test_bidirectional_and_stacked_cells_train():
    model = keras.Sequential([
        keras.Input((12, D)),
        keras.layers.Bidirectional(km.MLSTM(N, rank=4, return_sequences=True)),
        keras.layers.RNN(keras.layers.StackedRNNCells(
            [km.MGRUCell(N, sharing="unshared"), km.MRNNCell(N, rank=3)])),
        keras.layers.Dense(1),
    ])
    assert model.output_shape == (None, 1)
    model.compile("adam", "mse")
    history = model.fit(inputs(batch=8), np.ones((8, 1)), epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


ALL_OBJECTS = [
    ("cell", "rnn", "shared"), ("cell", "lstm", "shared"), ("cell", "lstm", "unshared"),
    ("cell", "lstm", (("i", "o"), ("f", "u"))), ("cell", "gru", "unshared"),
    ("cell", "gru", "additive"),
    ("layer", "rnn", "shared"), ("layer", "lstm", "shared"), ("layer", "lstm", "unshared"),
    ("layer", "lstm", (("i", "f", "o"), ("u",))), ("layer", "gru", "shared"),
    ("layer", "lstm", "additive"), ("layer", "rnn", "additive"),
    ("cell", "lstm", "integration"), ("cell", "gru", "additive/mogrifier3"),
    ("layer", "gru", "integration"), ("layer", "lstm", "shared/mogrifier4k2"),
]


@pytest.mark.parametrize("kind,family,sharing", ALL_OBJECTS)
def test_keras_file_round_trip(tmp_path, kind, family, sharing):
    sharing, rank, options = variant(sharing, rank=4)
    options.update(weight_norm=True, dropout=0.1, recurrent_dropout=0.2, seed=3)
    if kind == "cell":
        rnn = keras.layers.RNN(km.make_cell(family, sharing, units=N, rank=rank, **options),
                               return_sequences=True)
    else:
        rnn = km.make_layer(family, sharing, units=N, rank=rank, return_sequences=True, **options)
    model = keras.Sequential([keras.Input((12, D)), rnn, keras.layers.Dense(2)])
    randomized(model, 5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(inputs(), verbose=0),
                                  model.predict(inputs(), verbose=0))
    cell = loaded.layers[0].cell
    assert type(cell) is type(rnn.cell)
    assert cell.get_config() == rnn.cell.get_config()


def _recording(cell_class):
    """A cell class that records the recurrent mask and projected input of every step."""

    class Recording(cell_class):
        seen = []

        def recurrent_step(self, projected, states, weights, recurrent_mask=None):
            Recording.seen.append(np.asarray(recurrent_mask))
            return super().recurrent_step(projected, states, weights, recurrent_mask)

    return Recording


def test_variational_dropout_one_mask_per_sequence():
    cell_class = _recording(km.MLSTMCell)
    layer = keras.layers.RNN(cell_class(N, rank=4, dropout=0.5, recurrent_dropout=0.5,
                                        seed=1), return_sequences=True)
    xs = np.repeat(inputs(batch=1, steps=6), 4, axis=0)  # 4 identical sequences
    layer(xs, training=True)
    first = cell_class.seen[:]
    cell_class.seen.clear()
    assert len(first) >= 6  # the TF loop also calls the step once to learn its shapes
    for mask in first[1:]:
        np.testing.assert_array_equal(mask, first[0])  # same mask at every step
    assert len({row.tobytes() for row in first[0]}) == 4  # a different mask per sequence
    assert set(np.unique(first[0])) <= {0.0, 2.0}  # inverted dropout, rate 0.5
    out_train = np.asarray(layer(xs, training=True))
    assert not np.array_equal(cell_class.seen[0], first[0])  # a new mask for a new batch
    # Rows with identical inputs differ only because of their masks.
    assert not np.allclose(out_train[0], out_train[1])
    # No effect at inference: equal to the same weights without dropout.
    out_infer = layer(xs, training=False)
    plain = km.MLSTM(N, rank=4, return_sequences=True)
    plain.build(xs.shape)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(out_infer, plain(xs), atol=1e-6)


@pytest.mark.parametrize("sharing", ["unshared", (("z", "r"), ("h",))])  # fused loop, plain
def test_dropout_masks_match_between_layer_and_wrapped_cell(sharing):
    """The sequence layer applies the masks exactly as the step-by-step cell does (one mask
    per sequence, shown above), and they vanish at inference."""
    layer = km.MGRU(N, rank=4, sharing=sharing, dropout=0.3, recurrent_dropout=0.3, seed=9,
                    return_sequences=True)
    wrapped = keras.layers.RNN(
        km.MGRUCell(N, rank=4, sharing=sharing, dropout=0.3, recurrent_dropout=0.3, seed=9),
        return_sequences=True)
    layer.build((None, 12, D))
    wrapped.build((None, 12, D))
    randomized(layer, 6)
    wrapped.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(inputs(), training=True), wrapped(inputs(), training=True),
                               atol=1e-6)
    same_rows = np.repeat(inputs(batch=1), 3, axis=0)
    trained = np.asarray(layer(same_rows, training=True))
    assert not np.allclose(trained[0], trained[1])  # a different mask per sequence
    np.testing.assert_allclose(layer(same_rows, training=False), wrapped(same_rows), atol=1e-6)


def test_mixed_bfloat16_trains_with_float32_loss():
    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((20,), dtype="int32"),
        keras.layers.Embedding(11, 8),
        km.MLSTM(16, rank=8, sharing="unshared", return_sequences=True),
        km.MGRU(16, return_sequences=True),
        keras.layers.Dense(11, dtype="float32"),  # logits and loss in float32
    ])
    layer = model.layers[1]
    assert layer.compute_dtype == "bfloat16" and layer.cell.kernel.dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    data = rng.integers(0, 11, (16, 21))
    losses = model.fit(data[:, :-1], data[:, 1:], epochs=5, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    # The bfloat16 model stays close to the same weights in float32.
    keras.config.set_dtype_policy("float32")
    exact = keras.models.clone_model(model)
    exact.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(data[:4, :-1], verbose=0),
                               exact.predict(data[:4, :-1], verbose=0), atol=0.1)


@pytest.mark.parametrize("cell_class", [km.MRNNCell, km.MLSTMCell, km.MGRUCell])
def test_cell_used_as_sequence_layer_says_how_to_wrap_it(cell_class):
    with pytest.raises(ValueError, match=r"keras\.layers\.RNN\(") as error:
        keras.Sequential([keras.Input((10, D)), cell_class(8)])
    assert "sequence layer" in str(error.value)


def fused_and_plain(family, sharing, **options):
    """The same built layer twice, with equal random weights: through the fused loop and
    through Keras's generic loop."""
    sharing, rank, variant_options = variant(sharing)
    options.update(variant_options)
    fused = km.make_layer(family, sharing, units=N, rank=rank, return_sequences=True,
                          fused=True, **options)
    plain = km.make_layer(family, sharing, units=N, rank=rank, return_sequences=True,
                          fused=False, **options)
    for layer in (fused, plain):
        layer.build((None, 12, D))
    randomized(fused, 8)
    plain.set_weights(fused.get_weights())
    return fused, plain


def outputs_and_gradients(layer, xs, probe, jit_compile=False, key="gradients"):
    """`layer`'s outputs and states on `xs` (training), and the gradients of a loss of them
    with respect to every trainable weight and to `xs`: one compiled function, through the
    backend interface (`tf.GradientTape` on TensorFlow, `jax.value_and_grad` on JAX)."""
    from keras_mulrnn import backend

    inputs = keras.Variable(xs, name="inputs")

    def build():
        def compute():
            def loss():
                out, *states = layer(inputs.value, training=True)
                total = keras.ops.sum(out * probe) + sum(keras.ops.sum(s * s) for s in states)
                return total, [out, *states]

            (_, values), gradients = backend.value_and_gradients(
                loss, layer.trainable_variables + [inputs])
            return [*values, *gradients]

        return compute

    return [keras.ops.convert_to_numpy(value) for value in
            backend.compile_function(layer, key, build, jit_compile)()]


@pytest.mark.parametrize("family,sharing", [
    ("lstm", "shared"), ("lstm", "unshared"), ("gru", "shared"), ("gru", "unshared"),
    ("rnn", "shared"), ("lstm", "additive"), ("gru", "additive"),
    ("lstm", (("i", "f"), ("o", "u"))), ("lstm", (("i", "f", "o"), ("u",))),
    ("gru", (("z", "r"), ("h",))), ("lstm", "integration"), ("gru", "integration"),
    ("rnn", "integration"),
])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("chunk_steps", [32, 5], ids=["whole", "chunked"])  # 12 steps
def test_fused_loop_equals_the_plain_loop_with_gradients(family, sharing, go_backwards,
                                                         chunk_steps, monkeypatch):
    """The hand-written backward pass is an optimization, not a new model: outputs, final
    states and every gradient equal those of Keras's generic loop (on every backend that has
    one: this file also runs on JAX, `test_backends.py`)."""
    from keras_mulrnn import backend
    from keras_mulrnn.backend import fused as fused_module

    monkeypatch.setattr(fused_module, "CHUNK_STEPS", chunk_steps)
    fused, plain = fused_and_plain(family, sharing, return_state=True,
                                   go_backwards=go_backwards, recurrent_dropout=0.25, seed=4)
    assert backend.fused_sequence(fused.cell) is not None
    probe = np.random.default_rng(9).standard_normal((3, 12, N)).astype("float32")
    results = [outputs_and_gradients(layer, inputs(), probe) for layer in (fused, plain)]
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("family,sharing", [("lstm", "shared"), ("gru", "unshared"),
                                            ("lstm", "additive"), ("gru", "integration")])
def test_fused_loop_compiles_with_xla_in_chunks(family, sharing, monkeypatch):
    """Under XLA every shape must be static, the chunks of the backward pass included:
    the fused loop compiled with `jit_compile=True` (chunks of 5, 5 and 2 steps) gives the
    plain loop's outputs and gradients."""
    from keras_mulrnn.backend import fused as fused_module

    monkeypatch.setattr(fused_module, "CHUNK_STEPS", 5)
    fused, plain = fused_and_plain(family, sharing, return_state=True)
    probe = np.random.default_rng(9).standard_normal((3, 12, N)).astype("float32")
    compiled = outputs_and_gradients(fused, inputs(), probe, jit_compile=True)
    for got, want in zip(compiled, outputs_and_gradients(plain, inputs(), probe), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("family,sharing", [
    ("lstm", "unshared"), ("gru", (("z", "r"), ("h",))), ("lstm", (("i", "f"), ("o", "u"))),
    ("lstm", "shared"),
])
def test_the_gpu_recurrence_equals_the_cpu_one(family, sharing, monkeypatch):
    """The recurrence laid out for a GPU (one batched transition product over equal groups,
    no materialized transposes) gives the CPU layout's outputs, states and gradients, in the
    fused loop (in chunks) and in the generic loop."""
    from keras_mulrnn import backend
    from keras_mulrnn.backend import fused as fused_module

    monkeypatch.setattr(fused_module, "CHUNK_STEPS", 5)
    fused, plain = fused_and_plain(family, sharing, return_state=True)
    probe = np.random.default_rng(9).standard_normal((3, 12, N)).astype("float32")
    with backend.recurrence_for("cpu"):
        want = outputs_and_gradients(plain, inputs(), probe, key="cpu")
    with backend.recurrence_for("gpu"):
        equal = len(set(fused.cell.group_widths())) == 1
        assert fused.cell.transition_layout() == (
            "single" if len(fused.cell.groups) == 1 else "batched" if equal else "blocks")
        for layer in (fused, plain):
            got = outputs_and_gradients(layer, inputs(), probe, key="gpu")
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
def test_weight_gradient_products_accumulate_in_float32(platform):
    """Under `mixed_bfloat16` the fused pass's weight gradients sum thousands of rows of
    bfloat16 products: the sum is kept in float32 (a bfloat16 result would be off by about
    1e-3 relative), against NumPy's product of the same bfloat16 values."""
    from keras_mulrnn import backend

    rng = np.random.default_rng(3)
    a = rng.standard_normal((4096, 3, 8)).astype("float32")
    b = rng.standard_normal((4096, 3, 5)).astype("float32")
    a16, b16 = (keras.ops.cast(x, "bfloat16") for x in (a, b))
    exact = [keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")).astype("float64")
             for x in (a16, b16)]
    with backend.recurrence_for(platform):
        flat = backend.rows_product(a16[:, 0], b16[:, 0])
        batched = backend.rows_product(a16, b16)
    assert keras.backend.standardize_dtype(flat.dtype) == "float32"
    assert keras.backend.standardize_dtype(batched.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(flat),
                               exact[0][:, 0].T @ exact[1][:, 0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(batched),
                               np.einsum("ngx,ngy->gxy", *exact), rtol=1e-5, atol=1e-4)


def test_the_generic_loop_serves_where_the_fused_one_does_not_apply():
    """Masks and unrolling are not the fused function's: the generic loop runs them (the
    mask and unroll tests above check its results)."""
    from keras_mulrnn.backend import fused as fused_module

    cell = km.MLSTMCell(N)
    assert not fused_module.supports(cell, np.ones((3, 12), bool), unroll=False)
    assert not fused_module.supports(cell, None, unroll=True)
    assert fused_module.supports(cell, None, unroll=False)
    # Nor the Mogrifier's: its input is gated by the state before any product, so the input
    # side cannot be computed before the loop (its results: the tests above, on the
    # generic loop).
    assert not fused_module.supports(km.MLSTMCell(N, mogrifier_rounds=2), None, unroll=False)
