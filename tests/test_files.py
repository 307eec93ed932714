"""`keras_mulrnn.lm.files`: every write of a run is atomic, a full disk is named and loses
nothing, no temporary is left, and new files get the user's permissions."""

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mulrnn import backend
from keras_mulrnn.data import Vocabulary
from keras_mulrnn.lm import files
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.lm.training import train
from helpers import small_config, small_corpus, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(directory):
    return [name for name in os.listdir(directory) if ".tmp" in name]


def test_a_write_replaces_the_file_whole_with_the_users_permissions(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    files.write_json(path, {"test_bpc": 1.5})
    assert json.loads(path.read_text()) == {"test_bpc": 1.5}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # not a temporary's 0600
    assert not _leftovers(tmp_path)


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    path.write_text("the previous log\n")
    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(files.WriteError, match="Could not write .*log.csv.*No space left.*Free "
                                               "space") as raised:
        files.write_csv(path, ["step"], [{"step": 1}])
    assert raised.value.errno == errno.ENOSPC
    assert path.read_text() == "the previous log\n"
    assert not _leftovers(tmp_path)


def test_a_model_that_cannot_be_saved_leaves_the_previous_file(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "best.keras"
    files.save_model(model, path)
    before = path.read_bytes()

    def half_written(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", half_written)
    with pytest.raises(files.WriteError, match="best.keras"):
        files.save_model(model, path)
    assert path.read_bytes() == before
    assert not _leftovers(tmp_path)


def test_a_checkpoint_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    config = small_config()
    model = build_model(small_corpus().vocabulary, config)
    model.start_carry(config.batch_size, backend.make_distribution())
    manager = CheckpointManager(tmp_path / "checkpoints")
    monkeypatch.setattr(keras.Model, "save_weights", _full_disk)
    with pytest.raises(files.WriteError, match="ckpt.*No space left"):
        manager.save(model, {"config": {}})
    assert not os.listdir(manager.directory)


def test_a_disk_without_room_for_a_model_is_refused_before_writing(tmp_path, monkeypatch):
    """HDF5 that meets a full disk half-way can crash the interpreter: the room is checked
    first, against an estimate that is never below the file's real size."""
    model = tiny_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "best.keras"
    files.save_model(model, path)
    before, size = path.read_bytes(), os.path.getsize(path)
    assert size <= files.saved_size(model) <= 2 * size + (1 << 20)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda where: real(where)._replace(free=size))
    written = []
    monkeypatch.setattr(keras.Model, "save", lambda *args, **kwargs: written.append(args))
    with pytest.raises(files.WriteError, match=r"best.keras.*: [\d,]+ bytes free on its "
                                               r"disk, about [\d,]+ needed. Free space"):
        files.save_model(model, path)
    assert not written and path.read_bytes() == before and not _leftovers(tmp_path)


def test_a_checkpoint_without_room_is_refused_before_writing(tmp_path, monkeypatch):
    config = small_config()
    model = build_model(small_corpus().vocabulary, config)
    model.start_carry(config.batch_size, backend.make_distribution())
    manager = CheckpointManager(tmp_path / "checkpoints")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda where: real(where)._replace(free=1000))
    monkeypatch.setattr(keras.Model, "save_weights", _full_disk)  # not reached
    with pytest.raises(files.WriteError, match=r"ckpt-000000000': 1,000 bytes free"):
        manager.save(model, {"config": {}})
    assert not os.listdir(manager.directory)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system (a tmpfs: mounting one needs root, as on the CI machine)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_really_full_disk_stops_the_run_with_one_message(small_disk):
    """Once crashed with a segmentation fault after dozens of HDF5 tracebacks."""
    output = small_disk / "run"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "train_text.py"), "--quick",
         "--steps", "12", "--eval-every", "6", "--checkpoint-every", "3",
         "--valid-symbols", "2000", "--sample-length", "0", "--output", str(output)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "HDF5" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.count("error:") == 1
    assert re.search(r"error: Could not write .*(model|best).keras.*bytes free on its disk",
                     done.stderr), done.stderr[-3000:]
    assert "warning: Could not write the checkpoint" in done.stderr  # training went on
    for directory in (output, output / "checkpoints"):
        assert not [name for name in os.listdir(directory) if "tmp" in name]


def test_a_killed_writers_temporaries_are_removed_by_the_next_run(tmp_path):
    config = small_config(steps=4, eval_every=2, sample_length=0)
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / ".results.json.x1y2z3.tmp", tmp_path / ".best.keras.abc.tmp.keras"]
    for path in stale:
        path.write_text("half")
    (tmp_path / "checkpoints" / ".tmp-ckpt-000000002-q1").mkdir()
    (tmp_path / "keep.tmp").write_text("the user's")  # not a name of ours
    results = train(small_corpus(), config, tmp_path, verbose=0)
    assert not any(path.exists() for path in stale)
    assert not _leftovers(tmp_path / "checkpoints")
    assert (tmp_path / "keep.tmp").exists()
    for name in ("results.json", "best.json", "log.csv", "model.keras"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) & 0o044, name  # readable
    assert results["steps"] == 4


def test_a_byte_models_prompt_may_hold_any_byte_it_knows():
    """A command line holds a byte that is not UTF-8 (0xE9) as a lone surrogate."""
    vocabulary = Vocabulary.from_data(bytes([0x41, 0xE9, 0x42]), "byte")
    prompt = os.fsdecode(b"A\xe9B")  # what argv holds
    np.testing.assert_array_equal(vocabulary.encode(prompt), [0, 2, 1])
    with pytest.raises(ValueError, match="never saw"):  # typed é is UTF-8: C3 A9
        vocabulary.encode("é")
