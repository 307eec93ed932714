"""Loading model files safely.

`.keras` files from strangers must not run code: `load_model` always uses Keras's
`safe_mode=True`, and turns Keras's refusal into a message that says what was refused and
how to load a file one trusts.
"""

import keras

from keras_mulrnn.data.corpora import check_file


def load_model(path, compile=False):
    """Loads a `.keras` model file in safe mode (no Python code from the file runs)."""
    path = check_file(path, "model file")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except ValueError as error:
        if "safe_mode" not in str(error):
            raise
        raise ValueError(
            f"Refused to load {path!r}: it holds Python code (a lambda or a Lambda layer) "
            f"that would run while loading. Only if you trust the file's author, load it with "
            f"keras.saving.load_model(path, safe_mode=False)."
        ) from None
