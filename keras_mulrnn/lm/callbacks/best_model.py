"""The model of the best validation so far."""

import keras

from keras_mulrnn.lm import files, run_directory


class BestModel(keras.callbacks.Callback):
    """Saves `best.keras` (and its figures in `best.json`) whenever a validation beats every
    earlier one of the run, resumed runs included (`best` starts from `best.json`)."""

    def __init__(self, state, output_dir):
        super().__init__()
        self.state, self.output_dir = state, output_dir
        self.best = run_directory.read_best(output_dir)

    def on_epoch_end(self, epoch, logs=None):
        if self.state.halted:
            return
        bpc = logs["val_bpc"]
        if self.best is None or bpc < self.best:
            self.best = bpc
            with self.state.outside_training():
                files.save_model(self.model, run_directory.path(self.output_dir,
                                                                run_directory.BEST))
                files.write_json(run_directory.path(self.output_dir, run_directory.BEST_INFO),
                                 {"val_bpc": bpc, "step": logs["step"]})
