"""What memory can hold (`memory.py`): a corpus, a training run and a scoring window that
cannot fit are refused before anything is read or built."""

import numpy as np
import pytest

from keras_mulrnn import memory
from keras_mulrnn.data import load_text
from keras_mulrnn.lm.config import check_fits
from keras_mulrnn.lm.evaluation import evaluate_bpc

from helpers import TEXT, assert_one_clear_line, data_file, run_program, small_config, tiny_model


def test_a_data_file_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = data_file(tmp_path)
    monkeypatch.setattr(memory, "physical_memory", lambda: 1000)
    with pytest.raises(MemoryError, match=r"needs about .* GiB of memory, more than"):
        load_text(path)


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built(tmp_path):
    done = run_program(tmp_path, "train_text.py", "--data", data_file(tmp_path), "--output",
                       tmp_path / "out", "--units", "200000")
    assert_one_clear_line(done)
    assert "GiB to train" in done.stderr and "Use fewer units" in done.stderr
    assert not (tmp_path / "out").exists()


def test_scoring_windows_too_large_are_refused_before_any_is_scored(monkeypatch):
    model = tiny_model()
    ids = model.vocabulary.encode(TEXT[:200])
    monkeypatch.setattr(memory, "physical_memory", lambda: 1000)
    with pytest.raises(ValueError, match=r"Scoring windows of 4 × 50 symbols needs about"):
        evaluate_bpc(model, ids, batch_size=4, seq_len=50)
    # Where the system does not say how much memory it has, nothing is refused.
    monkeypatch.setattr(memory, "physical_memory", lambda: None)
    assert np.isfinite(evaluate_bpc(model, ids, batch_size=4, seq_len=50)[0])


def test_a_training_run_that_cannot_fit_is_refused_by_the_library_too(monkeypatch):
    config = small_config()
    params = check_fits(config, 30)
    # The estimate: weights four times over, and per symbol of a batch the layer's states
    # (6 × units + 2 × rank) and the logits twice, all in float32.
    need = 4 * (4 * params + config.batch_size * config.seq_len * (6 * 16 + 2 * 8 + 2 * 30))
    monkeypatch.setattr(memory, "physical_memory", lambda: need)
    assert check_fits(config, 30) == params
    monkeypatch.setattr(memory, "physical_memory", lambda: need - 1)
    with pytest.raises(ValueError, match="GiB to train"):
        check_fits(config, 30)
