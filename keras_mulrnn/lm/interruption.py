"""Ctrl-C in the command-line programs: never lost, never raised where it can be lost.

Once raised, a `KeyboardInterrupt` is an exception like any other, and code that swallows
exceptions swallows it too. While TensorFlow loads, one raised in a garbage-collection
callback vanished (the program went on to train for hours) and one raised in an extension
module's initialisation aborted the process (SIGABRT). So while a program runs
(`recording`), its SIGINT handler records the request before it raises; while a backend
loads (`deferred`) it only records it, and the program stops as soon as loading is over;
and the program's long loops look at the record (`check`), in case the exception was lost
on the way. Outside a program (a notebook, a library user's script) none of this is
installed and `check` never raises.
"""

import contextlib
import os
import signal
import sys
import threading

_requested = False
_deferring = 0


def _handle(signum, frame):
    global _requested
    if _deferring and _requested:
        # A second Ctrl-C while the backend loads: stop now, as an unhandled SIGINT does
        # (the programs load their backend before they write anything).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    _requested = True
    if not _deferring:
        raise KeyboardInterrupt


def _main_thread():
    return threading.current_thread() is threading.main_thread()


def requested():
    """Whether SIGINT came while a program was `recording`."""
    return _requested


def check():
    """Raises `KeyboardInterrupt` if SIGINT came, whether or not its exception got through."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred():
    """While `recording`, a SIGINT in the block is only recorded, and raised when the block
    ends (a second one stops the process at once). For code where a raised exception can
    be lost or abort the process: a backend's start. Elsewhere, and off the main thread,
    the block runs as it is."""
    global _deferring
    if not _main_thread():
        yield
        return
    check()
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        check()


@contextlib.contextmanager
def recording():
    """For a program's whole run, SIGINT is answered by the recording handler (unless the
    program was started with SIGINT ignored, or not in the main thread), and a
    `KeyboardInterrupt` that a finaliser or callback swallowed is not printed as a
    traceback (the request is recorded); afterwards the previous handler is back, unless
    the program set another on the way out."""
    global _requested
    previous = signal.getsignal(signal.SIGINT)
    ours = _main_thread() and previous in (signal.SIG_DFL, signal.default_int_handler)
    if not ours:
        yield
        return
    hook = sys.unraisablehook

    def quiet_about_ctrl_c(unraisable):
        if not (_requested and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            hook(unraisable)

    signal.signal(signal.SIGINT, _handle)
    sys.unraisablehook = quiet_about_ctrl_c
    try:
        yield
    finally:
        sys.unraisablehook = hook
        if signal.getsignal(signal.SIGINT) is _handle:
            signal.signal(signal.SIGINT, previous)
        _requested = False
