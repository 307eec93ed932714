"""Argument checks shared by every entry point: a `ValueError` that names the argument, the
value received and what is allowed."""


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`: received {name}={value!r}. "
            f"Allowed: a positive integer."
        )


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`: received {name}={value!r}. "
            f"Allowed: a float in [0, 1)."
        )
