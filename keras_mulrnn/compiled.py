"""A per-model cache of compiled functions (scoring, sampling), kept outside the model so
that saving it never sees them."""

import weakref

_CACHE = weakref.WeakKeyDictionary()


def cached_function(model, key, build):
    """The function `build()` made for `model` under `key`, built once."""
    functions = _CACHE.setdefault(model, {})
    if key not in functions:
        functions[key] = build()
    return functions[key]
