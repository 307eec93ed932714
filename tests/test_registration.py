"""Keras's convention: after `import keras_mulrnn`, `keras.saving.load_model` loads every
`.keras` file the package writes (a sequence layer, a bare cell in `keras.layers.RNN`, the
language model with its metric, optimizer and schedule), in safe mode, on TensorFlow and on
JAX, whichever of Keras and the package is imported first. (That the programs still parse
their arguments before the backend loads is `test_docs`'s `--help` test.)

Each reader runs in a fresh process (what a process has imported is the point), on JAX
without TensorFlow.
"""

import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")  # run as subprocesses
ROOT = os.path.dirname(HERE)
WITHOUT_TF = os.path.join(PROGRAMS, "without_tensorflow.py")

WRITE = """
import keras, numpy as np
import keras_mulrnn as km
from keras_mulrnn.data import Vocabulary
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.optimization import build_model

keras.utils.set_random_seed(1)
x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
layer = keras.Sequential([keras.Input((5, 3)), km.MLSTM(4, rank=2), keras.layers.Dense(2)])
cell = keras.Sequential([keras.Input((5, 3)),
                         keras.layers.RNN(km.MGRUCell(4, sharing="unshared"))])
config = TrainConfig(units=8, embedding_dim=4, seq_len=5, batch_size=2, steps=10)
lm = build_model(Vocabulary(list("abcd")), config)
expected = {}
for name, model in (("layer", layer), ("cell", cell), ("lm", lm)):
    model.save(f"{name}.keras")
    for i, weight in enumerate(model.get_weights()):
        expected[f"{name}_weight{i}"] = weight
expected["layer_out"] = np.asarray(layer(x))
expected["cell_out"] = np.asarray(cell(x))
np.savez("expected.npz", x=x, **expected)
"""

# {imports} is one of IMPORT_ORDERS; nothing of the package is used before `load_model`.
READ = """
{imports}
import numpy as np
expected = np.load("expected.npz")
loaded = {{name: keras.saving.load_model(f"{{name}}.keras", safe_mode=True)
          for name in ("layer", "cell", "lm")}}
for name, model in loaded.items():
    weights = model.get_weights()
    assert len(weights) == sum(key.startswith(name + "_weight") for key in expected), name
    for i, weight in enumerate(weights):
        np.testing.assert_array_equal(weight, expected[f"{{name}}_weight{{i}}"])
for name in ("layer", "cell"):
    np.testing.assert_allclose(np.asarray(loaded[name](expected["x"])), expected[name + "_out"],
                               rtol=1e-5, atol=1e-6)
lm = loaded["lm"]
print(type(lm).__name__, type(lm.optimizer).__name__,
      type(lm.optimizer._learning_rate).__name__,
      # (Keras only warns when a compile configuration cannot be rebuilt.)
      [type(m).__name__ for m in lm._compile_metrics._user_weighted_metrics])
"""

IMPORT_ORDERS = {
    "keras first": "import keras\nimport keras_mulrnn",
    "package first": "import keras_mulrnn\nimport keras",
    # One of the package's modules imports Keras itself: registration waits for its import.
    "a cell module first": "from keras_mulrnn.cells import MLSTMCell\nimport keras",
}


def _python(backend, code, cwd):
    prefix = [sys.executable] + ([WITHOUT_TF] if backend == "jax" else [])
    script = os.path.join(cwd, "script.py")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": backend,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(prefix + [script], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=300)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """The three kinds of model file, written on TensorFlow with their expected weights."""
    where = tmp_path_factory.mktemp("saved")
    done = _python("tensorflow", WRITE, str(where))
    assert done.returncode == 0, done.stderr[-3000:]
    return where


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.parametrize("order", list(IMPORT_ORDERS))
def test_keras_load_model_loads_every_file_the_package_writes_after_a_plain_import(
        saved_models, backend, order):
    done = _python(backend, READ.format(imports=IMPORT_ORDERS[order]), str(saved_models))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == (
        "CharLanguageModel GlobalClipAdam LinearDecay ['BitsPerCharacter']")


def test_without_the_package_keras_cannot_load_its_files(saved_models):
    """The control: the files name classes that only the package's import provides."""
    done = _python("jax", "import keras\nkeras.saving.load_model('layer.keras')",
                   str(saved_models))
    assert done.returncode != 0
    assert "MLSTM" in done.stderr


def test_importing_the_package_while_keras_is_half_imported_waits_for_keras(saved_models):
    """When Keras's own import leads to the package, registering at once would read a
    half-made Keras: the package registers once Keras has finished loading."""
    code = """
import importlib.machinery, sys, types
half = types.ModuleType("keras")  # Keras in the middle of its import
half.__spec__ = importlib.machinery.ModuleSpec("keras", None)
half.__spec__._initializing = True
sys.modules["keras"] = half
import keras_mulrnn
del sys.modules["keras"]
import keras
keras.saving.load_model("layer.keras")
print("loaded")
"""
    done = _python("jax", code, str(saved_models))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded" in done.stdout
