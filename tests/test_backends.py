"""The package on every backend: it imports and trains where TensorFlow cannot be imported,
the language-model toolkit gives TensorFlow's results on JAX, checkpoints cross backends,
and JAX trains data parallel.

Each scenario runs in processes of its own (a process's Keras backend and its devices are
fixed when it starts), on JAX through `tests/programs/without_tensorflow.py`, which makes any
import of TensorFlow fail.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras_mulrnn as km

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")  # run as subprocesses
ROOT = os.path.dirname(HERE)
WITHOUT_TF = os.path.join(PROGRAMS, "without_tensorflow.py")
TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.\n") * 40


def _env(backend, **extra):
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1", **extra}


def _run(backend, *command, timeout=600, **extra):
    """Runs a Python script on `backend` (without TensorFlow for JAX)."""
    prefix = [sys.executable] + ([WITHOUT_TF] if backend == "jax" else [])
    return subprocess.run(prefix + [str(c) for c in command], capture_output=True, text=True,
                          env=_env(backend, **extra), cwd=ROOT, timeout=timeout)


def _weights(arrays, prefix):
    return [arrays[k] for k in sorted((k for k in arrays.files if k.startswith(prefix)),
                                      key=lambda k: int(k.rsplit("_", 1)[1]))]


def test_the_package_imports_and_runs_without_tensorflow(tmp_path):
    script = tmp_path / "every_name.py"
    script.write_text(
        "import sys\n"
        "import numpy as np\n"
        "import keras_mulrnn as km\n"
        "for name in km.__all__:\n"
        "    getattr(km, name)\n"
        "import keras_mulrnn.analysis.study, keras_mulrnn.data, keras_mulrnn.lm.cli\n"
        "layer = km.MLSTM(8, rank=4, sharing='unshared', return_sequences=True)\n"
        "print('shape', tuple(layer(np.ones((2, 5, 3), 'float32')).shape))\n"
        "print('tensorflow modules', sum(m.startswith('tensorflow') for m in sys.modules))\n")
    done = _run("jax", script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shape (2, 5, 8)" in done.stdout and "tensorflow modules 0" in done.stdout
    quick = _run("jax", os.path.join(ROOT, "examples", "quickstart.py"))
    assert quick.returncode == 0, quick.stderr[-3000:]
    assert "final training loss" in quick.stdout


@pytest.mark.slow
def test_toolkit_parity_and_checkpoints_across_backends(tmp_path):
    """From the same initial weights with dropout off, 20 steps on TensorFlow and on JAX give
    the same losses and BPC; a checkpoint of one backend resumes on the other."""
    initial = tmp_path / "initial.npz"
    runner = os.path.join(PROGRAMS, "backend_runs.py")
    runs = {}
    for backend in ("tensorflow", "jax"):
        (tmp_path / backend).mkdir()
        done = _run(backend, runner, "parity", initial, tmp_path / backend)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[backend] = np.load(tmp_path / backend / "run.npz")
        assert str(runs[backend]["backend"]) == backend
    tf_run, jax_run = runs["tensorflow"], runs["jax"]
    assert len(tf_run["losses"]) == 20
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], atol=1e-4)
    for split in ("valid_bpc", "test_bpc"):
        assert float(jax_run[split]) == pytest.approx(float(tf_run[split]), abs=1e-4)
    for a, b in zip(_weights(jax_run, "arr_"), _weights(tf_run, "arr_"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    with np.load(initial) as start:  # the weights did move
        assert any(not np.allclose(a, start[f"arr_{i}"])
                   for i, a in enumerate(_weights(tf_run, "arr_")))
    # Each backend resumes the other's checkpoint of step 15 and ends where both did.
    for writer, reader in (("tensorflow", "jax"), ("jax", "tensorflow")):
        checkpoints = tmp_path / f"{writer}-checkpoints"
        shutil.copytree(tmp_path / writer / "run" / "checkpoints", checkpoints)
        shutil.rmtree(checkpoints / "ckpt-000000020")
        output = tmp_path / f"{reader}-resumed"
        output.mkdir()
        done = _run(reader, runner, "parity", initial, output, checkpoints)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Resumed from step 15 of 20" in done.stdout
        resumed = np.load(output / "run.npz")
        for a, b in zip(_weights(resumed, "arr_"), _weights(tf_run, "arr_"), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_data_parallel_on_two_jax_devices_equals_one_device(tmp_path):
    done = _run("jax", os.path.join(PROGRAMS, "backend_runs.py"), "data-parallel", tmp_path,
                XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = np.load(tmp_path / "data_parallel.npz")
    # The carried state is split over both devices along the rows.
    assert "'batch': 2" in str(runs["parallel_carry_sharding"])
    assert "P('batch', None)" in str(runs["parallel_carry_sharding"])
    np.testing.assert_allclose(runs["parallel_losses"], runs["one_losses"], atol=1e-5)
    one = _weights(runs, "one_weight_")
    for name in ("parallel_weight_", "resumed_weight_"):
        for a, b in zip(_weights(runs, name), one, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


# Two halves, so that the two take a core each.
# On JAX the same tests run again, over fewer of the cases that only vary what TensorFlow's
# run already covers (the middle rank 6, and rank 9 without a bias; the fused loop's
# backward direction for three of its thirteen cells): the JAX-specific code (its fused
# pass, its recurrence, Keras's JAX trainer) is in every case that remains.
JAX_SELECTIONS = {
    "cells": (["test_cells_reference.py"],
              "not gradients and not k6-bias] and not k6-nobias and not k9-nobias"),
    "layers": (["test_layers.py", "test_training.py"],
               "chunked-False or chunked-True-lstm-shared or chunked-True-gru-unshared or "
               "chunked-True-lstm-integration or compiles or generic or learning_rate_scale or "
               "recurrence or accumulate_in_float32 or "
               "((integration or mogrifier) and not fused_loop_equals)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("selection", JAX_SELECTIONS)
def test_cell_reference_and_fused_loop_tests_pass_on_jax(selection):
    """The cells' reference tests (but the float64 finite differences, which JAX runs in
    float32 unless told otherwise), the JAX fused loop against JAX's own autodiff of the
    generic loop (in chunks, compiled, and where it does not apply), Keras's layer
    conventions (masks, state, `go_backwards`, `.keras` files) for multiplicative integration
    and the Mogrifier, and the learning-rate scale reaching JAX's compiled step."""
    files, keywords = JAX_SELECTIONS[selection]
    done = subprocess.run(  # not -q, which hides the header that names the backend
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         *(os.path.join(HERE, name) for name in files), "-k", keywords],
        capture_output=True, text=True, env=_env("jax"), cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
    assert "keras backend: jax" in done.stdout


def test_training_on_jax_matches_tensorflow(tmp_path):
    initial = tmp_path / "initial.npz"
    results = {}
    for backend in ("tensorflow", "jax"):
        path = tmp_path / f"{backend}.npz"
        done = subprocess.run([sys.executable, os.path.join(PROGRAMS, "backend_training.py"),
                               str(initial), str(path)], capture_output=True, text=True,
                              env=_env(backend), timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results[backend] = np.load(path)
        assert str(results[backend]["backend"]) == backend
    tf_run, jax_run = results["tensorflow"], results["jax"]
    assert len(tf_run["losses"]) == 8
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], atol=1e-5)
    for a, b in zip(_weights(jax_run, "arr_"), _weights(tf_run, "arr_"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The weights did move: equal results are not the initial ones.
    with np.load(initial) as start:
        assert any(not np.allclose(a, start[f"arr_{i}"])
                   for i, a in enumerate(_weights(tf_run, "arr_")))


def _final_weights(output):
    return km.load_model(os.path.join(output, "model.keras")).get_weights()


@pytest.mark.slow
def test_main_job_on_jax_without_tensorflow_killed_and_resumed(tmp_path):
    """`train_enwik8.py --quick` on JAX with no TensorFlow: trains, evaluates, writes its
    results; killed and resumed, it ends with the weights of an uninterrupted run; then
    generation and evaluation run there too."""
    data = tmp_path / "austen.txt"
    data.write_text(TEXT)
    script = os.path.join(ROOT, "examples", "train_enwik8.py")

    def command(output, *extra):
        return [script, "--quick", "--data", data, "--output", output, "--steps", "24",
                "--eval-every", "8", "--checkpoint-every", "2", "--units", "16",
                "--batch-size", "4", "--seq-len", "20", "--valid-symbols", "300",
                "--test-batch-size", "4", "--sample-length", "10", "--recurrent-dropout",
                "0.1", *extra]

    whole = _run("jax", *command(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "test BPC" in whole.stdout and "Traceback" not in whole.stderr
    assert "InitializeLog" not in whole.stderr  # quiet: no native start-up logs
    results = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert results["backend"] == "jax" and results["steps"] == 24

    killed = tmp_path / "killed"
    prefix = [sys.executable, WITHOUT_TF]
    process = subprocess.Popen(prefix + [str(c) for c in command(killed)], cwd=ROOT,
                               env=_env("jax"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        checkpoints = killed / "checkpoints"
        if checkpoints.is_dir() and len([n for n in os.listdir(checkpoints)
                                         if n.startswith("ckpt-")]) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (killed / "results.json").exists()
    resumed = _run("jax", *command(killed, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from step" in resumed.stdout
    for a, b in zip(_final_weights(killed), _final_weights(tmp_path / "whole"), strict=True):
        np.testing.assert_array_equal(a, b)

    model = tmp_path / "whole" / "model.keras"
    generated = _run("jax", os.path.join(ROOT, "examples", "generate.py"), "--model", model,
                     "--prompt", "It is", "--length", "40")
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert generated.stdout.startswith("It is") and len(generated.stdout.rstrip("\n")) == 45
    evaluated = _run("jax", os.path.join(ROOT, "examples", "evaluate.py"), "--model", model,
                     "--corpus", "enwik8", "--data", data, "--batch-size", "4",
                     "--seq-len", "20")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"test: {results['test_bpc']:.4f} bits per character" in evaluated.stdout


def test_strategies_of_another_backend_are_refused_by_name(tmp_path):
    data = tmp_path / "austen.txt"
    data.write_text(TEXT)
    done = _run("jax", os.path.join(ROOT, "examples", "train_text.py"), "--data", data,
                "--output", tmp_path / "out", "--strategy", "mirrored")
    assert done.returncode == 1
    assert "--strategy mirrored is a tensorflow strategy" in done.stderr
    assert "('default', 'data-parallel')" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    threads = _run("jax", os.path.join(ROOT, "examples", "train_text.py"), "--data", data,
                   "--output", tmp_path / "out", "--threads", "2")
    assert threads.returncode == 1 and "XLA has no setting in between" in threads.stderr


# Keras made to believe that a GPU is there: its `_is_gpu_available` (patched in the module
# object: the attribute path `keras.src.backend.jax.rnn` is shadowed by a function of that
# name), and `jax.experimental.rnn.lstm` replaced by a recorder that answers as cuDNN would,
# with outputs of the right shapes (the real one fails on a CPU in a way Keras does not
# catch).
CUDNN_PROBE = """
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
import jax.experimental.rnn
import jax.numpy as jnp
import keras
sys.modules["keras.src.backend.jax.rnn"]._is_gpu_available = lambda: True
calls = []

def recorder(inputs, h_0, c_0, weights, seq_lengths, hidden_size, **kwargs):
    calls.append(str(inputs.dtype))
    batch, steps = inputs.shape[:2]
    y = jnp.zeros((batch, steps, hidden_size), inputs.dtype) + jnp.sum(weights) * 0
    return y, h_0, c_0

jax.experimental.rnn.lstm = recorder
import accelerator
bench = accelerator.Benchmark(accelerator.SMOKE, smoke=True, budget=600)
for policy in ("float32", "mixed_bfloat16"):
    before = len(calls)
    _, path = bench.measure("keras", 36, None, policy)
    print(policy, path, calls[before:][:1])
"""


def test_the_benchmark_runs_keras_lstm_through_cudnn_in_float32_only(tmp_path):
    """On a JAX GPU, Keras's LSTM goes to cuDNN, which takes no bfloat16 (jaxlib fails while
    lowering, past Keras's fallback): the benchmark's float32 row takes the cuDNN path and
    its bfloat16 row Keras's plain scan, and each row says which."""
    probe = tmp_path / "probe.py"
    probe.write_text(CUDNN_PROBE)
    done = _run("jax", probe, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "float32 cuDNN ['float32']" in done.stdout, done.stdout
    assert "mixed_bfloat16 scan []" in done.stdout, done.stdout


@pytest.mark.slow
def test_the_accelerator_benchmark_runs_at_smoke_sizes():
    """`benchmarks/accelerator.sh --smoke`: the GPU benchmark's own code, on this CPU at tiny
    sizes, on JAX (as on the GPU machines), every section printed."""
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "accelerator.sh"),
                           "--smoke"], capture_output=True, text=True, timeout=300,
                          env={**_env("jax"), "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("backend jax", "| keras.layers.LSTM |", "| lstm/shared |",
                 "| lstm/unshared |", "mixed_bfloat16", "bfloat16 product",
                 "Generation", "ms per step after compilation", "200,000 steps would take",
                 "recurrence Recurrence(platform='cpu'", "| scan |", "compiled recurrence",
                 "unroll 2:", "/ keras.layers.LSTM (float32)"):
        assert text in done.stdout, (text, done.stdout)
    assert "failed" not in done.stdout, done.stdout
    assert "skipped" not in done.stdout
