"""One worker of the multi-worker test: trains a small model under
`MultiWorkerMirroredStrategy` (the cluster from TF_CONFIG) and saves the weights it ends
with, so that the test can compare the workers.

    python tests/distributed_worker.py OUTPUT_DIR WEIGHTS.npz
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
keras.config.disable_traceback_filtering()
import numpy as np  # noqa: E402

from keras_mulrnn.data import corpora  # noqa: E402
from keras_mulrnn.distribute import make_strategy  # noqa: E402
from keras_mulrnn.training import TrainConfig, train  # noqa: E402

TEXT = ("Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous "
        "fortune, or to take arms against a sea of troubles.\n") * 20


class KeepWeights(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()


def main(output_dir, weights_path):
    make_strategy("multiworker")  # joins the cluster before TensorFlow runs anything else
    corpus = corpora.corpus_from_text("hamlet", TEXT, (0.8, 0.13, 0.07))
    config = TrainConfig(units=12, rank=6, embedding_dim=6, batch_size=4, seq_len=16, steps=6,
                         eval_every=3, learning_rate=1e-2, clipnorm=0.05, eval_batch_size=2,
                         test_batch_size=4, sample_length=5, seed=3, jit_compile=False,
                         strategy="multiworker")
    keep = KeepWeights()
    results = train(corpus, config, output_dir, verbose=0, extra_callbacks=[keep])
    np.savez(weights_path, *keep.weights, test_bpc=results["test_bpc"])


if __name__ == "__main__":
    main(*sys.argv[1:])
