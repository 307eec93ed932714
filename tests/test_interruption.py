"""Ctrl-C and SIGTERM (`lm/interruption.py`): at every moment of a run or a program, they
stop it cleanly, lose nothing, and are never lost."""

import array
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import termios
import time
import types

import numpy as np
import pytest

from keras_mulrnn.analysis import dynamic_evaluation
from keras_mulrnn.lm import callbacks, cli, interruption, training
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.generation import generate_after
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.lm.training import train

from helpers import (AtStep, ENV, LONG, TEXT, data_file, press_ctrl_c, program, run_program,
                     small_config, small_corpus, small_flags, start_training_program,
                     wait_for_line)


@pytest.mark.slow
def test_signals_at_every_moment_stop_cleanly_and_lose_nothing(tmp_path):
    # Validation and the final evaluation score every symbol one by one: seconds each.
    data = data_file(tmp_path, TEXT * 60)
    full = ["--valid-symbols", "none", "--eval-batch-size", "1", "--test-batch-size", "1"]

    # Two SIGINTs in quick succession: stopped at once, with a message, no traceback.
    output = tmp_path / "twice"
    process = start_training_program(tmp_path, data, output, *full)
    wait_for_line(process, "steps 1–4 of 12")
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "SIGINT again: stopped at once" in stderr or "Interrupted at step" in stderr
    resumed = run_program(tmp_path, "train_text.py", *small_flags(data, output, *full,
                                                                  "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # SIGTERM during the last validation: the run stops there with its checkpoint, exit 130.
    output = tmp_path / "last-validation"
    process = start_training_program(tmp_path, data, output, *full, "--checkpoint-every", "1")
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
        process = start_training_program(tmp_path, data, output, *full)
        wait_for_line(process, "steps 9–12 of 12")
        time.sleep(0.2)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, (stdout[-2000:], stderr[-2000:])
        # On a loaded machine the signal may land just before the final evaluation, as
        # `fit` returns: the run stops there instead (the in-process test above aims there).
        assert ("during the final evaluation" in stderr
                or "Interrupted at step 12 of 12" in stderr) and "Traceback" not in stderr
        assert not (output / "results.json").exists()
        resumed = run_program(tmp_path, "train_text.py", *small_flags(data, output, *full,
                                                                      "--resume"))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads((output / "results.json").read_text())["steps_this_run"] == 0


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
        program("train_text.py", *small_flags(data_file(tmp_path, LONG), output, "--steps",
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
    data = data_file(tmp_path)
    for delay in (0.0, 0.3, 1.0, 2.5, 4.0):
        started.unlink(missing_ok=True)
        process = subprocess.Popen(program("train_text.py", *small_flags(
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
    done = subprocess.run(program("train_text.py", *small_flags(data_file(tmp_path),
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
    command = program("train_text.py", *small_flags(data_file(tmp_path), tmp_path / "o"))
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
