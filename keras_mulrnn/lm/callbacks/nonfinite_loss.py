"""The NaN rule: a step whose loss is not finite stops the interval."""

import math

import keras

from keras_mulrnn.lm.callbacks.state import logged_number


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` at the first step whose loss is NaN or infinite and records the step
    (`state.nonfinite_step`): the run then rolls back or raises. The callbacks after it do
    nothing more in that interval, so the weights that step updated are never validated or
    saved. (It replaces Keras's `TerminateOnNaN`, which would only print a second message.)"""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(logged_number(loss)):
            self.state.nonfinite_step = self.state.step(batch)
            self.model.stop_training = True
