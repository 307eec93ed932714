"""Checkpoints: after every validation, every `checkpoint_every` steps, and on a stop
request."""

import warnings

import keras

from keras_mulrnn.lm.checkpoints import model_step


class Checkpointing(keras.callbacks.Callback):
    """Writes a checkpoint of the current step (`manager.save(model, meta)`) at the end of
    every interval, every `every` steps within one, and at the step where a stop was
    requested. A checkpoint that cannot be written (a full disk) is warned about and listed
    in `failures`; training goes on and the previous checkpoint stays."""

    def __init__(self, state, manager, meta, every):
        super().__init__()
        self.state, self.manager, self.meta, self.every = state, manager, meta, every
        self.failures = []

    def on_train_batch_end(self, batch, logs=None):
        if self.state.nonfinite_step is not None:
            return
        step, last = self.state.step(batch), self.state.interval[1]
        # The flag is read once: a signal may set it at any moment, and the stop callback
        # honours only a request whose step was checkpointed here (a later one, the next
        # step).
        stop = self.state.stop_requested
        if stop or (self.every and step % self.every == 0 and step < last):
            self.save()
        if stop:
            self.state.checkpointed_for_stop = step

    def on_epoch_end(self, epoch, logs=None):
        if self.state.halted:
            return
        with self.state.outside_training():
            self.save()

    def save(self):
        try:
            self.manager.save(self.model, self.meta)
        except OSError as error:  # e.g. a full disk: keep training, keep the old checkpoint
            previous = self.manager.steps()
            message = (f"Could not write the checkpoint of step {model_step(self.model)} "
                       f"({type(error).__name__}: {error}); the previous checkpoint "
                       f"{'(step %d) is intact' % previous[-1] if previous else 'does not exist'}"
                       f". Training goes on; free space in {self.manager.directory}.")
            warnings.warn(message, stacklevel=2)
            self.failures.append(message)
