"""The optimizer of a training run: Adam on the published mLSTM's linear decay, clipping the
gradient of the whole global batch; and `build_model`, which makes the compiled model."""

import keras
import numpy as np
from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.lm.config import model_arguments
from keras_mulrnn.lm.model import BitsPerCharacter, CharLanguageModel


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`initial · max(0, 1 − step / steps)`: the published mLSTM's linear decay."""

    def __init__(self, initial, steps):
        self.initial, self.steps = initial, steps

    def __call__(self, step):
        progress = ops.cast(step, "float32") / self.steps
        return self.initial * ops.maximum(0.0, 1.0 - progress)

    def get_config(self):
        return {"initial": self.initial, "steps": self.steps}


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class GlobalClipAdam(keras.optimizers.Adam):
    """Adam whose `global_clipnorm` clips the gradient of the whole global batch, and whose
    learning rate is scaled by the variable `learning_rate_scale`.

    Keras clips each replica's share of the gradient before the shares are summed, which
    under `tf.distribute` is not what one device computes; here the shares are summed first
    (one extra all-reduce), clipped as one, and handed on as equal shares that the optimizer
    sums back. Where the step already sees the whole batch (one device, JAX), this is Keras's
    own clipping.

    The scale (1 at first) is optimizer state, like the step count: every backend's trainer
    reads its current value (a run that rolls back after a non-finite loss halves it), and
    checkpoints save it with the other optimizer variables.
    """

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.learning_rate_scale = self.add_variable(shape=(), initializer="ones",
                                                     name="learning_rate_scale")

    def _get_current_learning_rate(self):
        rate = super()._get_current_learning_rate()
        scale = getattr(self, "learning_rate_scale", None)  # (None before `build`)
        return rate if scale is None else rate * scale

    def _clip_gradients(self, grads):
        if not self.global_clipnorm:
            return super()._clip_gradients(grads)
        total, replicas = backend.replica_sum(grads)
        norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in total))
        scale = self.global_clipnorm / ops.maximum(norm, self.global_clipnorm)
        return [ops.cast(g * scale / replicas, g.dtype) for g in total]


def build_model(vocabulary, config, distribution=None):
    """A compiled `CharLanguageModel` for `config` with its weights, optimizer, loss and
    metrics built (in `distribution`'s scope); the learning rate decays linearly over
    `config.steps` (`LinearDecay`)."""
    distribution = distribution or backend.make_distribution("default")
    with distribution.scope():
        model = CharLanguageModel(vocabulary, **model_arguments(config),
                                  dtype=config.precision)
        model.compile(
            optimizer=GlobalClipAdam(LinearDecay(config.learning_rate, config.steps),
                                     global_clipnorm=config.clipnorm),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[BitsPerCharacter()],
            jit_compile=config.jit_compile,
            steps_per_execution=config.steps_per_execution,
        )
        ids = np.zeros((1, config.seq_len), "int32")
        model(ids)
        model._symbolic_build(data_batch=(ids, ids, np.ones(ids.shape, "float32")))
    return model
