"""Training a character language model with `model.fit`, truncated BPTT and exact resume.

`train(corpus, config, output_dir)` builds the model, trains it for `config.steps` steps with
Adam on the linear-decay schedule of the published mLSTM, gradient-norm clipping, a Keras
progress bar, CSV and TensorBoard logs, `TerminateOnNaN`, validation in bits per character,
checkpoints (latest and best), and writes `results.json`. With `resume=True` it continues
from the latest checkpoint exactly: weights, optimizer state, step (which fixes the position
in the data and the schedule) and the carried recurrent state.
"""

import dataclasses
import json
import os
import time

import keras

from keras_mulrnn.checkpoints import CheckpointManager
from keras_mulrnn.data.batches import ShuffledWindows, TBPTTBatches
from keras_mulrnn.evaluation import evaluate_bpc
from keras_mulrnn.generation import generate
from keras_mulrnn.model import BitsPerCharacter, CharLanguageModel
from keras_mulrnn.params import count_params


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Model: `family`, `parametrization`, `units`, `rank`, `num_layers`, `embedding_dim`,
    `input_dropout`, `recurrent_dropout`, `output_dropout`, `weight_norm` (see
    `CharLanguageModel`). Data: `batch_size` rows of `seq_len` symbols; `shuffle=True` trains
    on shuffled independent windows instead of carried-state TBPTT. Optimization: `steps`,
    `learning_rate` (decayed linearly to 0 over `steps`), `clipnorm` (global gradient norm).
    Bookkeeping: validate and checkpoint every `eval_every` steps (validation on at most
    `valid_symbols` symbols of the valid split, all when None, in rows of `eval_batch_size`),
    also checkpoint every `checkpoint_every` steps; the final valid and test figures score
    the whole splits in rows of `test_batch_size` (1 = the papers' protocol).
    Speed: `jit_compile` (XLA), `steps_per_execution`. `seed` fixes initialization, dropout
    and data order.
    """

    family: str = "lstm"
    parametrization: str = "shared"
    units: int = 512
    rank: int = None
    num_layers: int = 1
    embedding_dim: int = 64
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    output_dropout: float = 0.0
    weight_norm: bool = False
    batch_size: int = 32
    seq_len: int = 100
    shuffle: bool = False
    steps: int = 1000
    learning_rate: float = 1e-3
    clipnorm: float = 1.0
    eval_every: int = 200
    checkpoint_every: int = None
    valid_symbols: int = None
    eval_batch_size: int = 16
    test_batch_size: int = 1
    jit_compile: bool = False
    steps_per_execution: int = 1
    seed: int = 0
    sample_length: int = 200

    def validate(self):
        for name in ("units", "num_layers", "embedding_dim", "batch_size", "seq_len", "steps",
                     "eval_every", "eval_batch_size", "test_batch_size",
                     "steps_per_execution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Invalid value for `{name}`: received {value!r}. Allowed: a positive "
                    f"integer."
                )
        if not self.learning_rate > 0:
            raise ValueError(
                f"Invalid value for `learning_rate`: received {self.learning_rate!r}. "
                f"Allowed: a number > 0."
            )
        model_config(self)  # builds nothing, but checks family, parametrization, rank, rates
        return self


def model_config(config):
    """The `CharLanguageModel` arguments of a `TrainConfig` (validated by a throwaway cell)."""
    from keras_mulrnn.factory import make_cell

    make_cell(config.family, config.parametrization, units=config.units, rank=config.rank,
              dropout=config.input_dropout, recurrent_dropout=config.recurrent_dropout)
    if not 0 <= config.output_dropout < 1:
        raise ValueError(
            f"Invalid value for `output_dropout`: received {config.output_dropout!r}. "
            f"Allowed: a float in [0, 1)."
        )
    names = ("family", "parametrization", "units", "rank", "num_layers", "embedding_dim",
             "input_dropout", "recurrent_dropout", "output_dropout", "weight_norm", "seed")
    return {name: getattr(config, name) for name in names}


def build_model(vocabulary, config):
    """A compiled `CharLanguageModel` for `config`, its weights and optimizer built."""
    model = CharLanguageModel(vocabulary, **model_config(config))
    schedule = keras.optimizers.schedules.PolynomialDecay(
        config.learning_rate, decay_steps=config.steps, end_learning_rate=0.0, power=1.0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, global_clipnorm=config.clipnorm),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[BitsPerCharacter()],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    model(keras.ops.zeros((1, 1), "int32"))
    model.optimizer.build(model.trainable_variables)
    return model


def train(corpus, config, output_dir, resume=False, verbose=1, extra_callbacks=()):
    """Trains on `corpus` and returns the results dict (also in `output_dir/results.json`)."""
    config.validate()
    output_dir = _prepare_output(output_dir, resume)
    keras.utils.set_random_seed(config.seed)
    if config.shuffle:
        batches = ShuffledWindows(corpus.train, config.batch_size, config.seq_len,
                                  seed=config.seed, name="train")
    else:
        batches = TBPTTBatches(corpus.train, config.batch_size, config.seq_len,
                               min_batches=1, name="train")
    model = build_model(corpus.vocabulary, config)
    model.start_carry(config.batch_size,
                      1 if batches.resets_every_batch else batches.batches_per_pass)
    manager = CheckpointManager(os.path.join(output_dir, "checkpoints"))
    meta = {"config": dataclasses.asdict(config), "vocabulary": corpus.vocabulary.get_config()}
    start = 0
    if resume:
        restored = manager.restore_latest(model, check=lambda saved: _check_compatible(saved, meta))
        if restored is not None:
            start = restored["step"]
            print(f"Resumed from step {start} of {config.steps}.")
    valid = corpus.valid if config.valid_symbols is None else corpus.valid[: config.valid_symbols]
    monitor = _Monitor(manager, meta, valid, config, output_dir)
    callbacks = [monitor, keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.CSVLogger(os.path.join(output_dir, "log.csv"), append=True)]
    if _has_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    callbacks.extend(extra_callbacks)

    started = time.perf_counter()
    for first_epoch, last_epoch, per_epoch, step in _segments(start, config.steps,
                                                               config.eval_every):
        model.fit(batches.dataset(start_step=step), initial_epoch=first_epoch,
                  epochs=last_epoch, steps_per_epoch=per_epoch, callbacks=callbacks,
                  shuffle=False, verbose=verbose)
        if model.stop_training:
            break
    train_seconds = time.perf_counter() - started - monitor.eval_seconds
    steps_done = int(model.optimizer.iterations.numpy())
    if steps_done < config.steps:
        raise RuntimeError(
            f"Training stopped at step {steps_done} of {config.steps} (non-finite loss?). "
            f"The last good checkpoint is in {manager.directory}."
        )

    valid_bpc, _ = evaluate_bpc(model, corpus.valid, config.test_batch_size, config.seq_len,
                                config.jit_compile)
    test_bpc, test_symbols = evaluate_bpc(model, corpus.test, config.test_batch_size,
                                          config.seq_len, config.jit_compile)
    model.save(os.path.join(output_dir, "model.keras"))
    results = {
        "test_bpc": test_bpc,
        "valid_bpc": valid_bpc,
        "best_valid_bpc_during_training": monitor.best,
        "test_symbols": test_symbols,
        "params": model.count_params(),
        "recurrent_params": sum(
            count_params(config.family, config.parametrization, config.units,
                         config.embedding_dim if index == 0 else config.units, config.rank,
                         weight_norm=config.weight_norm)
            for index in range(config.num_layers)
        ),
        "steps": steps_done,
        "steps_this_run": steps_done - start,
        "chars_per_sec": (steps_done - start) * config.batch_size * config.seq_len
        / max(train_seconds, 1e-9),
        "train_seconds": train_seconds,
        "config": dataclasses.asdict(config),
        "corpus": corpus.name,
    }
    prompt = corpus.vocabulary.decode(corpus.test[:20])
    results["sample_prompt"] = prompt
    results["sample"] = generate(model, prompt, length=config.sample_length, seed=config.seed)
    with open(os.path.join(output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    return results


def _segments(start, total, per_epoch):
    """`fit` calls `(initial_epoch, epochs, steps_per_epoch, first_step)` from `start` to
    `total` whose epochs end on multiples of `per_epoch` (a resumed run may start mid-epoch,
    and the last epoch may be short)."""
    step = start
    while step < total:
        epoch = step // per_epoch
        if step % per_epoch or total - step < per_epoch:
            length = min(per_epoch - step % per_epoch, total - step)
            yield epoch, epoch + 1, length, step
            step += length
        else:
            epochs = (total - step) // per_epoch
            yield epoch, epoch + epochs, per_epoch, step
            step += epochs * per_epoch


class _Monitor(keras.callbacks.Callback):
    """Validates, logs `val_bpc` (before the CSV and TensorBoard loggers read the logs),
    saves the best model and checkpoints."""

    def __init__(self, manager, meta, valid, config, output_dir):
        super().__init__()
        self.manager, self.meta, self.valid, self.config = manager, meta, valid, config
        self.best_path = os.path.join(output_dir, "best.keras")
        self.best = _read_best(output_dir)
        self.output_dir = output_dir
        self.eval_seconds = 0.0
        self.last_checkpoint = None

    def on_train_batch_end(self, batch, logs=None):
        every = self.config.checkpoint_every
        step = int(self.model.optimizer.iterations.numpy())
        if every and step // every != (self.last_checkpoint or 0) // every:
            self.manager.save(self.model, self.meta)
            self.last_checkpoint = step

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        bpc, _ = evaluate_bpc(self.model, self.valid, self.config.eval_batch_size,
                              self.config.seq_len, self.config.jit_compile)
        if logs is not None:
            logs["val_bpc"] = bpc
        if self.best is None or bpc < self.best:
            self.best = bpc
            _atomic_save(self.model, self.best_path)
            with open(os.path.join(self.output_dir, "best.json"), "w") as handle:
                step = int(self.model.optimizer.iterations.numpy())
                json.dump({"val_bpc": bpc, "step": step}, handle)
        self.manager.save(self.model, self.meta)
        self.last_checkpoint = int(self.model.optimizer.iterations.numpy())
        self.eval_seconds += time.perf_counter() - started


def _atomic_save(model, path):
    temporary = path + ".tmp.keras"
    model.save(temporary)
    os.replace(temporary, path)


def _read_best(output_dir):
    path = os.path.join(output_dir, "best.json")
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)["val_bpc"]
    return None


def _check_compatible(restored, meta):
    if restored["vocabulary"] != meta["vocabulary"]:
        raise ValueError(
            "The checkpoint was trained on a different vocabulary than this data's. Resume "
            "with the same data, or start a new run in another --output directory."
        )
    differing = sorted(
        key for key in meta["config"] if restored["config"].get(key) != meta["config"][key]
    )
    if differing:
        details = ", ".join(
            f"{key}: checkpoint {restored['config'].get(key)!r}, now {meta['config'][key]!r}"
            for key in differing
        )
        raise ValueError(
            f"The checkpoint's settings differ from this run's ({details}). Resume with the "
            f"same flags, or start a new run in another --output directory."
        )


def _prepare_output(output_dir, resume):
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(
            f"--output {output_dir!r} is a file; give a directory for checkpoints and logs."
        )
    os.makedirs(output_dir, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise PermissionError(f"--output {output_dir!r} is not writable; choose another one.")
    if not resume:
        checkpoints = os.path.join(output_dir, "checkpoints")
        if os.path.isdir(checkpoints) and os.listdir(checkpoints):
            raise FileExistsError(
                f"{output_dir!r} already holds checkpoints of a run. Pass --resume to "
                f"continue it, or choose another --output directory."
            )
        for name in ("log.csv", "best.json"):
            if os.path.exists(os.path.join(output_dir, name)):
                os.remove(os.path.join(output_dir, name))
    return output_dir


def _has_tensorboard():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
