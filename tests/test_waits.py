"""Every wait on another process is bounded and interruptible, and says what it waits for:
a multi-worker training whose peers never come, a search worker with no chief, a chief that
cannot serve."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from keras_mulrnn.lm import interruption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_wait_ends_at_its_timeout_with_the_failure_message():
    asked = []
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="nobody came"):
        interruption.wait_until(lambda: asked.append(1), 0.3, "a friend",
                                lambda: "nobody came", interval=0.05)
    assert 0.3 <= time.monotonic() - started < 5 and len(asked) >= 3


def test_a_wait_ends_at_a_recorded_ctrl_c_and_says_what_it_waited_for(monkeypatch):
    monkeypatch.setattr(interruption, "_recording", True)
    monkeypatch.setattr(interruption, "_pending", None)
    asked = []

    def ready():
        asked.append(1)
        if len(asked) == 3:
            interruption.record(KeyboardInterrupt())  # what the handler does while loading
        return False

    with pytest.raises(KeyboardInterrupt, match="Stopped while waiting for a friend."):
        interruption.wait_until(ready, 60, "a friend", lambda: "never", interval=0.01)
    assert len(asked) == 3
    assert str(interruption._pending) == "Stopped while waiting for a friend."


def test_a_wait_returns_once_ready():
    answers = iter([False, False, True])
    interruption.wait_until(lambda: next(answers), 5, "a friend", lambda: "never",
                            interval=0.01)


def _lone_worker(tmp_path, *extra):
    """The first of two workers of a TF_CONFIG cluster, the second never started."""
    own, other = free_port(), free_port()
    cluster = {"cluster": {"worker": [f"localhost:{own}", f"localhost:{other}"]},
               "task": {"type": "worker", "index": 0}}
    command = [sys.executable, os.path.join(ROOT, "examples", "train_text.py"), "--quick",
               "--steps", "4", "--strategy", "multiworker", "--output",
               str(tmp_path / "run"), *extra]
    process = subprocess.Popen(command, env={**ENV, "TF_CONFIG": json.dumps(cluster)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, own, other


def _wait_for_the_wait(process, what):
    """Reads the program's output up to its line saying that it waits for `what` (at most
    two minutes: then the program is stopped and the test fails)."""
    timer = threading.Timer(120, process.kill)
    timer.start()
    try:
        line = process.stdout.readline()
        while line and not line.startswith(f"Waiting for {what} (at most "):
            line = process.stdout.readline()
    finally:
        timer.cancel()
    if not line.endswith("; Ctrl-C stops the wait).\n"):
        process.kill()
        pytest.fail(f"no line saying that it waits: {process.communicate()}")


def test_a_multi_worker_wait_whose_peers_never_come_ends_at_its_timeout(capsys):
    from keras_mulrnn.backend.tensorflow.distribute import _wait_for_peers

    own, other = free_port(), free_port()
    config = {"cluster": {"worker": [f"localhost:{own}", f"localhost:{other}"]},
              "task": {"type": "worker", "index": 0}}
    with pytest.raises(TimeoutError) as raised:
        _wait_for_peers(config, 1.5)
    assert str(raised.value) == (
        f"No answer from localhost:{other} of the TF_CONFIG cluster after 1.5 s: start the "
        f"training on every machine of the cluster with the same command (each with its own "
        f"task in TF_CONFIG), or wait longer with --wait-timeout.")
    assert "Waiting for the other workers of the TF_CONFIG cluster (at most 1.5 s" in \
        capsys.readouterr().out
    assert not interruption.answers("localhost", own)  # its listener is closed


def test_a_ctrl_c_stops_a_multi_worker_run_waiting_for_its_peers(tmp_path):
    process, own, _ = _lone_worker(tmp_path)  # the default wait: ten minutes
    _wait_for_the_wait(process, "the other workers of the TF_CONFIG cluster")
    assert interruption.answers("localhost", own)  # it listens, so that its peers see it
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip() == "Stopped while waiting for the other workers of the TF_CONFIG " \
                             "cluster."


def test_the_workers_of_a_larger_cluster_started_apart_all_find_each_other():
    """Each worker listens while it probes the others every half second: with its probes
    left unaccepted, a listener's backlog filled and later probes were dropped, and a
    cluster of three whose last worker came a few seconds late never formed."""
    from keras_mulrnn.backend.tensorflow.distribute import _wait_for_peers

    ports = [free_port() for _ in range(3)]
    addresses = [f"localhost:{port}" for port in ports]
    outcomes, servers = {}, []

    def worker(index):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        try:
            _wait_for_peers(config, 30)
            outcomes[index] = "joined"
            # What TensorFlow's server does next: it serves on the worker's port.
            servers.append(socket.create_server(("", ports[index]), backlog=1024))
        except Exception as error:  # (reported below)
            outcomes[index] = repr(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    for index, thread in enumerate(threads):
        thread.start()
        if index == 1:
            time.sleep(4)  # eight probes from each of the first two
    for thread in threads:
        thread.join(60)
    for server in servers:
        server.close()
    assert outcomes == {0: "joined", 1: "joined", 2: "joined"}


def _search(tmp_path, *role):
    return [sys.executable, os.path.join(ROOT, "tuning", "search.py"), "--directory",
            str(tmp_path / "tuning"), "--units", "16", "--steps-per-trial", "2", *role]


def test_a_search_worker_with_no_chief_stops_at_its_timeout(tmp_path):
    port = free_port()
    done = subprocess.run(_search(tmp_path, "--worker", "1", "--oracle-ip", "127.0.0.1",
                                  "--oracle-port", str(port), "--wait-timeout", "1.5"),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip() == (
        f"error: No chief answered at 127.0.0.1:{port} after 1.5 s: start the chief first "
        f"(the same command with --chief), check --oracle-ip and --oracle-port, or wait "
        f"longer with --wait-timeout.")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_or_sigterm_stops_a_search_worker_waiting_for_its_chief(tmp_path, signum):
    port = free_port()
    process = subprocess.Popen(
        _search(tmp_path, "--worker", "1", "--oracle-ip", "127.0.0.1", "--oracle-port",
                str(port)), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_the_wait(process, f"the search's chief at 127.0.0.1:{port}")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip() == f"Stopped while waiting for the search's chief at 127.0.0.1:{port}."


def test_a_worker_waits_for_a_chief_that_serves_not_for_any_listener(tmp_path):
    """Something that accepts connections on the chief's port but does not answer as
    keras-tuner's server held a worker past its timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        done = subprocess.run(_search(tmp_path, "--worker", "1", "--oracle-ip", "127.0.0.1",
                                      "--oracle-port", str(port), "--wait-timeout", "2"),
                              env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.startswith(f"error: No chief answered at 127.0.0.1:{port} after 2 s")


def test_a_chief_that_cannot_serve_says_so(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(_search(tmp_path, "--chief", "--oracle-ip", "127.0.0.1",
                                      "--oracle-port", str(port)),
                              env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip() == (f"error: The chief cannot serve on 127.0.0.1:{port}: "
                                   f"Address already in use. Give this machine's address "
                                   f"and a free port.")


@pytest.mark.parametrize("flag", ["0", "-1", "nan", "inf", "soon"])
def test_a_wait_timeout_must_be_a_positive_number_of_seconds(tmp_path, flag):
    done = subprocess.run(_search(tmp_path, "--wait-timeout", flag), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "expected a positive number of seconds" in done.stderr
