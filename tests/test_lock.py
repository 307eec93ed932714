"""One run per directory (`lm/lock.py`): a second run is refused, a dead run's lock is not."""

import json
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

from keras_mulrnn.lm import lock
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.training import train

from helpers import (ENV, LONG, assert_one_clear_line, data_file, program, run_program,
                     small_config, small_corpus, small_flags)


def test_two_runs_aimed_at_one_directory(tmp_path):
    data = data_file(tmp_path, LONG)
    output = tmp_path / "run"
    # The first run is long, so that it still holds the directory whenever the second one
    # (seconds of imports later) gets there; it is stopped once the second has been refused.
    first = subprocess.Popen(program("train_text.py", *small_flags(data, output, "--steps",
                                                                   "100000")),
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    log = output / "log.csv"
    while not log.exists() or len(log.read_text().splitlines()) < 2:  # it is training
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = run_program(tmp_path, "train_text.py", *small_flags(data, output, "--seed", "5"))
    assert_one_clear_line(second)
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
