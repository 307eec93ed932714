"""Ctrl-C in the command-line programs: never lost, never raised where it can be lost.

Once raised, a `KeyboardInterrupt` is an exception like any other, and code that swallows
exceptions swallows it too. While TensorFlow loads, one raised in a garbage-collection
callback vanished (the program went on to train for hours) and one raised in an extension
module's initialisation aborted the process (SIGABRT). So while a program runs
(`recording`), what a Ctrl-C raises is recorded before it is raised (`record`); while a
backend loads (`deferred`) it is only recorded, and the program stops as soon as loading
is over; and the program's long loops look at the record (`check`), in case the exception
was lost on the way. Outside a program (a notebook, a library user's script) none of this
is installed and `check` never raises.

A training run, in a program or not, answers SIGINT and SIGTERM itself while it lasts
(`RunSignals`): the first asks it to stop at the end of the step, with a checkpoint; a
second, or one during the final evaluation, stops it at once (`TrainingInterrupted`).
"""

import contextlib
import os
import signal
import socket
import sys
import threading
import time

# How long the programs wait for another process (a cluster's peers, a search's chief) by
# default, in seconds: long enough for machines started by hand, short enough that a
# missing one is noticed.
WAIT_TIMEOUT = 600

_recording = False
_pending = None  # what a recorded Ctrl-C raises at every `check`
_deferring = 0


def _handle(signum, frame):
    if _deferring and _pending is not None:
        # A second Ctrl-C while the backend loads: stop now, as an unhandled SIGINT does
        # (the programs load their backend before they write anything).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return
    record(KeyboardInterrupt())
    if not _deferring:
        raise _pending


def _main_thread():
    return threading.current_thread() is threading.main_thread()


def record(exception):
    """While a program is `recording`, makes `exception` (a `KeyboardInterrupt` that says
    what a signal stopped) what every later `check` raises; call it before raising it."""
    global _pending
    if _recording:
        _pending = exception


def requested():
    """Whether a Ctrl-C (or another recorded interruption) came while a program was
    `recording`."""
    return _pending is not None


def check():
    """Raises the recorded interruption, whether or not its exception got through."""
    if _pending is not None:
        raise _pending


@contextlib.contextmanager
def deferred():
    """While `recording`, a SIGINT in the block is only recorded, and raised when the block
    ends (a second one stops the process at once); one recorded before is raised on entry.
    For code where a raised exception can be lost or abort the process: a backend's start.
    Elsewhere, and off the main thread, the block runs as it is."""
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
    """For a program's whole run, SIGINT is answered by the recording handler, and a
    `KeyboardInterrupt` that a finaliser or callback swallowed is not printed as a
    traceback (the interruption is recorded); afterwards the previous handler is back,
    unless the program set another on the way out. Nothing is installed if the program
    was started with SIGINT ignored or with a handler of its own, or off the main thread."""
    global _recording, _pending
    previous = signal.getsignal(signal.SIGINT)
    if not (_main_thread() and previous in (signal.SIG_DFL, signal.default_int_handler)):
        yield
        return
    hook = sys.unraisablehook

    def quiet_about_ctrl_c(unraisable):
        if not (_pending is not None and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            hook(unraisable)

    signal.signal(signal.SIGINT, _handle)
    sys.unraisablehook = quiet_about_ctrl_c
    _recording = True
    try:
        yield
    finally:
        _recording, _pending = False, None
        sys.unraisablehook = hook
        if signal.getsignal(signal.SIGINT) is _handle:
            signal.signal(signal.SIGINT, previous)


def wait_until(ready, timeout, what, failure, interval=0.5):
    """Returns once `ready()` is true, asking it every `interval` seconds; after `timeout`
    seconds raises `TimeoutError(failure())`. It says (on stdout) that it waits for `what`,
    and a recorded Ctrl-C (or a SIGTERM, where nothing else handles it) ends the wait, even
    where loading defers it, with a message saying so: every wait on another process stays
    bounded, interruptible and announced."""
    deadline = time.monotonic() + timeout
    own_sigterm = _main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if own_sigterm:
        signal.signal(signal.SIGTERM, _terminate_wait)
    try:
        if ready():
            return
        print(f"Waiting for {what} (at most {timeout:g} s; Ctrl-C stops the wait).",
              flush=True)
        while True:
            check()
            if time.monotonic() > deadline:
                raise TimeoutError(failure())
            time.sleep(interval)
            if ready():
                return
    except KeyboardInterrupt:
        stop = KeyboardInterrupt(f"Stopped while waiting for {what}.")
        record(stop)
        raise stop from None
    finally:
        if own_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _terminate_wait(signum, frame):
    # A SIGTERM ends a wait as a Ctrl-C does: with a message, not a silent exit.
    raise KeyboardInterrupt


def answers(host, port):
    """Whether a process accepts connections at `host`:`port` (a wait's `ready`)."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `train` after SIGINT or SIGTERM, once the checkpoint of the current step is
    written (or, after a second signal or during the final evaluation, with the newest
    checkpoint as it was); rerun with `resume=True` (`--resume`) to continue from there.

    A `KeyboardInterrupt`, so that what runs many trainings (the study, the tuner) stops
    rather than counting the run as failed. `what` says what happened and what was kept;
    `advice` how to continue (what runs many trainings gives its own)."""

    RESUME = "Run again with --resume to continue."

    def __init__(self, what, advice=RESUME):
        super().__init__(f"{what} {advice}")
        self.what = what


class RunSignals:
    """While a training run lasts, SIGINT and SIGTERM stop it without losing anything.

    While the model is built, trained or validated, the first signal asks the run to
    checkpoint the current step (the first, while building) and stop (`state.stop_requested`,
    which the run's callbacks honour at the end of the step); a second stops at once (the
    newest complete checkpoint in `manager` is kept). In the final evaluation
    (`phase = "final"`), training is complete and checkpointed, so a signal stops at once;
    `--resume` evaluates again. A program's Ctrl-C from before the run, whose exception a
    library swallowed, stops it before anything is built.
    """

    def __init__(self, state, manager):
        self.state, self.manager = state, manager
        self.phase = "training"
        self.previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        directory = self.manager.directory
        stop = None
        if self.phase == "final":
            stop = TrainingInterrupted(
                f"{name} during the final evaluation: training is complete and its last "
                f"checkpoint is in {directory}.", "Run again with --resume to evaluate.")
        elif self.state.stop_requested:
            steps = self.manager.steps()
            newest = f"step {steps[-1]}" if steps else "none yet"
            stop = TrainingInterrupted(
                f"{name} again: stopped at once. The newest complete checkpoint ({newest}) is "
                f"in {directory}.")
        if stop is not None:
            record(stop)  # in a program: raised again if a library swallows it
            raise stop
        self.state.stop_requested = True
        # Straight to the descriptor: the signal may have come in the middle of a write to a
        # buffered stream (output piped to a reader that paused), which a `print` here would
        # re-enter, and fail.
        try:
            os.write(2, f"\n{name}: saving a checkpoint at the end of this step (send it "
                        f"again to stop at once).\n".encode())
        except OSError:  # no standard error: nothing to say it on
            pass

    def __enter__(self):
        check()  # a program's Ctrl-C whose exception a library swallowed
        if _main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored: stays so
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False
