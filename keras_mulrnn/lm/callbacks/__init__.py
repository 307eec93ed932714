"""The training run's callbacks, one concern each, in the order `fit` calls them.

`model.fit` trains one interval (from one validation to the next) per epoch. At the end of
every step and of every interval, Keras calls the callbacks in list order, with one logs
dict that each may add to; they share a `RunState`.
"""

from keras_mulrnn.lm import run_directory
from keras_mulrnn.lm.callbacks.best_model import BestModel
from keras_mulrnn.lm.callbacks.checkpointing import Checkpointing
from keras_mulrnn.lm.callbacks.csv_log import ValidationCSV, ValidationLog
from keras_mulrnn.lm.callbacks.nonfinite_loss import StopOnNonFiniteLoss
from keras_mulrnn.lm.callbacks.progress import Progress
from keras_mulrnn.lm.callbacks.state import RunState
from keras_mulrnn.lm.callbacks.stop_request import StopOnRequest
from keras_mulrnn.lm.callbacks.validation import Validation


class RunCallbacks:
    """The run's callbacks by name, and `ordered`, the list for `fit`."""

    def __init__(self, state, *, valid, config, output_dir, manager, meta, verbose):
        self.nonfinite_loss = StopOnNonFiniteLoss(state)
        self.validation = Validation(state, valid, config)
        self.csv_log = ValidationCSV(state, run_directory.path(output_dir, run_directory.LOG))
        self.best_model = BestModel(state, output_dir)
        self.checkpointing = Checkpointing(state, manager, meta, config.checkpoint_every)
        self.progress = Progress(state, config.steps, verbose)
        self.stop_request = StopOnRequest(state)

    def ordered(self):
        """The order matters:
        - the NaN rule first: a step with a non-finite loss updated the weights, and no
          callback after it may validate, save or checkpoint them;
        - validation before the loggers, the best model and the progress, which read its
          `val_bpc` (and TensorBoard and a caller's callbacks, which come after this list);
        - the checkpoint before the stop request, so that the step a run stops at is
          checkpointed.
        """
        return [self.nonfinite_loss, self.validation, self.csv_log, self.best_model,
                self.checkpointing, self.progress, self.stop_request]


__all__ = ["BestModel", "Checkpointing", "Progress", "RunCallbacks", "RunState",
           "StopOnNonFiniteLoss", "StopOnRequest", "Validation", "ValidationCSV",
           "ValidationLog"]
