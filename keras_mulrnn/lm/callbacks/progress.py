"""The run's progress in its own terms: steps `a–b` of `N`."""

import sys

import keras

from keras_mulrnn.lm.callbacks.state import logged_number


class Progress(keras.callbacks.Callback):
    """A Keras progress bar over all the run's steps (verbose 1, on a terminal), or one line
    per validation (verbose 2, or 1 when the output goes to a file); nothing at verbose 0.
    (`fit` itself runs silent: its own bar would count each interval's steps anew.)"""

    def __init__(self, state, total, verbose):
        super().__init__()
        if verbose == 1 and not sys.stdout.isatty():
            verbose = 2
        self.state, self.total, self.verbose, self.bar = state, total, verbose, None

    def start(self, step):
        """Before the first interval: a bar that starts at `step`."""
        if self.verbose == 1:
            self.bar = keras.utils.Progbar(self.total, unit_name="step",
                                           stateful_metrics=["loss", "bpc"])
            self.bar.update(step)

    def end(self):
        if self.bar is not None:
            print(flush=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None and self.state.nonfinite_step is None:
            self.bar.update(self.state.step(batch),
                            [(key, logged_number(logs[key])) for key in ("loss", "bpc")
                             if key in (logs or {})])

    def on_epoch_end(self, epoch, logs=None):
        if self.state.halted:
            return
        first, last = self.state.interval
        if self.verbose == 2 or (self.bar is not None and last < self.total):
            parts = [f"{key} {logged_number(logs[key]):.4f}"
                     for key in ("loss", "bpc", "val_bpc") if key in logs]
            with self.state.outside_training():
                print(("\n" if self.bar is not None else "")
                      + f"steps {first + 1}–{last} of {self.total}: " + ", ".join(parts),
                      flush=True)
