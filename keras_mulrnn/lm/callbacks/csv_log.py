"""`log.csv`: one row per validation."""

import csv
import os
import warnings

import keras

from keras_mulrnn.lm import files
from keras_mulrnn.lm.callbacks.state import logged_number


class ValidationLog:
    """`log.csv`: one row per validation (`epoch` is the validation's index), its columns
    fixed: the training `loss` and `bpc` average the `loss_steps` steps before `step`. An
    interval cut short by an interruption writes no row; a resumed run first drops the rows
    beyond its checkpoint, so the log reads as if the run had never stopped (but for the
    training loss of an interval that the resume cut in two, which averages the steps run
    after the resume: its `loss_steps` says how many)."""

    COLUMNS = ["epoch", "step", "loss", "bpc", "val_bpc", "loss_steps"]

    def __init__(self, path):
        self.path = path

    def rows(self):
        """The rows written so far (those of an older layout without a step are dropped). A
        log that cannot be read (not text, or not a file) is set aside as `log.csv.damaged`
        with a warning, and the log starts again: what it held cannot be rebuilt."""
        if not os.path.lexists(self.path):
            return []
        try:
            if not os.path.isfile(self.path):
                raise ValueError("it is not a regular file")
            with open(self.path, newline="", encoding="utf-8") as handle:
                return [row for row in csv.DictReader(handle)
                        if (row.get("step") or "").isdigit() and row.get("val_bpc")]
        except (ValueError, csv.Error) as error:  # (UnicodeDecodeError is a ValueError)
            os.replace(self.path, self.path + ".damaged")
            warnings.warn(f"{self.path!r} is damaged ({error}): set aside as "
                          f"{os.path.basename(self.path)}.damaged; the log starts again.",
                          stacklevel=2)
            return []

    def keep_until(self, step):
        """Keeps the rows of the validations up to `step` (the step a run starts from)."""
        kept = [row for row in self.rows() if int(row["step"]) <= step]
        files.write_csv(self.path, self.COLUMNS, kept)

    def write(self, epoch, step, logs, loss_steps):
        values = {"epoch": epoch, "step": step}
        for key in ("loss", "bpc", "val_bpc"):
            if key in logs:
                values[key] = logged_number(logs[key])
        if "loss" in logs:
            values["loss_steps"] = loss_steps
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.COLUMNS).writerow(values)


class ValidationCSV(keras.callbacks.Callback):
    """Appends each validation's row to the run's `ValidationLog` (Keras's `CSVLogger` would
    write one row per `fit` epoch with whatever keys the logs hold, and cannot drop the rows
    beyond a resumed run's checkpoint)."""

    def __init__(self, state, path):
        super().__init__()
        self.state, self.log = state, ValidationLog(path)

    def on_epoch_end(self, epoch, logs=None):
        if self.state.halted:
            return
        first, last = self.state.interval
        with self.state.outside_training():
            self.log.write(epoch, last, logs, loss_steps=last - first)
