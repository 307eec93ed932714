"""Checkpoints (`lm/checkpoints.py`): a resume matches its run and data; a damaged
checkpoint is set aside."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest

from keras_mulrnn.data import load_text
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.training import train

from helpers import AtStep, data_file, interrupt, small_config, small_corpus


def test_resume_on_changed_data_is_refused(tmp_path):
    data = data_file(tmp_path)
    train(load_text(data), small_config(steps=4, checkpoint_every=2), tmp_path / "run",
          verbose=0)
    with open(data, "a") as handle:
        handle.write("It is a truth universally acknowledged.\n")  # no new symbol
    with pytest.raises(ValueError, match=r"data differs.*train.*changed"):
        train(load_text(data), small_config(steps=8, checkpoint_every=2), tmp_path / "run",
              resume=True, verbose=0)


def _damage_step(meta_path):
    meta = json.loads(meta_path.read_text())
    meta["step"] = 999
    meta_path.write_text(json.dumps(meta))


def _damage_config(meta_path):
    meta = json.loads(meta_path.read_text())
    del meta["config"]
    meta_path.write_text(json.dumps(meta))


DAMAGES = {
    "meta says another step": lambda path: _damage_step(path / "meta.json"),
    "meta without its settings": lambda path: _damage_config(path / "meta.json"),
    "meta is a list": lambda path: (path / "meta.json").write_text("[1, 2]"),
    "meta is not JSON": lambda path: (path / "meta.json").write_text("{step: 4"),
    "weights of another step": lambda path: shutil.copy(
        path.parent / "ckpt-000000002" / "model.weights.h5", path / "model.weights.h5"),
    "carried state of another shape": lambda path: np.savez(path / "carry.npz",
                                                            np.zeros((3, 16))),
    "random state missing": lambda path: os.remove(path / "random.npz"),
    "random state of another model": lambda path: np.savez(path / "random.npz",
                                                           *[np.zeros(7)] * 3),
}


DAMAGED_CONFIG = small_config(steps=8, eval_every=4, checkpoint_every=2)


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run stopped at step 5, with its checkpoints of steps 2 and 4."""
    output = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        train(small_corpus(), DAMAGED_CONFIG, output, verbose=0,
              extra_callbacks=[AtStep(5, interrupt)])
    assert CheckpointManager(output / "checkpoints").steps() == [2, 4]
    return output


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_checkpoint_is_set_aside_and_replaced(tmp_path, interrupted_run, damage):
    config = DAMAGED_CONFIG
    output = tmp_path / "run"
    shutil.copytree(interrupted_run, output)
    DAMAGES[damage](output / "checkpoints" / "ckpt-000000004")
    with pytest.warns(UserWarning, match="ckpt-000000004.*set aside"):
        results = train(small_corpus(), config, output, resume=True, verbose=0)
    assert results["steps_this_run"] == 6  # from step 2
    assert (output / "checkpoints" / "damaged-ckpt-000000004").is_dir()
    # The damaged checkpoint is never read again: a later resume does not fall back (Keras
    # may warn of other things: a process that turned on op determinism compiles no XLA).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(small_corpus(), config, output, resume=True, verbose=0)["steps"] == 8
    assert not [w for w in caught if "checkpoint" in str(w.message).lower()], [
        str(w.message) for w in caught]
