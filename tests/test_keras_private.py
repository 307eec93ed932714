"""The private Keras names the package depends on (`keras_mulrnn.keras_private`) exist in
the installed Keras, and nothing else in the package reaches into `keras.src`: a Keras
upgrade that removes or renames one fails here, naming it and what depends on it."""

import ast
import importlib
import importlib.util
import os

import keras
import pytest

from keras_mulrnn import keras_private

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("owner,name,use", keras_private.METHODS,
                         ids=[f"{owner.rsplit('.', 1)[1]}.{name}"
                              for owner, name, _ in keras_private.METHODS])
def test_every_private_method_the_package_uses_exists(owner, name, use):
    module, _, class_name = owner.rpartition(".")
    for backend in ("tensorflow", "jax"):
        if f".backend.{backend}." in module and importlib.util.find_spec(backend) is None:
            pytest.skip(f"{backend} is not installed: its trainer is not used here")
    try:
        cls = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"Keras {keras.__version__} has no {owner} ({error}), whose {name} "
                    f"keras_mulrnn uses: {use}. Adapt that module to this Keras.")
    assert callable(getattr(cls, name, None)), (
        f"Keras {keras.__version__} has no {owner}.{name}, which keras_mulrnn uses: {use}. "
        f"Adapt that module to this Keras.")


def test_the_private_imports_are_what_the_package_expects():
    assert callable(keras_private.backend_rnn) and callable(keras_private.get_stateless_scope)
    assert isinstance(keras_private.DropoutRNNCell, type)
    for _, name, _ in keras_private.METHODS[-2:]:
        assert hasattr(keras_private.DropoutRNNCell, name)


def _python_files():
    for folder in ("keras_mulrnn", "tuning", "examples", "benchmarks"):
        for directory, _, names in os.walk(os.path.join(ROOT, folder)):
            yield from (os.path.join(directory, n) for n in names if n.endswith(".py"))


def test_nothing_else_imports_from_keras_src():
    offenders = []
    for path in _python_files():
        if path.endswith(os.path.join("keras_mulrnn", "keras_private.py")):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{os.path.relpath(path, ROOT)}:{node.lineno}" for n in names
                          if n.startswith("keras.src")]
    assert not offenders, f"import keras.src names through keras_mulrnn.keras_private: " \
                          f"{offenders}"


def test_every_private_method_called_or_overridden_is_listed():
    """A `._name(` call on something other than `self`, or a `def _name` that overrides a
    Keras method, must be one of `METHODS` (or the package's own)."""
    listed = {name for _, name, _ in keras_private.METHODS}
    keras_methods = {name for cls in (keras.Model, keras.layers.Layer, keras.optimizers.Adam)
                     for name in dir(cls) if name.startswith("_") and not name.startswith("__")}
    found = set()
    for path in _python_files():
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in keras_methods:
                found.add(node.name)
            if (isinstance(node, ast.Attribute) and node.attr in keras_methods
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
                found.add(node.attr)
    assert found <= listed, f"private Keras methods used but not listed in " \
                            f"keras_private.METHODS: {sorted(found - listed)}"
