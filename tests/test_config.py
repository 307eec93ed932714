"""`TrainConfig` (`lm/config.py`): every setting checked before the first step, once."""

import dataclasses
import json

import numpy as np
import pytest

from keras_mulrnn.lm.training import train

from helpers import small_config, small_corpus


def test_a_setting_used_after_training_is_checked_before_the_first_step(tmp_path):
    for bad in (dict(sample_length=-1), dict(sample_length=2.5), dict(seed=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            train(small_corpus(), small_config(**bad), tmp_path / "run", verbose=0)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field,value", [
    ("clipnorm", 0.0), ("clipnorm", -1.0), ("clipnorm", float("nan")),
    ("clipnorm", float("inf")), ("learning_rate", float("inf")),
    ("learning_rate", float("nan")), ("valid_symbols", -5), ("valid_symbols", 1),
    ("seed", -1), ("nan_rollbacks", -1), ("checkpoint_every", 0), ("eval_every", 0),
    ("steps_per_execution", 0), ("jit_compile", "yes"), ("weight_norm", 1),
])
def test_every_bad_value_is_refused_naming_its_setting(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        small_config(**{field: value}).validate()


def test_no_clipping_is_said_as_none():
    assert small_config(clipnorm=None).validate().clipnorm is None


def test_seeds_are_32_bit_and_numpy_scalars_are_numbers():
    with pytest.raises(ValueError, match=r"`seed`.*2,147,483,647"):
        small_config(seed=2**32).validate()
    config = small_config(steps=np.int64(3), learning_rate=np.float32(0.01),
                          jit_compile=np.bool_(True)).validate()
    assert type(config.steps) is int and type(config.learning_rate) is float
    json.dumps(dataclasses.asdict(config))
    with pytest.raises(TypeError, match="must be a keras_mulrnn.TrainConfig"):
        train(small_corpus(), {"units": 8}, "out", verbose=0)
    with pytest.raises(TypeError, match="must be a keras_mulrnn.data.Corpus"):
        train(None, small_config(), "out", verbose=0)


def test_settings_that_passed_are_checked_again_only_once_one_changes(monkeypatch):
    # A program checks its flags before it reads the data, and `train` checks the settings
    # it is given: the throwaway cell of the second check is not built again, but a setting
    # changed in between is checked.
    from keras_mulrnn import factory

    built = []
    make_cell = factory.make_cell
    monkeypatch.setattr(factory, "make_cell",
                        lambda *args, **kwargs: built.append(args) or make_cell(*args, **kwargs))
    config = small_config()
    assert config.validate() is config and config.validate() is config
    assert len(built) == 1
    config.rank = 0
    with pytest.raises(ValueError, match="`rank`"):
        config.validate()
    config.rank, config.parametrization = 8, "quadratic"
    with pytest.raises(ValueError, match="quadratic"):
        config.validate()
    config.parametrization = "unshared"
    config.validate()
    assert len(built) == 3
    # A value equal to one that passed, of a type the check refuses, is checked again.
    for field, value in (("units", 16.0), ("weight_norm", 0), ("input_dropout", False)):
        setattr(config, field, value)
        with pytest.raises(ValueError, match=f"`{field}`"):
            config.validate()
        config = small_config().validate()
    # A copy with other settings is a configuration of its own.
    with pytest.raises(ValueError, match="`units`"):
        dataclasses.replace(config, units=0).validate()
