"""Registering the package's classes with Keras's serialization, as soon as Keras is loaded.

Keras's convention is that importing a package registers its layers, so that
`keras.saving.load_model("model.keras")` can rebuild them: Keras finds a class of ours only by
its registered name (`keras_mulrnn>MLSTMCell`) and imports no module of ours by itself.
Registering means importing Keras and its backend (seconds with TensorFlow), while the
command-line programs, which start by importing this package, must parse their arguments and
arm their Ctrl-C handling before the backend loads. So `import keras_mulrnn` registers at once
when Keras is loaded already, and otherwise leaves a one-shot import hook that registers once
Keras has loaded (the programs load it in `cli.start_backend`), whichever code imports it.

Registration waits for any of the package's own modules that are still being imported: when
one of them is what imports Keras first, the classes are registered as soon as that import
chain has finished (registering in its middle would import a half-made module).
"""

import importlib
import importlib.abc
import sys
import warnings

# The modules whose import registers every class a model file of this package may name:
# the optimization module imports the language model, its metric, the layers and the cells.
_REGISTERING = ("keras_mulrnn.layers", "keras_mulrnn.lm.optimization")

_PREFIX = "keras_mulrnn."
# Marks the hook (a reloaded module's class is another class: an `isinstance` would miss it).
_MARK = "_keras_mulrnn_registration"


def register():
    """Registers every class of the package with `keras.saving` (imports Keras)."""
    _unhook()
    for module in _REGISTERING:
        importlib.import_module(module)


def register_when_keras_loads():
    """Registers now if Keras is loaded, else once it is (see the module's docstring)."""
    if _keras_loaded() and not _importing_package():
        _register_or_warn()
    elif not any(getattr(finder, _MARK, False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hook())


def _keras_loaded():
    """Whether Keras is imported and done importing (not half-way, as when Keras's own
    import leads to this package)."""
    keras = sys.modules.get("keras")
    return keras is not None and not getattr(getattr(keras, "__spec__", None),
                                             "_initializing", False)


def _register_or_warn():
    try:
        register()
    except Exception as error:  # never make the user's own import fail
        warnings.warn(f"keras_mulrnn could not register its classes with Keras "
                      f"({type(error).__name__}: {error}); keras.saving.load_model will "
                      f"not find them. keras_mulrnn.load_model still imports them itself.",
                      RuntimeWarning, stacklevel=3)


def _importing_package():
    """Whether one of the package's modules (other than the package itself, whose import
    calls `register_when_keras_loads` last) is still being imported."""
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if name.startswith(_PREFIX) and getattr(spec, "_initializing", False):
            return True
    return False


def _unhook():
    sys.meta_path[:] = [finder for finder in sys.meta_path if not getattr(finder, _MARK, False)]


class _Hook(importlib.abc.MetaPathFinder):
    """Finds `keras` and the package's modules with the other finders, and registers once
    Keras has loaded and none of the package's modules is still being imported."""

    _keras_mulrnn_registration = True

    def find_spec(self, name, path=None, target=None):
        if name != "keras" and not name.startswith(_PREFIX):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRegister(spec.loader, self)
        return spec


class _ThenRegister(importlib.abc.Loader):
    """A module's own loader, then `register` if the time has come; the module is left with
    its own loader."""

    def __init__(self, loader, hook):
        self._loader, self._hook = loader, hook

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        spec.loader = module.__loader__ = self._loader
        self._loader.exec_module(module)
        spec._initializing = False  # what the import system sets right after this returns
        if self._hook in sys.meta_path and _keras_loaded() and not _importing_package():
            _register_or_warn()

    def __getattr__(self, name):  # anything else a loader offers
        return getattr(self._loader, name)
