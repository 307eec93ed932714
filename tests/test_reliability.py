"""Training that survives being killed, bad data and bad arguments, losing nothing."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mulrnn as km
from keras_mulrnn import backend
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.data import corpora, load_ptb, load_text
from keras_mulrnn.lm.training import train
from helpers import (TEXT, AtStep, press_ctrl_c, small_config, small_corpus,
                     tiny_model)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_text.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def script_command(data, output, *extra):
    return [sys.executable, SCRIPT, "--data", str(data), "--output", str(output),
            "--deterministic", "--units", "24", "--rank", "12", "--embedding-dim", "8",
            "--batch-size", "4", "--seq-len", "25", "--steps", "60", "--eval-every", "20",
            "--checkpoint-every", "1", "--valid-symbols", "400", "--eval-batch-size", "2",
            "--test-batch-size", "4", "--recurrent-dropout", "0.1", "--sample-length", "10",
            "--learning-rate", "0.01", *extra]


def final_weights(output):
    return km.load_model(os.path.join(output, "model.keras")).get_weights()


@pytest.fixture(scope="session")  # once per worker, though its slow user runs first
def script_run(tmp_path_factory):
    """An uninterrupted scripted run: the reference for every interrupted one."""
    directory = tmp_path_factory.mktemp("scripted")
    data = directory / "austen.txt"
    data.write_text(TEXT)
    started = time.monotonic()
    done = subprocess.run(script_command(data, directory / "whole"), env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return data, final_weights(directory / "whole"), time.monotonic() - started


def _assert_same(weights, reference):
    assert len(weights) == len(reference)
    for got, want in zip(weights, reference):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_sigkill_at_five_moments_then_resume(script_run, tmp_path):
    data, reference, duration = script_run
    rng = np.random.default_rng(0)
    # Four random moments over the run (import and start-up included), and one timed to
    # land inside a checkpoint write.
    moments = sorted(rng.uniform(0.3, 0.95, 4) * duration) + ["during-checkpoint-write"]
    for index, moment in enumerate(moments):
        output = tmp_path / f"killed{index}"
        process = subprocess.Popen(script_command(data, output), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if moment == "during-checkpoint-write":
            deadline = time.monotonic() + 300
            checkpoints = output / "checkpoints"
            while time.monotonic() < deadline and process.poll() is None:
                if checkpoints.is_dir() and any(
                        name.startswith(".tmp-") for name in os.listdir(checkpoints)):
                    break
                time.sleep(0.0005)
        else:
            time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        resumed = subprocess.run(script_command(data, output, "--resume"), env=ENV,
                                 capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, (moment, resumed.stderr[-3000:])
        _assert_same(final_weights(output), reference)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_exits_cleanly(script_run, tmp_path, signum):
    data, reference, _ = script_run
    output = tmp_path / "signalled"
    process = subprocess.Popen(script_command(data, output), env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    log = output / "log.csv"
    deadline = time.monotonic() + 300
    # Wait until training runs: the log's first row (below its header) is the first epoch.
    while not (log.exists() and len(log.read_text().splitlines()) > 1) and (
            time.monotonic() < deadline):
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Interrupted at step" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    step = int(stderr.split("Interrupted at step ")[1].split()[0])
    assert 20 <= step < 60
    assert CheckpointManager(output / "checkpoints").steps()[-1] == step
    resumed = subprocess.run(script_command(data, output, "--resume"), env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from step {step}" in resumed.stdout
    _assert_same(final_weights(output), reference)


def _checkpointed_run(tmp_path, **overrides):
    config = small_config(steps=8, eval_every=4, checkpoint_every=2, **overrides)
    train(small_corpus(), config, tmp_path, verbose=0)
    return config


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = _checkpointed_run(tmp_path)
    manager = CheckpointManager(tmp_path / "checkpoints")
    newest, previous = manager.steps()[-1], manager.steps()[-2]
    weights_file = os.path.join(manager.path(newest), "model.weights.h5")
    with open(weights_file, "r+b") as handle:
        handle.truncate(os.path.getsize(weights_file) // 2)
    with pytest.warns(UserWarning, match=f"ckpt-0*{newest}.*could not be used.*set aside"):
        train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    # It resumed from the previous checkpoint and trained the missing steps again.
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps_this_run"] == config.steps - previous


def test_full_disk_keeps_the_previous_checkpoint_and_reports_it(tmp_path, monkeypatch):
    config = small_config(steps=8, eval_every=4, checkpoint_every=2)
    original = keras.Model.save_weights
    calls = {"count": 0}

    def failing(self, path, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] >= 3:  # the third checkpoint write onwards: the disk is full
            raise OSError(28, "No space left on device")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", failing)
    with pytest.warns(UserWarning, match="No space left on device.*step 4\\) is intact"):
        results = train(small_corpus(), config, tmp_path, verbose=0)
    assert results["checkpoint_failures"]
    manager = CheckpointManager(tmp_path / "checkpoints")
    assert manager.steps() == [2, 4]
    assert not [n for n in os.listdir(manager.directory) if n.startswith(".tmp-")]
    monkeypatch.setattr(keras.Model, "save_weights", original)
    model = build_model(small_corpus().vocabulary, config)
    model.start_carry(config.batch_size, backend.make_distribution())
    assert manager.restore_latest(model)["step"] == 4


class _InjectNaN(keras.callbacks.Callback):
    """Makes the loss of step `step` (1-based) non-finite by poisoning the embedding."""

    def __init__(self, step):
        super().__init__()
        self.step, self.done = step, False

    def on_train_batch_begin(self, batch, logs=None):
        if not self.done and int(self.model.optimizer.iterations.numpy()) == self.step - 1:
            embedding = self.model.embedding.embeddings
            embedding.assign(tf.fill(embedding.shape, float("nan")))
            self.done = True


def test_nan_stops_at_its_step_with_the_last_good_checkpoint_intact(tmp_path, capsys):
    """The checkpoint of step 6 holds the weights that step 7's loss saw, and replaying
    step 7 from them gives the same loss whatever the learning rate: only older checkpoints
    are good, and step 6's is discarded so that nothing returns to it."""
    config = small_config(steps=12, eval_every=4, checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"at step 7; the last good checkpoint "
                                                 r"\(step 4\)"):
        train(small_corpus(), config, tmp_path, verbose=0, extra_callbacks=[_InjectNaN(7)])
    assert "Invalid loss" not in capsys.readouterr().out  # ours is the one message
    manager = CheckpointManager(tmp_path / "checkpoints")
    assert manager.steps()[-1] == 4
    model = build_model(small_corpus().vocabulary, config)
    model.start_carry(config.batch_size, backend.make_distribution())
    manager.restore_latest(model)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    # The advice in the message works: a roll-back budget is an operational setting that a
    # resumed run may change, and the run then finishes from the last good checkpoint.
    config.nan_rollbacks, config.checkpoint_every = 1, 3
    results = train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    assert results["steps"] == 12 and np.isfinite(results["test_bpc"])


def test_nan_rollback_lowers_the_learning_rate_and_finishes(tmp_path):
    config = small_config(steps=12, eval_every=4, checkpoint_every=2, nan_rollbacks=1)
    results = train(small_corpus(), config, tmp_path, verbose=0,
                    extra_callbacks=[_InjectNaN(7)])
    assert results["nan_rollbacks"] == 1 and results["steps"] == 12
    assert np.isfinite(results["test_bpc"])
    meta = json.loads((tmp_path / "checkpoints" / "ckpt-000000012" / "meta.json").read_text())
    assert meta["learning_rate_scale"] == 0.5


def test_a_model_file_with_a_lambda_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="Refused to load.*safe_mode=False"):
        km.load_model(path)


def test_memory_stays_flat(tmp_path):
    """Resident memory after 2,000 steps is within 5% of that after 200 (no leak from the
    data pipeline, the callbacks or generation)."""

    def resident_mib():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    class Probe(keras.callbacks.Callback):
        readings = {}

        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            if step % 100 == 0:
                km.generate(self.model, "It is", length=20, seed=step)
            if step in (200, 2000):
                Probe.readings[step] = resident_mib()

    config = small_config(steps=2000, eval_every=500, checkpoint_every=250, units=8, rank=4,
                          seq_len=10, steps_per_execution=1)
    train(small_corpus(), config, tmp_path, verbose=0, extra_callbacks=[Probe()])
    assert Probe.readings[2000] <= 1.05 * Probe.readings[200], Probe.readings


# ---------------------------------------------------------------- bad inputs, table-driven

def _text_file(tmp_path, text=TEXT, name="data.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _run_script(tmp_path, *arguments):
    return subprocess.run([sys.executable, SCRIPT, *map(str, arguments)], env=ENV,
                          capture_output=True, text=True, timeout=300)


def _train(tmp_path, corpus=None, **overrides):
    return train(corpus or small_corpus(), small_config(**overrides), tmp_path / "out",
                 verbose=0)


def _resume_other_vocabulary(tmp_path):
    train(small_corpus(), small_config(steps=4), tmp_path / "out", verbose=0)
    shutil.rmtree(tmp_path / "out" / "tensorboard", ignore_errors=True)
    other = corpora.corpus_from_text("other", TEXT.upper(), (0.8, 0.1, 0.1))
    train(other, small_config(steps=4), tmp_path / "out", resume=True, verbose=0)


BAD_INPUTS = [
    ("missing data file", lambda t: load_text(t / "nope.txt"),
     FileNotFoundError, "does not exist"),
    ("directory as data file", lambda t: load_text(t), IsADirectoryError, "is a directory"),
    ("empty data file", lambda t: load_text(_text_file(t, "", "empty.txt")),
     ValueError, "is empty"),
    ("non-UTF-8 in char mode",
     lambda t: (t / "bin.txt").write_bytes(b"ok\xff\xfe") and load_text(t / "bin.txt"),
     ValueError, "not valid UTF-8"),
    ("PTB directory missing", lambda t: load_ptb(t / "ptb"), FileNotFoundError,
     "does not exist"),
    ("PTB directory a file", lambda t: load_ptb(_text_file(t, "abc", "ptb")),
     NotADirectoryError, "is not a directory"),
    ("corpus shorter than one batch",
     lambda t: _train(t, corpora.corpus_from_text("tiny", "abc" * 30, (0.8, 0.1, 0.1))),
     ValueError, "fewer than the"),
    ("prompt symbol outside the vocabulary", lambda t: km.generate(tiny_model(), "It is @"),
     ValueError, "'@'.*never saw"),
    ("empty prompt", lambda t: km.generate(tiny_model(), ""), ValueError, "prompt is empty"),
    ("checkpoint with other settings",
     lambda t: (_train(t, steps=4), train(small_corpus(), small_config(steps=4, units=20),
                                          t / "out", resume=True, verbose=0)),
     ValueError, "units: checkpoint 16, now 20"),
    ("checkpoint with another vocabulary", _resume_other_vocabulary, ValueError,
     "different vocabulary"),
    ("negative learning rate", lambda t: _train(t, learning_rate=-1.0), ValueError,
     "learning_rate"),
    ("zero batch size", lambda t: _train(t, batch_size=0), ValueError, "batch_size"),
    ("unknown family", lambda t: _train(t, family="lstmm"), ValueError, "family='lstmm'"),
    ("unknown parametrization", lambda t: _train(t, parametrization="halfway"), ValueError,
     "sharing='halfway'"),
    ("dropout of 1", lambda t: _train(t, recurrent_dropout=1.0), ValueError,
     "recurrent_dropout"),
    ("output is a file",
     lambda t: train(small_corpus(), small_config(), _text_file(t, "x", "file"), verbose=0),
     NotADirectoryError, "is a file"),
    ("output not writable",
     lambda t: train(small_corpus(), small_config(), "/proc/keras_mulrnn_out", verbose=0),
     PermissionError, "not writable"),
    ("model file that does not exist", lambda t: km.load_model(t / "model.keras"),
     FileNotFoundError, "does not exist"),
    ("data file in a loop of symbolic links", lambda t: load_text(_link_loop(t)),
     OSError, "loop of symbolic links"),
    ("model file a dangling symbolic link",
     lambda t: (os.symlink(t / "gone.keras", t / "link.keras"),
                km.load_model(t / "link.keras")),
     FileNotFoundError, "symbolic link to .*gone.keras.*which does not exist"),
    ("empty model file", lambda t: km.load_model(_text_file(t, "", "empty.txt")),
     ValueError, "is empty. Give a file with a model that training saved"),
    ("PTB file of words", lambda t: load_ptb(_ptb_of_words(t)), ValueError,
     "holds 'the', more than one character between spaces"),
    ("model file whose vocabulary was edited", lambda t: km.load_model(_edited_model(t)),
     ValueError, "single characters, not 'It'"),
    ("output a dangling symbolic link",
     lambda t: (os.symlink(t / "gone" / "run", t / "link.keras"),
                train(small_corpus(), small_config(), t / "link.keras", verbose=0)),
     FileNotFoundError, "--output directory .* is a symbolic link to .*gone/run.*does not exist"),
    ("PTB directory in a loop of symbolic links", lambda t: load_ptb(_link_loop(t)), OSError,
     "Penn Treebank directory .* is a loop of symbolic links"),
    ("output path with bytes that are not UTF-8",
     lambda t: train(small_corpus(), small_config(), os.path.join(
         str(t), os.fsdecode(b"run\xff")), verbose=0),
     ValueError, "holds bytes that are not UTF-8"),
]


def _edited_model(tmp_path):
    """A model file whose vocabulary holds a symbol of two characters."""
    path = tmp_path / "edited.keras"
    tiny_model().save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = members["config.json"].decode()
    assert '"symbols": ["\\n", " ", ' in config, config[:2000]
    members["config.json"] = config.replace('"symbols": ["\\n", " ", ',
                                            '"symbols": ["\\n", " ", "It", ', 1).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _link_loop(tmp_path):
    os.symlink(tmp_path / "b.txt", tmp_path / "a.txt")
    os.symlink(tmp_path / "a.txt", tmp_path / "b.txt")
    return tmp_path / "a.txt"


def _ptb_of_words(tmp_path):
    (tmp_path / "ptb").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "ptb" / f"ptb.char.{split}.txt").write_text("t h e _ c a t\nthe cat\n")
    return tmp_path / "ptb"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input(tmp_path, case):
    _, action, error, message = case
    before = set(os.listdir(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=message):
            action(tmp_path)
    if "checkpoint" not in case[0]:  # those two make a real first run on purpose
        created = set(os.listdir(tmp_path)) - before
        ours = ("bin.txt", "empty.txt", "file", "ptb", "a.txt", "b.txt", "link.keras",
                "edited.keras")
        leftover = [name for name in created if name not in ours]
        assert not leftover, f"partial output left behind: {leftover}"


@pytest.mark.parametrize("arguments,message", [
    (["--steps", "0"], "steps"),
    (["--units", "-5"], "units"),
    (["--family", "transformer"], "family='transformer'"),
])
def test_bad_script_flags_fail_with_a_message(tmp_path, arguments, message):
    data = _text_file(tmp_path)
    done = _run_script(tmp_path, "--data", data, "--output", tmp_path / "out", *arguments)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("per_execution", [1, 2])
def test_a_roll_back_never_returns_to_the_checkpoint_whose_weights_failed(
        tmp_path, monkeypatch, per_execution):
    """With a checkpoint every step, the newest checkpoint before a non-finite loss holds
    the ruined weights: a roll-back goes to the one before it (it used to return to the
    ruined one until the roll-backs ran out), also when the loss is seen once per execution
    of several steps."""
    original = CheckpointManager.save

    def ruin_step_6(self, model, meta):
        if int(model.optimizer.iterations.numpy()) == 6 and not ruin_step_6.done:
            ruin_step_6.done = True  # step 6's update ruined the weights
            embedding = model.embedding.embeddings
            embedding.assign(tf.fill(embedding.shape, float("nan")))
        return original(self, model, meta)

    ruin_step_6.done = False
    monkeypatch.setattr(CheckpointManager, "save", ruin_step_6)
    config = small_config(steps=12, eval_every=4, checkpoint_every=1, nan_rollbacks=2,
                          steps_per_execution=per_execution)
    results = train(small_corpus(), config, tmp_path, verbose=0)
    assert results["nan_rollbacks"] == 1 and results["steps"] == 12
    assert np.isfinite(results["test_bpc"])


def test_the_advice_after_a_nan_before_any_checkpoint_works(tmp_path):
    """A non-finite loss before the first checkpoint: the message's advice (--resume with a
    roll-back budget) starts again from step 0, which it then checkpoints, and rolls back
    to it (it used to find nothing to roll back to)."""
    config = small_config(steps=8, eval_every=8, checkpoint_every=None)
    with pytest.raises(FloatingPointError, match="Run it again from step 0.*--resume "
                                                 "--nan-rollbacks N"):
        train(small_corpus(), config, tmp_path, verbose=0, extra_callbacks=[_InjectNaN(3)])
    config.nan_rollbacks = 1
    results = train(small_corpus(), config, tmp_path, resume=True, verbose=0,
                    extra_callbacks=[_InjectNaN(3)])
    assert results["nan_rollbacks"] == 1 and results["steps"] == 8


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A small finished run, copied by the tests that damage it."""
    directory = tmp_path_factory.mktemp("finished")
    config = small_config(steps=4, eval_every=2, sample_length=5)
    results = train(small_corpus(), config, directory, verbose=0)
    return config, {**results, "directory": directory}


def test_a_damaged_results_file_is_written_again_by_resume(finished_run, tmp_path):
    config, first = finished_run
    shutil.copytree(first["directory"], tmp_path, dirs_exist_ok=True)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.warns(UserWarning, match="results.json.*damaged"):
        again = train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    assert again["test_bpc"] == pytest.approx(first["test_bpc"], rel=1e-6)
    assert json.loads((tmp_path / "results.json").read_text())["test_bpc"] == again["test_bpc"]


def test_a_run_that_ends_at_a_uniform_guess_is_recorded_as_diverged(tmp_path):
    """Divergence without a NaN: a rate far too high ends no better than log2(V) bits. The
    run's files are complete (it exits as finished) but results.json and a warning say so;
    a run that learned is not flagged."""
    corpus = small_corpus()
    uniform = np.log2(len(corpus.vocabulary))
    with pytest.warns(UserWarning, match="no better than a uniform guess"):
        wild = train(corpus, small_config(steps=24, learning_rate=5.0, clipnorm=None),
                     tmp_path / "wild", verbose=0)
    assert wild["valid_bpc"] >= uniform - 0.01 and wild["diverged"] is True
    assert json.loads((tmp_path / "wild" / "results.json").read_text())["diverged"] is True
    assert wild["uniform_bpc"] == pytest.approx(uniform)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calm = train(corpus, small_config(steps=24), tmp_path / "calm", verbose=0)
    assert not [w for w in caught if "uniform guess" in str(w.message)]
    assert calm["valid_bpc"] < uniform - 0.01 and calm["diverged"] is False


def test_a_changed_sample_length_on_a_finished_run_writes_a_new_sample(finished_run, tmp_path,
                                                                       capsys):
    config, first = finished_run
    shutil.copytree(first["directory"], tmp_path, dirs_exist_ok=True)
    assert len(first["sample"]) == 5
    config = dataclasses.replace(config, sample_length=12)  # a resumed run may change it
    again = train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    assert "asks for another" in capsys.readouterr().out
    assert len(again["sample"]) == 12 and again["sample"].startswith(first["sample"])
    assert again["test_bpc"] == pytest.approx(first["test_bpc"], rel=1e-6)
    assert json.loads((tmp_path / "results.json").read_text())["sample"] == again["sample"]


@pytest.mark.parametrize("damage", [
    lambda path: path.write_text(path.read_text().replace('"test_bpc": ',
                                                          '"test_bpc": NaN, "x": ', 1)),
    lambda path: path.write_text(path.read_text().replace('"steps": ', '"steps": "six", "x": ', 1)),
    lambda path: (path.unlink(), os.mkfifo(path)),
], ids=["NaN figure", "text for a number", "a pipe"])
def test_a_finished_runs_results_with_impossible_figures_are_evaluated_again(
        finished_run, tmp_path, damage):
    config, first = finished_run
    shutil.copytree(first["directory"], tmp_path, dirs_exist_ok=True)
    damage(tmp_path / "results.json")
    with pytest.warns(UserWarning, match="results.json.*damaged"):
        again = train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    assert again["test_bpc"] == pytest.approx(first["test_bpc"], rel=1e-6)
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 4


@pytest.mark.parametrize("record", ['{"val_bpc": -Infinity, "step": 2}', "pipe"])
def test_a_damaged_best_record_is_ignored_and_never_copied(tmp_path, record):
    """best.json's figure becomes results.json's `best_valid_bpc_during_training`: a
    non-finite one (or a pipe in its place, which blocked the run) is no record at all."""
    config = small_config(steps=4, eval_every=2, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(small_corpus(), config, tmp_path, verbose=0,
              extra_callbacks=[AtStep(2, press_ctrl_c)])
    best = tmp_path / "best.json"
    best.unlink()
    if record == "pipe":
        os.mkfifo(best)
    else:
        best.write_text(record)
    results = train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    assert np.isfinite(results["best_valid_bpc_during_training"])
    json.loads((tmp_path / "results.json").read_text(),
               parse_constant=lambda name: pytest.fail(f"{name} in results.json"))


def test_a_log_that_is_not_text_is_set_aside_and_the_run_resumes(tmp_path):
    config = small_config(steps=6, eval_every=2, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(small_corpus(), config, tmp_path, verbose=0,
              extra_callbacks=[AtStep(3, press_ctrl_c)])
    (tmp_path / "log.csv").write_bytes(b"\xff\xfe\x00 not a log")
    with pytest.warns(UserWarning, match="log.csv' is damaged .*set aside as "
                                         "log.csv.damaged; the log starts again"):
        results = train(small_corpus(), config, tmp_path, resume=True, verbose=0)
    assert results["steps"] == 6
    assert (tmp_path / "log.csv.damaged").read_bytes() == b"\xff\xfe\x00 not a log"
    rows = (tmp_path / "log.csv").read_text().splitlines()
    # What the damaged log held is lost; the validations after the resume are logged.
    assert rows[0] == "epoch,step,loss,bpc,val_bpc,loss_steps" and rows[-1].startswith("2,6,")
