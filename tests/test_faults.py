"""Reliability, round two: no run lost or mixed, no bad value silently accepted, no traceback,
no hang. Every case here failed before the fix that it tests (see the closing note of the
issue for the table of cases)."""

import array
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import termios
import time
import types
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_mulrnn as km
from keras_mulrnn.analysis import dynamic_evaluation
from keras_mulrnn.data import corpora, load_text
from keras_mulrnn.lm import callbacks, cli, interruption, lock, training
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.generation import generate_after
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.lm.training import train
from test_language_model import (TEXT, AtStep, interrupt, press_ctrl_c, small_config,
                                 small_corpus)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
# A long text, so that validation and the final evaluation take seconds.
LONG = TEXT * 12


def _data(tmp_path, text=TEXT, name="austen.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _command(script, *arguments):
    return [sys.executable, os.path.join(EXAMPLES, script), *map(str, arguments)]


def _small_flags(data, output, *extra):
    return ["--data", data, "--output", output, "--units", "16", "--rank", "8",
            "--embedding-dim", "8", "--batch-size", "4", "--seq-len", "20", "--steps", "12",
            "--eval-every", "4", "--valid-symbols", "300", "--eval-batch-size", "2",
            "--test-batch-size", "4", "--sample-length", "10", *extra]


def _script(tmp_path, script, *arguments, timeout=300):
    return subprocess.run(_command(script, *arguments), env=ENV, capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path)


def _assert_one_clear_line(done):
    assert done.returncode not in (0, None), done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().startswith("error:") or "usage:" in done.stderr, done.stderr


# ------------------------------------------------------------ losing or mixing a run


def test_two_runs_aimed_at_one_directory(tmp_path):
    data = _data(tmp_path, LONG)
    output = tmp_path / "run"
    # The first run is long, so that it still holds the directory whenever the second one
    # (seconds of imports later) gets there; it is stopped once the second has been refused.
    first = subprocess.Popen(_command("train_text.py", *_small_flags(data, output, "--steps",
                                                                     "100000")),
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    log = output / "log.csv"
    while not log.exists() or len(log.read_text().splitlines()) < 2:  # it is training
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = _script(tmp_path, "train_text.py", *_small_flags(data, output, "--seed", "5"))
    _assert_one_clear_line(second)
    assert f"in use by another run (process {first.pid}" in second.stderr
    assert first.poll() is None  # the refusal did not disturb the first run
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=300) == 130, first.stderr.read()[-3000:]
    step = int(re.search(r"Interrupted at step (\d+)", first.stderr.read()).group(1))
    newest = CheckpointManager(output / "checkpoints")
    assert newest.steps()[-1] == step
    assert all(line.split(",")[0].isdigit() for line in log.read_text().splitlines()[1:])
    # What the second run asked for was never written: only the first run's seed is there.
    meta = json.loads((pathlib.Path(newest.path(step)) / "meta.json").read_text())
    assert meta["config"]["seed"] == 0 and not (output / "results.json").exists()


def test_a_lock_left_by_a_dead_run_does_not_block(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / lock.LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone"}))
    results = train(small_corpus(), small_config(steps=4), output, verbose=0)
    assert results["steps"] == 4
    with lock.hold_directory(output):
        with pytest.raises(lock.DirectoryInUse, match=f"process {os.getpid()}"):
            train(small_corpus(), small_config(steps=4), output, resume=True, verbose=0)


def test_a_setting_used_after_training_is_checked_before_the_first_step(tmp_path):
    for bad in (dict(sample_length=-1), dict(sample_length=2.5), dict(seed=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            train(small_corpus(), small_config(**bad), tmp_path / "run", verbose=0)
        assert not (tmp_path / "run").exists()


def test_the_results_are_written_before_the_sample_and_resume_finishes_a_run(tmp_path,
                                                                           monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr(training, "generate_after", broken)
    with pytest.raises(RuntimeError, match="sampling failed"):
        train(small_corpus(), small_config(steps=4), tmp_path, verbose=0)
    results = json.loads((tmp_path / "results.json").read_text())
    assert np.isfinite(results["test_bpc"]) and "sample" not in results
    monkeypatch.undo()
    # --resume on a run whose training is done evaluates and writes what is missing.
    again = train(small_corpus(), small_config(steps=4), tmp_path, resume=True, verbose=0)
    assert again["test_bpc"] == results["test_bpc"] and again["steps_this_run"] == 0
    # The training's speed is the earlier process's, kept (this one trained no step).
    assert again["chars_per_sec"] == results["chars_per_sec"] and "sample" in again
    # And on a finished run it says so and returns the results as they are.
    assert train(small_corpus(), small_config(steps=4), tmp_path, resume=True,
                 verbose=0) == json.loads((tmp_path / "results.json").read_text())


def test_resume_on_changed_data_is_refused(tmp_path):
    data = _data(tmp_path)
    train(load_text(data), small_config(steps=4, checkpoint_every=2), tmp_path / "run",
          verbose=0)
    with open(data, "a") as handle:
        handle.write("It is a truth universally acknowledged.\n")  # no new symbol
    with pytest.raises(ValueError, match=r"data differs.*train.*changed"):
        train(load_text(data), small_config(steps=8, checkpoint_every=2), tmp_path / "run",
              resume=True, verbose=0)


def _damage_step(meta_path):
    meta = json.loads(meta_path.read_text())
    meta["step"] = 999
    meta_path.write_text(json.dumps(meta))


def _damage_config(meta_path):
    meta = json.loads(meta_path.read_text())
    del meta["config"]
    meta_path.write_text(json.dumps(meta))


DAMAGES = {
    "meta says another step": lambda path: _damage_step(path / "meta.json"),
    "meta without its settings": lambda path: _damage_config(path / "meta.json"),
    "meta is a list": lambda path: (path / "meta.json").write_text("[1, 2]"),
    "meta is not JSON": lambda path: (path / "meta.json").write_text("{step: 4"),
    "weights of another step": lambda path: shutil.copy(
        path.parent / "ckpt-000000002" / "model.weights.h5", path / "model.weights.h5"),
    "carried state of another shape": lambda path: np.savez(path / "carry.npz",
                                                            np.zeros((3, 16))),
    "random state missing": lambda path: os.remove(path / "random.npz"),
    "random state of another model": lambda path: np.savez(path / "random.npz",
                                                           *[np.zeros(7)] * 3),
}


DAMAGED_CONFIG = small_config(steps=8, eval_every=4, checkpoint_every=2)


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run stopped at step 5, with its checkpoints of steps 2 and 4."""
    output = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        train(small_corpus(), DAMAGED_CONFIG, output, verbose=0,
              extra_callbacks=[AtStep(5, interrupt)])
    assert CheckpointManager(output / "checkpoints").steps() == [2, 4]
    return output


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_checkpoint_is_set_aside_and_replaced(tmp_path, interrupted_run, damage):
    config = DAMAGED_CONFIG
    output = tmp_path / "run"
    shutil.copytree(interrupted_run, output)
    DAMAGES[damage](output / "checkpoints" / "ckpt-000000004")
    with pytest.warns(UserWarning, match="ckpt-000000004.*set aside"):
        results = train(small_corpus(), config, output, resume=True, verbose=0)
    assert results["steps_this_run"] == 6  # from step 2
    assert (output / "checkpoints" / "damaged-ckpt-000000004").is_dir()
    # The damaged checkpoint is never read again: a later resume does not fall back (Keras
    # may warn of other things: a process that turned on op determinism compiles no XLA).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(small_corpus(), config, output, resume=True, verbose=0)["steps"] == 8
    assert not [w for w in caught if "checkpoint" in str(w.message).lower()], [
        str(w.message) for w in caught]


# ------------------------------------------------------------------ silent wrong results


@pytest.mark.parametrize("field,value", [
    ("clipnorm", 0.0), ("clipnorm", -1.0), ("clipnorm", float("nan")),
    ("clipnorm", float("inf")), ("learning_rate", float("inf")),
    ("learning_rate", float("nan")), ("valid_symbols", -5), ("valid_symbols", 1),
    ("seed", -1), ("nan_rollbacks", -1), ("checkpoint_every", 0), ("eval_every", 0),
    ("steps_per_execution", 0), ("jit_compile", "yes"), ("weight_norm", 1),
])
def test_every_bad_value_is_refused_naming_its_setting(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        small_config(**{field: value}).validate()


def test_no_clipping_is_said_as_none():
    assert small_config(clipnorm=None).validate().clipnorm is None


def test_quick_never_outwits_an_explicit_or_abbreviated_flag(tmp_path):
    data = _data(tmp_path)
    done = _script(tmp_path, "train_enwik8.py", "--quick", "--data", data, "--unit", "32")
    _assert_one_clear_line(done)
    assert "unrecognized arguments: --unit 32" in done.stderr
    from keras_mulrnn.lm import cli

    parser = cli.parser("x", {}, "data")
    for argv in (["--quick", "--units=32"], ["--quick", "--units", "32"]):
        args = parser.parse_args(argv)
        assert cli.config_from(args, parser, argv).units == 32
    args = parser.parse_args(["--quick"])
    assert cli.config_from(args, parser, ["--quick"]).units == cli.QUICK["units"]


def test_the_run_stops_at_exactly_its_steps_whatever_the_steps_per_execution(tmp_path):
    results = train(small_corpus(), small_config(steps=25, eval_every=10,
                                                 steps_per_execution=4), tmp_path, verbose=0)
    assert results["steps"] == 25
    assert CheckpointManager(tmp_path / "checkpoints").steps() == [20, 25]


def test_a_byte_order_mark_is_not_a_symbol(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff".encode("utf-8") + "abc abc\n".encode("utf-8") * 50)
    corpus = load_text(path)
    assert "\ufeff" not in corpus.vocabulary.symbols
    assert len(corpus.vocabulary) == 5


@pytest.mark.parametrize("arguments,message", [
    (["--budget", "0"], "--budget must be a positive"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--trend-from", "nowhere"], "--trend-from 'nowhere' is not a finished study's"),
])
def test_study_counts_are_checked(tmp_path, arguments, message):
    done = _script(tmp_path, "compare_sharing.py", "--output", tmp_path / "s", *arguments)
    _assert_one_clear_line(done)
    assert message in done.stderr and not (tmp_path / "s").exists()


def test_study_budget_of_zero_is_refused_in_the_library():
    from keras_mulrnn.analysis.study import plan_arms

    for design in ("budget", "factorial", "families"):
        with pytest.raises(ValueError, match="budget"):
            plan_arms(small_config(), ("lstm",), design=design, budget=0)


@pytest.mark.parametrize("arguments,message", [
    (["--max-trials", "0"], "--max-trials must be at least 1"),
    (["--executions-per-trial", "0"], "--executions-per-trial must be at least 1"),
    (["--steps-per-trial", "-3"], "--steps-per-trial must be at least 1"),
])
def test_tuner_counts_are_checked(tmp_path, arguments, message):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "search.py"),
                           "--directory", str(tmp_path / "t"), *arguments], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and message in done.stderr and not (tmp_path / "t").exists()


# ------------------------------------------------------------- crashes and tracebacks


def _plain_model_file(path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(path)
    return path


def _zip_without_config(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return path


def _unknown_class(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(
            {"module": "somebody.layers", "class_name": "Mystery", "config": {},
             "registered_name": "somebody>Mystery"}))
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    return path


def _garbage(path):
    path.write_bytes(os.urandom(2000))
    return path


@pytest.mark.parametrize("make,message", [
    (_plain_model_file, "holds a Sequential, not a keras_mulrnn CharLanguageModel"),
    (_zip_without_config, "holds no config.json"),
    (_unknown_class, "could not be loaded as a Keras model"),
    (_garbage, "is not a Keras model file"),
], ids=["plain Sequential", "zip without config", "unknown class", "garbage"])
def test_a_file_that_is_not_a_model_of_this_package(tmp_path, make, message):
    path = make(tmp_path / "model.keras")
    for script in ("generate.py", "evaluate.py"):
        arguments = ["--model", path] + (["--prompt", "It"] if script == "generate.py" else [])
        done = _script(tmp_path, script, *arguments)
        _assert_one_clear_line(done)
        assert message in done.stderr, done.stderr


def test_a_data_file_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = _data(tmp_path)
    monkeypatch.setattr(corpora, "physical_memory", lambda: 1000)
    with pytest.raises(MemoryError, match=r"needs about .* GiB of memory, more than"):
        load_text(path)


def test_a_named_pipe_is_not_an_empty_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"named pipe \(FIFO\)"):
        load_text(fifo)


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built(tmp_path):
    done = _script(tmp_path, "train_text.py", "--data", _data(tmp_path), "--output",
                   tmp_path / "out", "--units", "200000")
    _assert_one_clear_line(done)
    assert "GiB to train" in done.stderr and "Use fewer units" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_one_symbol_corpus_gets_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="1 distinct symbol"):
        train(corpora.corpus_from_text("a", "a" * 5000), small_config(), tmp_path / "o",
              verbose=0)


def test_tuning_directory_that_is_a_file_and_a_report_with_no_finished_trials(tmp_path):
    (tmp_path / "file").write_text("x")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "search.py"),
                           "--directory", str(tmp_path / "file")], env=ENV,
                          capture_output=True, text=True, timeout=300)
    _assert_one_clear_line(done)
    assert "is a file" in done.stderr
    project = tmp_path / "tuning" / "empty"
    (project / "trial_0").mkdir(parents=True)
    (project / "trial_0" / "trial.json").write_text(json.dumps(
        {"trial_id": "0", "status": "RUNNING", "score": None,
         "hyperparameters": {"values": {}}}))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "report.py"),
                           "--directory", str(tmp_path / "tuning"), "--project-name",
                           "empty"], env=ENV, capture_output=True, text=True, timeout=300)
    _assert_one_clear_line(done)
    assert "no finished trials" in done.stderr


def test_a_huge_generation_is_bounded_and_a_long_one_streams(tmp_path):
    model = tmp_path / "model.keras"
    train(small_corpus(), small_config(steps=2), tmp_path / "run", verbose=0)
    shutil.copy(tmp_path / "run" / "model.keras", model)
    done = _script(tmp_path, "generate.py", "--model", model, "--prompt", "It",
                   "--length", "100000000")
    _assert_one_clear_line(done)
    assert "--length must be in [0, 10,000,000]" in done.stderr
    process = subprocess.Popen(_command("generate.py", "--model", model, "--prompt", "It",
                                        "--length", "1000000"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.read(300)  # arrives while the rest is being sampled
        assert first.startswith("It") and len(first) == 300
        assert process.poll() is None
        assert "more minutes" in process.stderr.readline() + process.stderr.readline()
    finally:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- signals


def _start(tmp_path, data, output, *extra):
    return subprocess.Popen(_command("train_text.py", *_small_flags(data, output, *extra)),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)


def _wait_for_line(process, text, timeout=300):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in {lines}")


@pytest.mark.slow
def test_signals_at_every_moment_stop_cleanly_and_lose_nothing(tmp_path):
    # Validation and the final evaluation score every symbol one by one: seconds each.
    data = _data(tmp_path, TEXT * 60)
    full = ["--valid-symbols", "none", "--eval-batch-size", "1", "--test-batch-size", "1"]

    # Two SIGINTs in quick succession: stopped at once, with a message, no traceback.
    output = tmp_path / "twice"
    process = _start(tmp_path, data, output, *full)
    _wait_for_line(process, "steps 1–4 of 12")
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "SIGINT again: stopped at once" in stderr or "Interrupted at step" in stderr
    resumed = _script(tmp_path, "train_text.py", *_small_flags(data, output, *full,
                                                               "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # SIGTERM during the last validation: the run stops there with its checkpoint, exit 130.
    output = tmp_path / "last-validation"
    process = _start(tmp_path, data, output, *full, "--checkpoint-every", "1")
    checkpoints = output / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / "ckpt-000000011").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    time.sleep(0.3)  # step 12 trains in well under this; its validation takes seconds
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, (stdout[-2000:], stderr[-2000:])
    assert "Interrupted at step 12 of 12" in stderr and "Traceback" not in stderr
    assert CheckpointManager(checkpoints).steps()[-1] == 12
    assert not (output / "results.json").exists()

    # SIGTERM and SIGINT during the final evaluation: a message, exit 130, and --resume
    # evaluates what the run had not.
    for signum in (signal.SIGTERM, signal.SIGINT):
        output = tmp_path / f"final-{signum}"
        process = _start(tmp_path, data, output, *full)
        _wait_for_line(process, "steps 9–12 of 12")
        time.sleep(0.2)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, (stdout[-2000:], stderr[-2000:])
        # On a loaded machine the signal may land just before the final evaluation, as
        # `fit` returns: the run stops there instead (the in-process test above aims there).
        assert ("during the final evaluation" in stderr
                or "Interrupted at step 12 of 12" in stderr) and "Traceback" not in stderr
        assert not (output / "results.json").exists()
        resumed = _script(tmp_path, "train_text.py", *_small_flags(data, output, *full,
                                                                   "--resume"))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads((output / "results.json").read_text())["steps_this_run"] == 0


def test_a_byte_corpus_cut_inside_a_character_still_samples_at_the_end(tmp_path):
    """The closing sample starts from the test split's first symbols, as ids: a byte split
    that begins inside a UTF-8 character (as enwik8's may) is no reason to fail."""
    data = "déjà vu, à la carte; ".encode("utf-8") * 200
    vocabulary = corpora.Vocabulary.from_data(data, "byte")
    ids = vocabulary.encode(data)
    cut = data.index("é".encode("utf-8")) + 1  # inside é
    corpus = corpora.Corpus("cut", vocabulary, ids[cut + 800:], ids[cut + 400 : cut + 800],
                            ids[cut : cut + 400])
    results = train(corpus, small_config(steps=2), tmp_path, verbose=0)
    assert "\ufffd" in results["sample_prompt"] and len(results["sample"]) > 0


# ------------------------------------------------ found by an adversarial trial of our own


def test_an_interrupted_and_resumed_run_logs_as_an_uninterrupted_one(tmp_path):
    config = small_config(steps=12, eval_every=4, checkpoint_every=2)
    train(small_corpus(), config, tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt, match="Interrupted at step 7"):  # the next step
        train(small_corpus(), config, tmp_path / "cut", verbose=0,
              extra_callbacks=[AtStep(6, press_ctrl_c)])
    train(small_corpus(), config, tmp_path / "cut", resume=True, verbose=0)
    whole, cut = ((tmp_path / name / "log.csv").read_text().splitlines()
                  for name in ("whole", "cut"))
    assert whole[0] == cut[0] == "epoch,step,loss,bpc,val_bpc,loss_steps"
    # The same validations, the same figures (the training loss of the interval that the
    # interruption cut averages the steps run after the resume, so it is left out).
    column = [row.split(",") for row in whole[1:]], [row.split(",") for row in cut[1:]]
    assert [(r[0], r[1], r[4]) for r in column[0]] == [(r[0], r[1], r[4]) for r in column[1]]
    # ... and its row says so: the resume (from the checkpoint of step 7) ran step 8 alone
    # of the interval 5–8.
    assert [r[5] for r in column[0]] == ["4", "4", "4"]
    assert [r[5] for r in column[1]] == ["4", "1", "4"]


def test_a_signal_after_the_last_step_stops_the_run_before_its_final_evaluation(tmp_path):
    # Ctrl-C after the last step's callbacks, while `fit` returns: too late for them to act
    # on, and once lost (the run went on to evaluate and exit 0).
    config = small_config(steps=8)
    output = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt, match="Interrupted at step 8 of 8"):
        train(small_corpus(), config, output, verbose=0,
              extra_callbacks=[AtStep(8, press_ctrl_c, when="fit")])
    assert not (output / "results.json").exists()
    assert CheckpointManager(output / "checkpoints").steps()[-1] == 8
    results = train(small_corpus(), config, output, resume=True, verbose=0)
    assert results["steps"] == 8 and (output / "results.json").exists()


def test_a_signal_while_the_model_is_built_stops_the_run_after_its_first_step(
        tmp_path, monkeypatch):
    # Ctrl-C while the model is built and traced: once a `KeyboardInterrupt` raised in the
    # middle of TensorFlow's tracing, where code that swallows it may run (the run then went
    # on as if nothing had happened), with a screen of TensorFlow's "never used" errors.
    def build_model_and_press_ctrl_c(*args, **kwargs):
        press_ctrl_c()
        return real_build_model(*args, **kwargs)

    real_build_model = training.build_model
    monkeypatch.setattr(training, "build_model", build_model_and_press_ctrl_c)
    config, output = small_config(steps=8), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt, match="Interrupted at step 1 of 8"):
        train(small_corpus(), config, output, verbose=0)
    assert CheckpointManager(output / "checkpoints").steps() == [1]
    monkeypatch.setattr(training, "build_model", real_build_model)
    assert train(small_corpus(), config, output, resume=True, verbose=0)["steps"] == 8


def test_a_signal_while_the_output_is_blocked_stops_the_run_cleanly(tmp_path):
    # Output piped to a reader that has paused (`| less`, a slow `tee`): the program is
    # blocked writing its progress when the signal comes. It once answered "error:
    # reentrant call" (the handler printed through the stream it had interrupted), exit 1.
    env = {key: value for key, value in ENV.items() if key != "PYTHONUNBUFFERED"}
    reader, writer = os.pipe()
    try:
        fcntl.fcntl(writer, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # fills sooner
    except OSError:
        pass
    size = fcntl.fcntl(writer, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    output = tmp_path / "run"
    process = subprocess.Popen(
        _command("train_text.py", *_small_flags(_data(tmp_path, LONG), output, "--steps",
                                                "100000", "--eval-every", "1",
                                                "--valid-symbols", "100")),
        env=env, stdout=writer, stderr=subprocess.PIPE, text=True)
    os.close(writer)
    deadline = time.monotonic() + 300
    waiting = array.array("i", [0])
    while waiting[0] < size - 200:  # the pipe is full: the program's next write blocks
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
        fcntl.ioctl(reader, termios.FIONREAD, waiting)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    time.sleep(1.0)
    with os.fdopen(reader, "rb") as pipe:  # the reader goes on
        pipe.read()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "error:" not in stderr, stderr[-2000:]
    assert "SIGINT: saving a checkpoint" in stderr and "Interrupted at step" in stderr
    step = int(re.search(r"Interrupted at step (\d+)", stderr).group(1))
    assert CheckpointManager(output / "checkpoints").steps()[-1] == step


def test_a_study_refused_for_its_flags_leaves_nothing(tmp_path):
    for bad in (["--learning-rates", "0.002,nan"], ["--learning-rates", "0.01,-1"],
                ["--budget", "10000000000000"]):
        done = _script(tmp_path, "compare_sharing.py", "--output", tmp_path / "study",
                       "--steps", "2", *bad)
        _assert_one_clear_line(done)
        assert not (tmp_path / "study").exists(), bad


def test_an_interrupted_study_says_how_to_continue_it(tmp_path, monkeypatch):
    from keras_mulrnn.analysis import study
    from keras_mulrnn.analysis.study import runner
    from keras_mulrnn.lm.training import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("Interrupted at step 3 of 8; a checkpoint is in X.")

    monkeypatch.setattr(runner, "train", interrupted)
    arms = study.plan_arms(small_config(), ("lstm",), "budget", ("shared",))
    with pytest.raises(TrainingInterrupted) as stop:
        study.run_study(small_corpus(), arms, 1, [1e-2], tmp_path, verbose=0)
    assert "Run the same command again" in str(stop.value)
    assert "--resume" not in str(stop.value) and "step 3 of 8" in str(stop.value)


def test_seeds_are_32_bit_and_numpy_scalars_are_numbers():
    with pytest.raises(ValueError, match=r"`seed`.*2,147,483,647"):
        small_config(seed=2**32).validate()
    config = small_config(steps=np.int64(3), learning_rate=np.float32(0.01),
                          jit_compile=np.bool_(True)).validate()
    assert type(config.steps) is int and type(config.learning_rate) is float
    json.dumps(dataclasses.asdict(config))
    with pytest.raises(TypeError, match="must be a keras_mulrnn.TrainConfig"):
        train(small_corpus(), {"units": 8}, "out", verbose=0)
    with pytest.raises(TypeError, match="must be a keras_mulrnn.data.Corpus"):
        train(None, small_config(), "out", verbose=0)


def test_evaluation_refuses_ids_outside_the_vocabulary():
    from test_language_model import tiny_model

    model = tiny_model()
    for ids, message in ((np.array([1, 2, 500]), "outside the model's vocabulary"),
                         (np.array([1, -2, 3]), "outside the model's vocabulary"),
                         (np.array([1.0, 2.0]), "1-D array of integers")):
        with pytest.raises(ValueError, match=message):
            km.evaluate_bpc(model, ids)


def test_tfds_offline_fails_at_once_with_the_reason(tmp_path, monkeypatch):
    import socket

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="needs the network"):
        corpora.load_tfds("tiny_shakespeare", data_dir=str(tmp_path))
    assert time.monotonic() - started < 30


def test_odd_files_get_messages_that_name_them(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match="holds no text"):
        load_text(tmp_path / "bom.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 20)
    with pytest.raises(ValueError, match="not a Penn Treebank character file"):
        load_text(tmp_path / "latin.txt", kind="ptb")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpora.load_ptb(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="--output is empty"):
        train(small_corpus(), small_config(), "", verbose=0)


def test_a_split_too_short_for_its_rows_names_the_flag(tmp_path):
    with pytest.raises(ValueError, match=r"validation split has 3 symbols.*--eval-batch-size"):
        train(small_corpus(), small_config(valid_symbols=3, eval_batch_size=16),
              tmp_path / "o", verbose=0)
    with pytest.raises(ValueError, match=r"--test-batch-size"):
        train(small_corpus(), small_config(test_batch_size=100_000), tmp_path / "o",
              verbose=0)


def test_streamed_bytes_keep_characters_whole():
    from keras_mulrnn.data import Vocabulary

    vocabulary = Vocabulary.from_data("déjà".encode(), "byte")
    ids = vocabulary.encode("déjà".encode())
    decode = vocabulary.incremental_decoder()
    pieces = [decode(ids[:2]), decode(ids[2:4]), decode(ids[4:], final=True)]
    assert "".join(pieces) == "déjà" and "\ufffd" not in "".join(pieces)


# Flags that a program would have ignored, or values it would have failed on late: each is
# now a usage error or one `error:` line, and nothing is written.
BAD_FLAGS = [
    ("train_text.py", ["--data", ""], "--data is empty"),
    ("train_text.py", ["--corpus", "embedded", "--data", "x.txt"], "reads no --data"),
    ("train_text.py", ["--corpus", "enwik8", "--kind", "char"], "--kind applies to"),
    ("train_text.py", ["--corpus", "text", "--tfds", "x"], "--tfds goes with --corpus tfds"),
    ("train_text.py", ["--threads", "100000000000"], "--threads must be"),
    ("evaluate.py", ["--model", "m.keras", "--dynamic-lr", "nan"], "--dynamic-lr must be"),
    ("evaluate.py", ["--model", "m.keras", "--statistics-segments", "0"],
     "--statistics-segments must be"),
    ("generate.py", ["--model", "missing.keras", "--prompt", "x"], "does not exist"),
]


@pytest.mark.parametrize("script,arguments,message", BAD_FLAGS,
                         ids=[" ".join(case[1]) for case in BAD_FLAGS])
def test_flags_that_would_be_ignored_or_fail_late(tmp_path, script, arguments, message):
    done = _script(tmp_path, script, *arguments, "--output", tmp_path / "out") \
        if script.startswith("train") else _script(tmp_path, script, *arguments)
    _assert_one_clear_line(done)
    assert message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arguments,message", [
    (["--rank-ratio", "inf"], "--rank-ratio"), (["--rank-ratio", "0"], "--rank-ratio"),
    (["--worker", ""], "--worker is empty"), (["--project-name", ""], "--project-name is empty"),
    (["--valid-symbols", "2"], "--eval-batch-size"),
])
def test_search_checks_its_space_and_its_data_before_any_trial(tmp_path, arguments, message):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "search.py"),
                           "--directory", str(tmp_path / "t"), "--steps-per-trial", "2",
                           *arguments], env=ENV, capture_output=True, text=True, timeout=300)
    _assert_one_clear_line(done)
    assert message in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "t" / "search" / "trial_0")


def test_rates_from_a_file_that_is_not_a_selection(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"rates": [0.01]}')
    for path, message in ((tmp_path / "list.json", "is not a study's selection.json"),
                          (tmp_path / "other.json", "is not a study's selection.json"),
                          (tmp_path / "none.json", "does not exist")):
        done = _script(tmp_path, "compare_sharing.py", "--output", tmp_path / "s",
                       "--rates-from", path)
        _assert_one_clear_line(done)
        assert message in done.stderr and not (tmp_path / "s").exists()


def test_a_generated_prompt_is_checked_before_anything_is_printed_and_tiny_temperatures(
        tmp_path):
    train(small_corpus(), small_config(steps=2), tmp_path / "run", verbose=0)
    model = tmp_path / "run" / "model.keras"
    done = _script(tmp_path, "generate.py", "--model", model, "--prompt", "It", "--seed",
                   str(2**32))
    _assert_one_clear_line(done)
    assert "`seed`" in done.stderr and done.stdout == ""
    done = _script(tmp_path, "generate.py", "--model", model, "--prompt", "€uro")
    _assert_one_clear_line(done)
    assert done.stdout == ""
    greedy = _script(tmp_path, "generate.py", "--model", model, "--prompt", "It",
                     "--length", "20", "--temperature", "1e-38")
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    assert len(greedy.stdout.rstrip("\n")) == 22


def _marking_imports(tmp_path, body):
    """An environment whose Python first runs `body` (the code of an audit hook
    `mark(event, arguments)`) from a `sitecustomize` module in `tmp_path / "hook"`."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\nimport signal\nimport sys\n\n\n" + body + "\n\nsys.addaudithook(mark)\n")
    return {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook),
                                                                 ENV.get("PYTHONPATH")]))}


def test_interrupting_a_program_while_it_loads_prints_no_traceback(tmp_path):
    # A program answers for a Ctrl-C from its own first lines (before them, Python reports it
    # itself): the moments count from the program's import of the package. A short run, so
    # that a Ctrl-C lost on the way shows as a finished one (it once trained on for hours).
    started = tmp_path / "started"
    env = _marking_imports(tmp_path, (
        "def mark(event, arguments):\n"
        "    if event == 'import' and arguments[0] == 'keras_mulrnn':\n"
        f"        open({str(started)!r}, 'w').close()"))
    data = _data(tmp_path)
    for delay in (0.0, 0.3, 1.0, 2.5, 4.0):
        started.unlink(missing_ok=True)
        process = subprocess.Popen(_command("train_text.py", *_small_flags(
            data, tmp_path / f"o{delay}", "--steps", "400")), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not started.exists():
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.005)
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode in (130, -signal.SIGINT), (delay, process.returncode, stderr)
        assert "Traceback" not in stderr, (delay, stderr[-2000:])
        assert stderr.strip() in ("", "Interrupted.") or "Interrupted" in stderr, stderr


def test_a_ctrl_c_while_the_backend_loads_stops_the_program_once_it_has_loaded(tmp_path):
    # Raised inside TensorFlow's import, the KeyboardInterrupt could be swallowed there (the
    # run went on) or abort the process; now the loading ends, then the program stops. The
    # signal comes as Keras (and with it the backend) starts to load.
    loaded = tmp_path / "loaded"
    env = _marking_imports(tmp_path, (
        "import atexit\n\n\n"
        "def mark(event, arguments):\n"
        "    if event == 'import' and arguments[0] == 'keras':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n\n\n"
        "def record():  # how far the start of the backend went\n"
        f"    open({str(loaded)!r}, 'w').write(str('keras_mulrnn.backend' in sys.modules))\n\n\n"
        "atexit.register(record)"))
    done = subprocess.run(_command("train_text.py", *_small_flags(_data(tmp_path),
                                                                  tmp_path / "o")),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 130 and done.stderr.strip() == "Interrupted.", done.stderr
    assert loaded.read_text() == "True"
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_ctrl_c_whose_exception_a_library_swallows_still_stops_the_program(tmp_path):
    # The case that made the loading test hang: the KeyboardInterrupt of a Ctrl-C raised in
    # code that swallows it, before the run began. The run must not start.
    swallowing = (
        "import os, runpy, signal, sys, time\n"
        "from keras_mulrnn.lm import training\n"
        "checked = training.check_run\n"
        "def check_run(*arguments, **keywords):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(1)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "    return checked(*arguments, **keywords)\n"
        "training.check_run = check_run\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    command = _command("train_text.py", *_small_flags(_data(tmp_path), tmp_path / "o"))
    done = subprocess.run([sys.executable, "-c", swallowing, *command[1:]], env=ENV,
                          capture_output=True, text=True, timeout=300)
    # (The TensorFlow log lines before are the wrapper's own import, not the program's.)
    assert done.returncode == 130 and done.stderr.splitlines()[-1] == "Interrupted.", done.stderr
    assert "Traceback" not in done.stderr
    assert not os.listdir(tmp_path / "o" / "checkpoints")  # no step was trained


def _swallowed_ctrl_c():
    try:
        press_ctrl_c()
        time.sleep(0.2)
    except KeyboardInterrupt:
        pass  # swallowed, as a library's callback would


def test_the_long_loops_of_evaluation_and_generation_stop_at_a_swallowed_ctrl_c(
        monkeypatch):
    corpus = small_corpus()
    model = build_model(corpus.vocabulary, small_config())
    weights = [np.array(w) for w in model.get_weights()]
    with interruption.recording():
        _swallowed_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            evaluate_bpc(model, corpus.test, batch_size=2, seq_len=20)
        with pytest.raises(KeyboardInterrupt):
            generate_after(model, corpus.test[:5], length=10)
        with pytest.raises(KeyboardInterrupt):
            dynamic_evaluation.gradient_statistics(model, corpus.train, 2, 20)
    # Dynamic evaluation: a Ctrl-C lost after two adapting steps stops it at the third, and
    # the weights it adapted are put back.
    segment_step = dynamic_evaluation._segment_step

    def losing_a_ctrl_c(*arguments):
        step, calls = segment_step(*arguments), []

        def counted(*inputs):
            calls.append(1)
            if len(calls) == 2:
                _swallowed_ctrl_c()
            return step(*inputs)
        return counted

    monkeypatch.setattr(dynamic_evaluation, "_segment_step", losing_a_ctrl_c)
    statistics = [np.ones(v.shape, "float32") for v in model.trainable_variables]
    with interruption.recording():
        with pytest.raises(KeyboardInterrupt):
            dynamic_evaluation.dynamic_evaluate(model, corpus.test, statistics, 0.1,
                                                batch_size=2, seq_len=10)
    for got, want in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)
    evaluate_bpc(model, corpus.test, batch_size=2, seq_len=20)  # outside a program: runs


def test_a_swallowed_ctrl_c_is_not_printed_as_an_ignored_exception(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    class Finalised:
        def __del__(self):
            raise KeyboardInterrupt  # as a Ctrl-C landing in a finaliser

    with interruption.recording():
        Finalised()  # no Ctrl-C recorded: reported as ever
        assert len(reported) == 1
        _swallowed_ctrl_c()
        Finalised()
        assert len(reported) == 1
    assert sys.unraisablehook == reported.append


@pytest.mark.parametrize("then", ["returns", "fails"])
def test_a_program_that_swallowed_a_ctrl_c_exits_as_interrupted(then, capsys):
    def main():
        _swallowed_ctrl_c()
        if then == "fails":
            raise KeyError("a state half built")  # not even an error of the package's

    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.guarded(main)
    finally:
        signal.signal(signal.SIGINT, previous)  # the program ignores SIGINT as it exits
    assert stopped.value.code == 130
    assert capsys.readouterr().err.strip() == "Interrupted."


def test_a_swallowed_interruption_of_a_run_is_raised_again_with_what_it_said():
    # The final evaluation's Ctrl-C, lost in a library: the evaluation's next batch raises
    # it again, saying what was kept.
    signals = interruption.RunSignals(callbacks.RunState(),
                                      types.SimpleNamespace(directory="runs/x/checkpoints"))
    signals.phase = "final"
    with interruption.recording():
        with pytest.raises(training.TrainingInterrupted):
            signals._handle(signal.SIGINT, None)  # and lost: caught here
        with pytest.raises(training.TrainingInterrupted, match="during the final evaluation"):
            interruption.check()
    interruption.check()  # outside a program: nothing recorded


def test_a_second_ctrl_c_while_the_backend_loads_stops_at_once():
    code = ("import os, signal, time\n"
            "from keras_mulrnn.lm import interruption\n"
            "with interruption.recording(), interruption.deferred():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(0.2)\n"
            "    print('first recorded', flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(5)\n"
            "    print('went on')\n")
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -signal.SIGINT and done.stdout == "first recorded\n", done


def test_a_deferred_ctrl_c_is_raised_when_the_block_ends_and_forgotten_after_the_program():
    previous = signal.getsignal(signal.SIGINT)
    went_on = False
    with interruption.recording():
        with pytest.raises(KeyboardInterrupt):
            with interruption.deferred():
                press_ctrl_c()
                time.sleep(0.2)  # the handler has run by now, and raised nothing
                went_on = True
        assert went_on and interruption.requested()
    assert not interruption.requested() and signal.getsignal(signal.SIGINT) is previous


def test_the_module_entry_point_without_a_command_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "keras_mulrnn"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error: no command" in done.stderr
    assert subprocess.run([sys.executable, "-m", "keras_mulrnn", "--help"], env=ENV,
                          capture_output=True, text=True, timeout=60).returncode == 0
