"""What the callbacks of one run share."""

import contextlib
import time

import numpy as np


class RunState:
    """The steps of the interval that `fit` is training (`interval`, first and last step),
    why the run stops (a non-finite loss at `nonfinite_step`; a signal's `stop_requested`,
    honoured at `interrupted_at`, once `checkpointed_for_stop` says that the step's
    checkpoint was written for it), and the wall time spent validating, logging and saving
    (`eval_seconds`, which the training speed leaves out)."""

    def __init__(self):
        self.interval = (0, 0)
        self.nonfinite_step = None
        self.stop_requested = False
        self.checkpointed_for_stop = None
        self.interrupted_at = None
        self.eval_seconds = 0.0

    def step(self, batch):
        """The run's step at the end of `fit`'s batch `batch` of the current interval."""
        first, last = self.interval
        return min(first + batch + 1, last)

    @property
    def halted(self):
        """Whether the interval's training ended early (nothing is to be validated or saved
        at its end)."""
        return self.nonfinite_step is not None or self.interrupted_at is not None

    @contextlib.contextmanager
    def outside_training(self):
        """Counts the block's wall time as validation, not training."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.eval_seconds += time.perf_counter() - started


def logged_number(value):
    """A figure of `fit`'s logs as a float (one element, not a scalar, under a multi-worker
    strategy: see `step_logs`)."""
    return float(np.reshape(value, -1)[0])
