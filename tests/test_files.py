"""`keras_mulrnn.lm.files`: every write of a run is atomic, a full disk is named and loses
nothing, no temporary is left, and new files get the user's permissions."""

import errno
import json
import os
import stat

import keras
import numpy as np
import pytest

from keras_mulrnn import backend
from keras_mulrnn.data import Vocabulary
from keras_mulrnn.lm import files
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.lm.training import train
from test_language_model import small_config, small_corpus, tiny_model


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
