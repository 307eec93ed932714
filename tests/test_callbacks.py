"""The training run's callbacks one by one (`keras_mulrnn.lm.callbacks`), driven through
Keras's own `CallbackList` as `fit` drives them, with a stand-in model: what each does at
the end of a step and of an interval, and what none does after a non-finite loss or a stop.
The whole run through them is tested in test_training.py, test_interruption.py and
test_reliability.py."""

import csv
import json
import math

import keras
import numpy as np
import pytest

from keras_mulrnn.lm import callbacks, run_directory
from keras_mulrnn.lm.callbacks import (
    BestModel,
    Checkpointing,
    Progress,
    RunCallbacks,
    RunState,
    StopOnNonFiniteLoss,
    StopOnRequest,
    Validation,
    ValidationCSV,
)
from keras_mulrnn.lm.config import TrainConfig


class FakeModel:
    """What the callbacks touch of a model: `stop_training` (and nothing else, but where
    a test gives more)."""

    def __init__(self):
        self.stop_training = False


class FakeManager:
    """A checkpoint manager that records the saves, or fails them with `error`."""

    directory = "run/checkpoints"

    def __init__(self, error=None):
        self.saved, self.error = [], error

    def save(self, model, meta):
        if self.error is not None:
            raise self.error
        self.saved.append(model.step)

    def steps(self):
        return self.saved


def drive(callback_list, state, first, last, losses=None, model=None):
    """Runs the callbacks over one interval as `fit` does: a batch end per step (with the
    loss of `losses`, 1.0 by default), until a callback stops it, then the epoch end.
    Returns the epoch's logs as the last callback saw them."""
    model = model or FakeModel()
    model.stop_training = False
    state.interval = (first, last)
    seen = {}
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.update(
        logs))
    hooks = keras.callbacks.CallbackList([*callback_list, recorder], model=model)
    for batch in range(last - first):
        model.step = first + batch + 1
        loss = (losses or {}).get(model.step, 1.0)
        hooks.on_train_batch_end(batch, {"loss": loss, "bpc": loss / math.log(2)})
        if model.stop_training:
            break
    hooks.on_epoch_end(0, {"loss": 1.0, "bpc": 1.0 / math.log(2)})
    return seen


def test_a_non_finite_loss_stops_the_interval_at_its_step():
    for bad in (float("nan"), float("inf"), float("-inf")):
        state = RunState()
        model = FakeModel()
        drive([StopOnNonFiniteLoss(state)], state, 10, 20, losses={13: bad}, model=model)
        assert state.nonfinite_step == 13 and model.stop_training and state.halted
    state = RunState()
    drive([StopOnNonFiniteLoss(state)], state, 0, 5)
    assert state.nonfinite_step is None and not state.halted


def test_validation_puts_its_bpc_and_step_in_the_logs_for_the_callbacks_after_it(
        monkeypatch):
    calls = []

    def evaluate(model, symbols, rows, seq_len, jit_compile):
        calls.append((symbols, rows, seq_len, jit_compile))
        return 2.5, 100

    monkeypatch.setattr(callbacks.validation, "evaluate_bpc", evaluate)
    state, config = RunState(), TrainConfig(eval_batch_size=3, seq_len=7, jit_compile=False)
    logs = drive([Validation(state, "valid symbols", config)], state, 4, 8)
    assert calls == [("valid symbols", 3, 7, False)]
    assert logs["val_bpc"] == 2.5 and logs["step"] == 8
    assert state.eval_seconds > 0
    # After a non-finite loss, nothing is validated.
    state = RunState()
    logs = drive([StopOnNonFiniteLoss(state), Validation(state, "v", config)], state, 0, 4,
                 losses={2: float("nan")})
    assert "val_bpc" not in logs and len(calls) == 1


def test_the_csv_log_writes_one_row_per_validation_and_keeps_the_rows_up_to_a_resume(
        tmp_path):
    state = RunState()
    path = tmp_path / run_directory.LOG
    writer = ValidationCSV(state, str(path))
    writer.log.keep_until(0)  # a new run: an empty log with its header
    for first, last, bpc in ((0, 4, 3.0), (4, 8, 2.5), (8, 10, 2.25)):
        state.interval = (first, last)
        keras.callbacks.CallbackList([writer], model=FakeModel()).on_epoch_end(
            first // 4, {"loss": 1.5, "bpc": 2.0, "val_bpc": bpc, "step": last})
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["val_bpc"], r["loss_steps"]) for r in rows] == [
        ("4", "3.0", "4"), ("8", "2.5", "4"), ("10", "2.25", "2")]
    writer.log.keep_until(8)  # resumed from the checkpoint of step 8
    assert [r["step"] for r in writer.log.rows()] == ["4", "8"]
    # An interval that a stop cut short writes no row.
    state.interrupted_at = 9
    keras.callbacks.CallbackList([writer], model=FakeModel()).on_epoch_end(
        2, {"loss": 1.0, "val_bpc": 2.0})
    assert [r["step"] for r in writer.log.rows()] == ["4", "8"]


def test_the_best_model_is_saved_only_when_a_validation_beats_every_earlier_one(
        tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(callbacks.best_model.files, "save_model",
                        lambda model, path: saved.append(path))
    (tmp_path / run_directory.BEST_INFO).write_text(json.dumps({"val_bpc": 2.4, "step": 8}))
    state = RunState()
    best = BestModel(state, str(tmp_path))  # a resumed run: the best so far is 2.4
    assert best.best == 2.4
    for step, bpc in ((12, 2.5), (16, 2.3), (20, 2.35)):
        state.interval = (step - 4, step)
        keras.callbacks.CallbackList([best], model=FakeModel()).on_epoch_end(
            0, {"val_bpc": bpc, "step": step})
    assert saved == [str(tmp_path / run_directory.BEST)]
    assert json.loads((tmp_path / run_directory.BEST_INFO).read_text()) == {
        "val_bpc": 2.3, "step": 16}
    assert best.best == 2.3
    # A damaged record counts as none: the next validation writes a new one.
    (tmp_path / run_directory.BEST_INFO).write_text("{not json")
    assert BestModel(RunState(), str(tmp_path)).best is None


def test_checkpoints_every_n_steps_at_every_validation_and_at_a_stop():
    state, manager = RunState(), FakeManager()
    saver = Checkpointing(state, manager, {}, every=4)
    drive([saver], state, 0, 8)
    drive([saver], state, 8, 14)
    # Every fourth step within an interval, and its last step (the validation's), once.
    assert manager.saved == [4, 8, 12, 14]
    # A stop request: the step it stops at, by the stop callback after it.
    state, manager = RunState(), FakeManager()
    saver = Checkpointing(state, manager, {}, every=None)

    class Request(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            state.stop_requested = batch == 1  # during the second step

    drive([Request(), saver, StopOnRequest(state)], state, 0, 8)
    assert manager.saved == [2] and state.interrupted_at == 2
    # A request that lands after the step's checkpoint callback: stopped at the next step,
    # whose checkpoint is written for it, never at a step without its checkpoint.
    state, manager = RunState(), FakeManager()

    class LateRequest(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            state.stop_requested = state.stop_requested or batch == 1

    drive([Checkpointing(state, manager, {}, every=None), LateRequest(),
           StopOnRequest(state)], state, 0, 8)
    assert manager.saved == [3] and state.interrupted_at == 3
    # A non-finite loss: nothing is checkpointed from that step on.
    state, manager = RunState(), FakeManager()
    drive([StopOnNonFiniteLoss(state), Checkpointing(state, manager, {}, every=1)], state,
          0, 8, losses={3: float("nan")})
    assert manager.saved == [1, 2]


def test_a_checkpoint_that_cannot_be_written_is_warned_about_and_training_goes_on(
        monkeypatch):
    monkeypatch.setattr(callbacks.checkpointing, "model_step", lambda model: model.step)
    state, manager = RunState(), FakeManager(error=OSError(28, "No space left on device"))
    saver = Checkpointing(state, manager, {}, every=None)
    model = FakeModel()
    with pytest.warns(UserWarning, match="Could not write the checkpoint of step 4"):
        drive([saver], state, 0, 4, model=model)
    assert not model.stop_training and len(saver.failures) == 1
    assert "Training goes on" in saver.failures[0]


def test_a_stop_request_stops_at_the_end_of_the_step_or_of_the_validation():
    state, manager = RunState(), FakeManager()
    state.stop_requested = True
    model = FakeModel()
    drive([Checkpointing(state, manager, {}, every=None), StopOnRequest(state)], state, 4, 8,
          model=model)
    assert state.interrupted_at == 5 and model.stop_training and manager.saved == [5]
    # Alone (no checkpoint written for the request), it never stops a step.
    state = RunState()
    state.stop_requested = True
    drive([StopOnRequest(state)], state, 4, 8, model=model)
    assert state.interrupted_at == 8  # at the validation's end (always checkpointed)
    # A request that came after the interval's last step: at the validation's end.
    state = RunState()
    stopper = StopOnRequest(state)
    state.interval = (4, 8)
    keras.callbacks.CallbackList([stopper], model=model).on_epoch_end(1, {})
    assert state.interrupted_at is None
    state.stop_requested = True
    keras.callbacks.CallbackList([stopper], model=model).on_epoch_end(1, {})
    assert state.interrupted_at == 8


def test_the_progress_says_steps_a_to_b_of_n_once_per_validation(capsys):
    state = RunState()
    progress = Progress(state, total=10, verbose=2)
    progress.start(0)
    for first, last in ((0, 4), (4, 8), (8, 10)):
        state.interval = (first, last)
        keras.callbacks.CallbackList([progress], model=FakeModel()).on_epoch_end(
            0, {"loss": np.float32(1.25), "bpc": 1.8, "val_bpc": 2.0})
    progress.end()
    assert capsys.readouterr().out.splitlines() == [
        f"steps {a}–{b} of 10: loss 1.2500, bpc 1.8000, val_bpc 2.0000"
        for a, b in ((1, 4), (5, 8), (9, 10))]
    silent = Progress(state, total=10, verbose=0)
    silent.start(0)
    keras.callbacks.CallbackList([silent], model=FakeModel()).on_epoch_end(0, {"loss": 1.0})
    assert capsys.readouterr().out == ""


def test_the_run_orders_its_callbacks_as_their_dependencies_require(tmp_path):
    state = RunState()
    run = RunCallbacks(state, valid=None, config=TrainConfig(), output_dir=str(tmp_path),
                       manager=FakeManager(), meta={}, verbose=0)
    kinds = [type(callback) for callback in run.ordered()]
    assert kinds == [StopOnNonFiniteLoss, Validation, ValidationCSV, BestModel, Checkpointing,
                     Progress, StopOnRequest]
    assert run.csv_log.log.path == str(tmp_path / run_directory.LOG)
    # One state for all of them.
    assert all(callback.state is state for callback in run.ordered())


def test_the_interval_steps_of_a_run():
    state = RunState()
    state.interval = (8, 10)
    assert [state.step(batch) for batch in range(4)] == [9, 10, 10, 10]


def test_a_non_finite_loss_and_a_stop_request_at_one_step_leave_the_roll_back_to_the_run():
    state, manager = RunState(), FakeManager()
    state.stop_requested = True
    model = FakeModel()
    hooks = [StopOnNonFiniteLoss(state), Checkpointing(state, manager, {}, every=1),
             StopOnRequest(state)]
    drive(hooks, state, 0, 4, losses={1: float("nan")}, model=model)
    # Nothing checkpointed, no interruption recorded: the run sees the NaN first.
    assert manager.saved == [] and state.interrupted_at is None
    assert state.nonfinite_step == 1 and model.stop_training


def test_nothing_is_saved_or_logged_for_an_interval_that_a_stop_cut_short(tmp_path,
                                                                        monkeypatch):
    saved = []
    monkeypatch.setattr(callbacks.best_model.files, "save_model",
                        lambda model, path: saved.append(path))
    state = RunState()
    state.interval, state.interrupted_at = (0, 8), 5
    best = BestModel(state, str(tmp_path))
    keras.callbacks.CallbackList([best], model=FakeModel()).on_epoch_end(
        0, {"val_bpc": 1.0, "step": 8})
    assert saved == [] and best.best is None


def test_the_progress_bar_counts_the_runs_steps_across_intervals(monkeypatch, capsys):
    monkeypatch.setattr(callbacks.progress.sys.stdout, "isatty", lambda: True)
    state = RunState()
    progress = Progress(state, total=8, verbose=1)
    progress.start(2)  # a run resumed at step 2
    assert progress.bar is not None and progress.bar._seen_so_far == 2
    drive([progress], state, 2, 4)
    assert progress.bar._seen_so_far == 4
    out = capsys.readouterr().out
    assert "steps 3–4 of 8: loss 1.0000" in out and out.count("steps ") == 1
    drive([progress], state, 4, 8)  # the last validation: the bar says it, no line
    progress.end()
    assert progress.bar._seen_so_far == 8
    assert "steps 5–8" not in capsys.readouterr().out
