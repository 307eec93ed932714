"""Loading model files safely, with a clear message for every file that is not one.

`.keras` files from strangers must not run code: `load_model` always uses Keras's
`safe_mode=True`, and turns Keras's refusal into a message that says what was refused and
how to load a file one trusts. A file that is not a Keras model at all (another format, a
zip without a model configuration, a damaged archive, a class nobody registered) is named as
such, never reported as missing.
"""

import zipfile

import keras

# Imported for their `keras.saving` registrations: every class a model file of this package
# may name.
import keras_mulrnn.layers  # noqa: F401
import keras_mulrnn.lm.optimization  # noqa: F401
from keras_mulrnn.data.corpora import check_file
from keras_mulrnn.lm.model import CharLanguageModel


def load_model(path, compile=False):
    """Loads a `.keras` model file in safe mode (no Python code from the file runs)."""
    path = check_file(path, "model file",
                      holds="a model that training saved (model.keras or best.keras)")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a Keras model file (a .keras file is a zip archive holding "
            f"config.json and the weights). Give a model.keras or best.keras of a run."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"{path!r} is a damaged archive ({error}).") from None
    if damaged is not None:
        raise ValueError(f"{path!r} is a damaged archive (its member {damaged!r} fails its "
                         f"checksum).")
    if "config.json" not in names:
        raise ValueError(
            f"{path!r} is a zip archive but not a Keras model file: it holds no "
            f"config.json. Give a model.keras or best.keras of a run."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as error:  # Keras reports a bad file with many exception types
        message = str(error)
        if "safe_mode" in message:
            raise ValueError(
                f"Refused to load {path!r}: it holds Python code (a lambda or a Lambda layer) "
                f"that would run while loading. Only if you trust the file's author, load it "
                f"with keras.saving.load_model(path, safe_mode=False)."
            ) from None
        raise ValueError(
            f"{path!r} could not be loaded as a Keras model ({type(error).__name__}: "
            f"{_first_line(message)}). If it names a class that is not Keras's or this "
            f"package's, import the package that defines it first."
        ) from None


def load_language_model(path):
    """Loads a `CharLanguageModel` file (`load_model`), refusing any other kind of model."""
    model = load_model(path)
    if not isinstance(model, CharLanguageModel):
        raise ValueError(
            f"{path!r} holds a {type(model).__name__}, not a keras_mulrnn CharLanguageModel "
            f"(the model.keras or best.keras that the training scripts write), so it has no "
            f"vocabulary to read or write text with."
        )
    return model


def _first_line(text):
    line = text.strip().splitlines()[0] if text.strip() else "no message"
    return line if len(line) <= 300 else line[:300] + "…"
