"""Training on several devices and machines with `tf.distribute`.

Each scenario runs in processes of its own: a process's logical devices and its cluster are
fixed when it starts.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_mulrnn import backend
from keras_mulrnn.lm.config import TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")  # run as subprocesses
ROOT = os.path.dirname(HERE)


def _env(**extra):
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _weights(arrays, prefix):
    return [arrays[k] for k in sorted((k for k in arrays.files if k.startswith(prefix)),
                                      key=lambda k: int(k.rsplit("_", 1)[1]))]


def test_mirrored_on_two_logical_cpus_equals_one_device(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(PROGRAMS, "distributed_runs.py"),
                           "mirrored", str(tmp_path)], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = np.load(tmp_path / "mirrored.npz")
    one_device = _weights(runs, "default_weight_")
    assert len(runs["default_losses"]) == 8
    np.testing.assert_allclose(runs["mirrored_losses"], runs["default_losses"], atol=1e-5)
    for mirrored, single in zip(_weights(runs, "mirrored_weight_"), one_device, strict=True):
        np.testing.assert_allclose(mirrored, single, atol=1e-5)
    # Stopped at step 6 under MirroredStrategy, resumed on one device: the carried state of
    # both replicas' rows came back in order, so the run ends where the others did.
    for resumed, single in zip(_weights(runs, "resumed_weight_"), one_device, strict=True):
        np.testing.assert_allclose(resumed, single, atol=1e-5)
    assert "cannot be split evenly across 2 replicas" in str(runs["odd_batch_error"])
    assert not (tmp_path / "odd").exists()


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_localhost_agree_and_the_chief_alone_writes(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [sys.executable, os.path.join(PROGRAMS, "distributed_runs.py"), "worker",
             str(tmp_path / "run"), str(tmp_path / f"worker{index}.npz")],
            env=_env(TF_CONFIG=config, TMPDIR=str(scratch)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 300
    try:
        outputs = [w.communicate(timeout=max(1, deadline - time.monotonic())) for w in workers]
    finally:
        for w in workers:  # bounded: never leave a worker waiting for its peer
            if w.poll() is None:
                w.kill()
    for w, (_, stderr) in zip(workers, outputs):
        assert w.returncode == 0, stderr[-3000:]
    first, second = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    for a, b in zip(_weights(first, "arr_"), _weights(second, "arr_"), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first["losses"], second["losses"])
    # One set of files, the chief's: checkpoints of steps 3 and 6, results, the model.
    run = tmp_path / "run"
    assert sorted(os.listdir(run / "checkpoints")) == ["ckpt-000000003", "ckpt-000000006"]
    assert json.load(open(run / "results.json"))["steps"] == 6
    assert (run / "model.keras").exists()
    assert os.listdir(scratch) == []  # the other worker's scratch directory was removed
    # And they trained what one device trains with the same global batch.
    from programs.distributed_runs import Record, corpus, small_config
    from keras_mulrnn.lm.training import train

    record = Record()
    train(corpus(), small_config(steps=6, eval_every=3), tmp_path / "single", verbose=0,
          extra_callbacks=[record])
    for a, b in zip(_weights(first, "arr_"), record.weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_strategy_errors_are_clear(monkeypatch):
    with pytest.raises(ValueError, match="strategy"):
        TrainConfig(strategy="tpu").validate()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        backend.make_distribution("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid"):
        backend.make_distribution("multiworker")
    with pytest.raises(ValueError, match="data-parallel is a jax strategy.*KERAS_BACKEND=jax"):
        TrainConfig(strategy="data-parallel").validate()


def test_mirrored_on_a_one_device_machine_trains_checkpoints_and_resumes(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(PROGRAMS, "distributed_runs.py"),
                           "mirrored-one-device", str(tmp_path)], capture_output=True,
                          text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = np.load(tmp_path / "one.npz")
    for mirrored, single in zip(_weights(runs, "mirrored_weight_"),
                                _weights(runs, "default_weight_"), strict=True):
        np.testing.assert_allclose(mirrored, single, atol=1e-5)
