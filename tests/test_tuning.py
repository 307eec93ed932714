"""The keras-tuner search: space, budget mode, end to end, resume, chief and workers."""

import csv
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras_tuner
import pytest

from keras_mulrnn.data import Vocabulary
from keras_mulrnn.lm.config import recurrent_params
from tuning import report, search
from tuning.space import LanguageModelHyperModel

from helpers import TEXT, assert_one_clear_line


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
VOCABULARY = Vocabulary.from_data(TEXT, "char")


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("parametrization", ["additive", "integration", "shared", "unshared",
                                             "gates+candidate"])
def test_space_builds_every_family_and_parametrization(family, parametrization):
    hypermodel = LanguageModelHyperModel(
        VOCABULARY, {"family": [family], "parametrization": [parametrization], "units": [12],
                     "rank_ratio": [0.5]})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    config = hypermodel.config(hp)
    assert (config.family, config.parametrization) == (family, parametrization)
    assert config.rank == (None if parametrization in ("additive", "integration") else 6)
    cells = [layer.cell for layer in model.recurrent_layers]
    assert sum(c.count_params() for c in cells) == recurrent_params(config)


def test_searched_axes_are_choices():
    hypermodel = LanguageModelHyperModel(
        VOCABULARY, {"family": ["lstm", "gru"], "parametrization": ["shared", "unshared"],
                     "rank": [4, 8], "units": [16]})
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    space = {p.name: p for p in hp.space}
    assert isinstance(space["family"], keras_tuner.engine.hyperparameters.Choice)
    assert isinstance(space["units"], keras_tuner.engine.hyperparameters.Fixed)
    assert space["rank"].values == [4, 8]


@pytest.mark.parametrize("axes", [
    {"family": ["lstm"], "parametrization": ["additive"]},
    {"family": ["lstm"], "parametrization": ["shared", "unshared"], "rank_ratio": [0.25, 1.0]},
    {"family": ["gru"], "parametrization": ["shared", "gates+candidate"], "units": [128]},
    {"family": ["lstm", "rnn"], "parametrization": ["unshared"], "num_layers": [2],
     "rank_ratio": [0.5]},
    {"family": ["lstm"], "parametrization": ["integration", "additive", "shared"],
     "rank_ratio": [0.5], "mogrifier_rounds": [0, 5], "mogrifier_rank": [16]},
])
def test_budget_mode_keeps_every_trial_within_one_percent(axes):
    budget = 150_000
    hypermodel = LanguageModelHyperModel(VOCABULARY, axes, budget=budget)
    for _ in range(6):
        hp = keras_tuner.HyperParameters()
        for name, values in axes.items():  # visit every combination of the choices
            if len(values) > 1:
                hp.Choice(name, values, default=values[_ % len(values)])
        config = hypermodel.config(hp)
        assert abs(recurrent_params(config) - budget) / budget < 0.01, config


def test_the_mogrifier_axes_build_every_point():
    """Rounds searched, a rank given: the rank applies where there are rounds, and each
    point builds the model it describes."""
    hypermodel = LanguageModelHyperModel(
        VOCABULARY, {"family": ["gru"], "parametrization": ["integration"], "units": [12],
                     "mogrifier_rounds": [0, 3], "mogrifier_rank": [2]})
    for rounds in (0, 3):
        hp = keras_tuner.HyperParameters()
        hp.Choice("mogrifier_rounds", [0, 3], default=rounds)
        model = hypermodel.build(hp)
        config = hypermodel.config(hp)
        assert (config.mogrifier_rounds, config.mogrifier_rank) == (
            (3, 2) if rounds else (0, None))
        cell = model.recurrent_layers[0].cell
        assert (cell.transition, cell.mogrifier_rounds) == ("integration", rounds)
        assert cell.count_params() == recurrent_params(config)


def _search_args(directory, data, *extra):
    return ["--data", str(data), "--units", "16", "--parametrization", "shared,unshared",
            "--rank-ratio", "0.25,0.5,1", "--steps-per-trial", "6", "--batch-size", "4",
            "--seq-len", "20", "--valid-symbols", "300", "--test-batch-size", "8",
            "--embedding-dim", "8", "--directory", str(directory), "--project-name", "p",
            *extra]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "austen.txt"
    path.write_text(TEXT)
    return path


def _trials(directory):
    found = {}
    for path in glob.glob(os.path.join(directory, "p", "trial_*", "trial.json")):
        trial = json.load(open(path))
        found[trial["trial_id"]] = trial
    return found


def test_tiny_random_search_and_report(tmp_path, data):
    search.main(_search_args(tmp_path, data, "--max-trials", "2"))
    trials = _trials(tmp_path)
    assert len(trials) == 2
    assert all(t["status"] == "COMPLETED" and t["score"] > 0 for t in trials.values())
    report.main(["--directory", str(tmp_path), "--project-name", "p"])
    project = tmp_path / "p"
    rows = list(csv.DictReader(open(project / "trials.csv")))
    assert len(rows) == 2 and all(float(row["val_bpc"]) > 0 for row in rows)
    assert (project / "trials.md").read_text().count("COMPLETED") == 2
    assert (project / "bpc_vs_rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_killed_search_resumes_without_losing_or_repeating_trials(tmp_path, data):
    command = [sys.executable, os.path.join(ROOT, "tuning", "search.py"),
               *_search_args(tmp_path, data, "--max-trials", "3")]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        trials = _trials(tmp_path)
        if any(t["status"] == "COMPLETED" for t in trials.values()):
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    finished_before = {k for k, t in _trials(tmp_path).items() if t["status"] == "COMPLETED"}
    assert finished_before
    rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = _trials(tmp_path)
    completed = {k: t for k, t in trials.items() if t["status"] == "COMPLETED"}
    assert len(completed) == 3 and finished_before <= set(completed)
    points = {json.dumps(t["hyperparameters"]["values"], sort_keys=True)
              for t in completed.values()}
    assert len(points) == 3  # distinct trials, none repeated


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_share_a_search(tmp_path, data):
    port = str(_free_port())
    base = [sys.executable, os.path.join(ROOT, "tuning", "search.py"),
            *_search_args(tmp_path, data, "--max-trials", "6"),
            "--oracle-ip", "127.0.0.1", "--oracle-port", port]
    processes = [subprocess.Popen(base + ["--chief"], env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)]
    time.sleep(3)  # let the chief open its port
    processes += [subprocess.Popen(base + ["--worker", str(i)], env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for i in (1, 2)]
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    trials = _trials(tmp_path)
    assert len(trials) == 6 and all(t["status"] == "COMPLETED" for t in trials.values())
    workers = {}
    for trial_id in trials:
        worker = (tmp_path / "p" / f"trial_{trial_id}" / "worker.txt").read_text()
        workers.setdefault(worker, set()).add(trial_id)
    assert set(workers) <= {"tuner1", "tuner2"}
    # Each worker ran trials, and no trial ran on both.
    assert len(workers) == 2, workers
    assert sum(len(ids) for ids in workers.values()) == 6


def test_an_interrupted_trial_says_how_to_continue_the_search(tmp_path, data, monkeypatch):
    from keras_mulrnn.lm.training import TrainingInterrupted
    from tuning import space

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("Interrupted at step 3 of 6; a checkpoint of that step is "
                                  "in somewhere.")

    monkeypatch.setattr(space, "train", interrupted)
    with pytest.raises(KeyboardInterrupt) as stop:
        search.main(_search_args(tmp_path, data, "--max-trials", "2"))
    # The search has no --resume flag: running the same command again continues it.
    assert "Interrupted at step 3 of 6" in str(stop.value)
    assert "Run the same command again" in str(stop.value) and "--resume" not in str(stop.value)


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path, data, monkeypatch,
                                                            capsys):
    from tuning import space

    real_train = space.train
    calls = {"count": 0}

    def train_failing_first(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 1:
            raise FloatingPointError("the loss became NaN")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(space, "train", train_failing_first)
    with pytest.warns(UserWarning, match="Trial .* failed: FloatingPointError: the loss "
                                         "became NaN"):
        search.main(_search_args(tmp_path, data, "--max-trials", "2"))
    statuses = sorted(t["status"] for t in _trials(tmp_path).values())
    assert statuses == ["COMPLETED", "FAILED"]
    failed = next(t for t in _trials(tmp_path).values() if t["status"] == "FAILED")
    assert failed["message"] == "Trial 0 failed: FloatingPointError: the loss became NaN"
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err  # keras-tuner's own print is off


def test_a_search_whose_every_trial_failed_says_why(tmp_path, data, monkeypatch):
    from keras_mulrnn.lm.files import WriteError
    from tuning import space

    def full_disk(*args, **kwargs):
        raise WriteError("Could not write 'best.keras': No space left on device")

    monkeypatch.setattr(space, "train", full_disk)
    with pytest.warns(UserWarning), pytest.raises(
            RuntimeError, match=r"Every trial of the search failed \(1\): Trial 0 failed: "
                                r"WriteError: Could not write 'best.keras': No space left on "
                                r"device\. Fix that, then run again with --overwrite"):
        search.main(_search_args(tmp_path, data, "--max-trials", "1", "--parametrization",
                                 "shared", "--rank-ratio", "0.5"))


def test_overwrite_never_deletes_a_running_search(tmp_path, data):
    """`--overwrite` deletes the project only once it holds the project's lock: aimed at a
    search that is running, it stops with a message naming it and deletes nothing."""
    from keras_mulrnn.lm.lock import DirectoryInUse, hold_directory

    project = tmp_path / "p"
    project.mkdir()
    (project / "oracle.json").write_text("{}")  # the running search's files
    with hold_directory(project, "search"):
        with pytest.raises(DirectoryInUse, match="in use by another search"):
            search.main(_search_args(tmp_path, data, "--max-trials", "1", "--overwrite"))
    assert (project / "oracle.json").read_text() == "{}"


def test_overwrite_starts_the_search_anew(tmp_path, data):
    (tmp_path / "p" / "trial_99").mkdir(parents=True)  # an earlier search's files
    (tmp_path / "p" / "trial_99" / "trial.json").write_text("{}")
    search.main(_search_args(tmp_path, data, "--max-trials", "1", "--overwrite",
                             "--parametrization", "shared", "--rank-ratio", "0.5",
                             "--steps-per-trial", "2"))
    assert not (tmp_path / "p" / "trial_99").exists()
    assert len(_trials(tmp_path)) == 1


@pytest.mark.parametrize("flag,text,message", [
    ("--learning-rate", "0.005,,0.01", "empty item"),
    ("--units", "16,16", "twice"),
    ("--family", "lstm,", "empty item"),
])
def test_comma_lists_with_an_empty_or_repeated_item_are_refused(tmp_path, data, flag, text,
                                                                message):
    with pytest.raises(ValueError, match=message):
        search.main(_search_args(tmp_path, data, "--max-trials", "1", flag, text))
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_an_oracle_port_out_of_range_is_a_usage_error(tmp_path, data, port):
    """A chief told to bind a port that cannot exist used to wait forever."""
    with pytest.raises(SystemExit) as stop:
        search.parse_args(_search_args(tmp_path, data, "--chief", "--oracle-ip", "127.0.0.1",
                                       "--oracle-port", port))
    assert stop.value.code == 2


@pytest.mark.parametrize("name,advice", [
    ("oracle.json", "Restore it, or start the search over with --overwrite."),
    ("tuner0.json", "Restore it, or start the search over with --overwrite."),
    (os.path.join("trial_1", "trial.json"), "delete the folder .*trial_1.* \\(the search "
                                            "forgets that trial"),
])
def test_a_damaged_project_file_is_named_before_the_search_resumes(tmp_path, data, name,
                                                                   advice):
    """keras-tuner's own reload fails with a JSON parser message that names no file."""
    project = tmp_path / "p"
    for good in ("oracle.json", "tuner0.json", os.path.join("trial_0", "trial.json"),
                 os.path.join("trial_1", "trial.json")):
        (project / good).parent.mkdir(parents=True, exist_ok=True)
        (project / good).write_text('{"written": "whole"}')
    (project / name).write_text('{"trial_id": "01", "hyperpa')  # cut short by a kill
    with pytest.raises(ValueError, match=f"{name}' is damaged: .*{advice}"):
        search.main(_search_args(tmp_path, data, "--max-trials", "1"))
    assert (project / name).read_text() == '{"trial_id": "01", "hyperpa'  # nothing touched


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


def test_tuning_directory_that_is_a_file_and_a_report_with_no_finished_trials(tmp_path):
    (tmp_path / "file").write_text("x")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "search.py"),
                           "--directory", str(tmp_path / "file")], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert_one_clear_line(done)
    assert "is a file" in done.stderr
    project = tmp_path / "tuning" / "empty"
    (project / "trial_0").mkdir(parents=True)
    (project / "trial_0" / "trial.json").write_text(json.dumps(
        {"trial_id": "0", "status": "RUNNING", "score": None,
         "hyperparameters": {"values": {}}}))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "report.py"),
                           "--directory", str(tmp_path / "tuning"), "--project-name",
                           "empty"], env=ENV, capture_output=True, text=True, timeout=300)
    assert_one_clear_line(done)
    assert "no finished trials" in done.stderr


@pytest.mark.parametrize("arguments,message", [
    (["--rank-ratio", "inf"], "--rank-ratio"), (["--rank-ratio", "0"], "--rank-ratio"),
    (["--worker", ""], "--worker is empty"), (["--project-name", ""], "--project-name is empty"),
    (["--valid-symbols", "2"], "--eval-batch-size"),
])
def test_search_checks_its_space_and_its_data_before_any_trial(tmp_path, arguments, message):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tuning", "search.py"),
                           "--directory", str(tmp_path / "t"), "--steps-per-trial", "2",
                           *arguments], env=ENV, capture_output=True, text=True, timeout=300)
    assert_one_clear_line(done)
    assert message in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "t" / "search" / "trial_0")
