"""Silencing what native libraries print while they load.

TensorFlow's C++ start-up logs go to file descriptor 2 directly, whatever its log level, so
Python cannot filter them; pointing the descriptor at /dev/null while the library loads (and
runs its first operation), then restoring it, removes them all.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr(enabled=True):
    """While the block runs, the process's standard error goes to /dev/null."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
