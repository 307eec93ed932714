"""Argument checks shared by every entry point: a `ValueError` that names the argument (the
command-line flag of the same name, with dashes), the value received and what is allowed."""

import math
import numbers

import numpy as np

# Seeds are 32-bit on every backend (JAX's are signed): the largest a run may be given.
MAX_SEED = 2**31 - 1


def _refuse(name, value, allowed):
    raise ValueError(
        f"Invalid value for argument `{name}`: received {name}={value!r}. Allowed: {allowed}."
    )


def _is_int(value):
    """An integer, NumPy's included; not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(name, value):
    if not _is_int(value) or value <= 0:
        _refuse(name, value, "a positive integer")


def check_count(name, value, minimum=0, maximum=None):
    """An integer of at least `minimum` (0 by default) and at most `maximum`."""
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        _refuse(name, value, f"an integer >= {minimum}"
                + (f" and <= {maximum:,}" if maximum is not None else ""))


def check_seed(name, value):
    check_count(name, value, maximum=MAX_SEED)


def check_optional_positive_int(name, value):
    if value is not None:
        if not _is_int(value) or value <= 0:
            _refuse(name, value, "a positive integer, or none")


def check_rate(name, value):
    if not _is_number(value) or not 0 <= value < 1:
        _refuse(name, value, "a float in [0, 1)")


def check_positive_number(name, value, optional=False):
    """A finite number > 0 (or None when `optional`)."""
    if optional and value is None:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        _refuse(name, value, "a finite number > 0" + (", or none" if optional else ""))


def check_non_negative_number(name, value):
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        _refuse(name, value, "a finite number >= 0")


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        _refuse(name, value, "True or False")


def check_choice(name, value, allowed):
    if value not in allowed:
        _refuse(name, value, f"one of {tuple(allowed)}")
