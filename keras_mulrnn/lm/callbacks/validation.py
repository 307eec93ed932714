"""Validation in bits per character at the end of every interval."""

import keras

from keras_mulrnn.lm.evaluation import evaluate_bpc


class Validation(keras.callbacks.Callback):
    """At the end of each interval (one `fit` epoch) scores the validation symbols and puts
    `val_bpc` and the run's `step` into the epoch's logs, for the callbacks after it (the
    CSV log, the best model, the progress, TensorBoard) to read."""

    def __init__(self, state, symbols, config):
        super().__init__()
        self.state, self.symbols, self.config = state, symbols, config

    def on_epoch_end(self, epoch, logs=None):
        if self.state.halted:
            return
        with self.state.outside_training():
            bpc, _ = evaluate_bpc(self.model, self.symbols, self.config.eval_batch_size,
                                  self.config.seq_len, self.config.jit_compile)
        logs["val_bpc"] = bpc
        logs["step"] = self.state.interval[1]
