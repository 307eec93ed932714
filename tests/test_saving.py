"""Loading a model file (`saving.py`): a file that is not one of the package's models says
what it is."""

import json
import os
import zipfile

import keras
import pytest

from helpers import assert_one_clear_line, run_program


def _plain_model_file(path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(path)
    return path


def _zip_without_config(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return path


def _unknown_class(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(
            {"module": "somebody.layers", "class_name": "Mystery", "config": {},
             "registered_name": "somebody>Mystery"}))
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    return path


def _garbage(path):
    path.write_bytes(os.urandom(2000))
    return path


@pytest.mark.parametrize("make,message", [
    (_plain_model_file, "holds a Sequential, not a keras_mulrnn CharLanguageModel"),
    (_zip_without_config, "holds no config.json"),
    (_unknown_class, "could not be loaded as a Keras model"),
    (_garbage, "is not a Keras model file"),
], ids=["plain Sequential", "zip without config", "unknown class", "garbage"])
def test_a_file_that_is_not_a_model_of_this_package(tmp_path, make, message):
    path = make(tmp_path / "model.keras")
    for script in ("generate.py", "evaluate.py"):
        arguments = ["--model", path] + (["--prompt", "It"] if script == "generate.py" else [])
        done = run_program(tmp_path, script, *arguments)
        assert_one_clear_line(done)
        assert message in done.stderr, done.stderr
