"""A stop requested by a signal, honoured at the end of a step."""

import keras


class StopOnRequest(keras.callbacks.Callback):
    """Once a signal has asked the run to stop (`state.stop_requested`, set by
    `interruption.RunSignals`), stops `fit` at the end of the step whose checkpoint
    `Checkpointing` wrote for it (`state.checkpointed_for_stop`; a request that came after
    that, at the next step), or at the end of the validation (always checkpointed), and
    records where (`state.interrupted_at`). Last in the list, after `Checkpointing`."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_train_batch_end(self, batch, logs=None):
        step = self.state.step(batch)
        if self.state.checkpointed_for_stop == step and self.state.nonfinite_step is None:
            self._stop(step)

    def on_epoch_end(self, epoch, logs=None):
        if self.state.stop_requested and not self.state.halted:
            self._stop(self.state.interval[1])

    def _stop(self, step):
        self.state.interrupted_at = step
        self.model.stop_training = True
