"""A run's output directory (`keras_mulrnn.lm.run_directory`): its checks, and how a
finished run is recognised. The programs' messages about it are tested through the
programs in test_lock.py and test_checkpoints.py."""

import json
import os

import pytest

from keras_mulrnn.lm import run_directory
from keras_mulrnn.lm.run_directory import (
    BEST_INFO,
    CHECKPOINTS,
    FINAL,
    LOG,
    RESULTS,
    check_fresh,
    finished,
    prepare,
    previous_speed,
    read_best,
)


def test_every_file_of_a_run_has_one_name():
    # The names are part of what users see (README, DESIGN.md): they must not change.
    assert (RESULTS, FINAL, run_directory.BEST, BEST_INFO, LOG, CHECKPOINTS,
            run_directory.TENSORBOARD) == ("results.json", "model.keras", "best.keras",
                                           "best.json", "log.csv", "checkpoints",
                                           "tensorboard")
    assert run_directory.path("runs/a", LOG) == os.path.join("runs/a", "log.csv")


def test_prepare_makes_the_directory_and_refuses_what_cannot_hold_a_run(tmp_path):
    made = prepare(tmp_path / "new" / "run")
    assert made == str(tmp_path / "new" / "run") and os.path.isdir(made)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        prepare(tmp_path / "file")
    with pytest.raises(ValueError, match="--output is empty"):
        prepare("  ")
    with pytest.raises(ValueError, match="not UTF-8"):
        prepare(os.fsdecode(b"run-\xff"))
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(FileNotFoundError, match="a symbolic link to .*nowhere.*, which does "
                                                "not exist"):
        prepare(tmp_path / "dangling")


def test_a_new_run_refuses_a_directory_that_holds_one_and_clears_stale_logs(tmp_path):
    (tmp_path / LOG).write_text("epoch,step\n")
    (tmp_path / BEST_INFO).write_text("{}")
    check_fresh(str(tmp_path), resume=False)  # no checkpoint, no results: a fresh start
    assert not (tmp_path / LOG).exists() and not (tmp_path / BEST_INFO).exists()
    (tmp_path / CHECKPOINTS / "ckpt-000000004").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="already holds a run. Pass --resume"):
        check_fresh(str(tmp_path), resume=False)
    check_fresh(str(tmp_path), resume=True)  # resuming is what it is for


def test_a_finished_run_is_one_with_results_a_final_model_and_its_sample(tmp_path):
    figures = {"valid_bpc": 2.0, "test_bpc": 2.1, "params": 10, "steps": 4,
               "chars_per_sec": 100.0, "train_seconds": 2.0,
               "config": {"sample_length": 50}}
    directory = str(tmp_path)
    (tmp_path / RESULTS).write_text(json.dumps(figures))
    assert not finished(directory, 50)  # no final model yet
    (tmp_path / FINAL).write_text("a model")
    assert not finished(directory, 50)  # no sample yet (written after the results)
    (tmp_path / RESULTS).write_text(json.dumps({**figures, "sample": "abc"}))
    assert finished(directory, 50)
    assert not finished(directory, 60)  # another sample length: evaluated again
    assert previous_speed(directory) == {"chars_per_sec": 100.0, "train_seconds": 2.0}
    (tmp_path / RESULTS).write_text(json.dumps({**figures, "chars_per_sec": "fast"}))
    with pytest.warns(UserWarning, match="evaluated again"):
        assert not finished(directory, 50)
    assert previous_speed(directory) == {}


def test_the_best_so_far_is_read_from_its_record_or_is_none(tmp_path):
    assert read_best(str(tmp_path)) is None
    (tmp_path / BEST_INFO).write_text(json.dumps({"val_bpc": 1.75, "step": 8}))
    assert read_best(str(tmp_path)) == 1.75
    (tmp_path / BEST_INFO).write_text(json.dumps({"step": 8}))
    assert read_best(str(tmp_path)) is None
