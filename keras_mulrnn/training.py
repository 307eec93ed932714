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
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings

import keras
import numpy as np

from keras_mulrnn.checkpoints import CheckpointManager
from keras_mulrnn.data.batches import ShuffledWindows, TBPTTBatches
from keras_mulrnn.distribute import (check_batch_split, check_strategy_name, distribute_batches,
                                     is_chief, make_strategy, worker_name, xla_supported)
from keras_mulrnn.evaluation import evaluate_bpc
from keras_mulrnn.generation import generate
from keras_mulrnn.model import BitsPerCharacter, CharLanguageModel
from keras_mulrnn.params import stack_params
from keras_mulrnn.validation import check_positive_int, check_rate, require_tensorflow


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
    Speed: `jit_compile` (XLA; on by default: it trained the mLSTM 1.2–1.4× faster on a
    2-core CPU, see BENCHMARKS.md), `steps_per_execution`. `seed` fixes initialization, dropout
    and data order. On a NaN or infinite loss the run stops, unless `nan_rollbacks > 0`: then
    it goes back to the last good checkpoint with half the learning rate, that many times.
    Devices: `strategy` is `"default"` (one device), `"mirrored"` (every GPU of this
    machine) or `"multiworker"` (the machines of `TF_CONFIG`); see `keras_mulrnn.distribute`.
    `batch_size` is the global batch (split across replicas) and nothing is rescaled.
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
    jit_compile: bool = True
    steps_per_execution: int = 1
    seed: int = 0
    sample_length: int = 200
    nan_rollbacks: int = 0
    strategy: str = "default"

    def validate(self):
        for name in ("units", "num_layers", "embedding_dim", "batch_size", "seq_len", "steps",
                     "eval_every", "eval_batch_size", "test_batch_size",
                     "steps_per_execution"):
            check_positive_int(name, getattr(self, name))
        if not self.learning_rate > 0:
            raise ValueError(
                f"Invalid value for `learning_rate`: received {self.learning_rate!r}. "
                f"Allowed: a number > 0."
            )
        check_strategy_name(self.strategy)
        model_config(self)  # builds nothing, but checks family, parametrization, rank, rates
        return self


def model_config(config):
    """The `CharLanguageModel` arguments of a `TrainConfig` (validated by a throwaway cell)."""
    from keras_mulrnn.factory import make_cell

    make_cell(config.family, config.parametrization, units=config.units, rank=config.rank,
              dropout=config.input_dropout, recurrent_dropout=config.recurrent_dropout)
    check_rate("output_dropout", config.output_dropout)
    names = ("family", "parametrization", "units", "rank", "num_layers", "embedding_dim",
             "input_dropout", "recurrent_dropout", "output_dropout", "weight_norm", "seed")
    return {name: getattr(config, name) for name in names}


@keras.saving.register_keras_serializable(package="keras_mulrnn")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`initial · scale · max(0, 1 − step / steps)`: the published mLSTM's linear decay.

    `scale` is a variable so that a run that rolls back after a non-finite loss can lower the
    learning rate without rebuilding the optimizer.
    """

    def __init__(self, initial, steps, scale=1.0):
        self.initial, self.steps = initial, steps
        self.scale = keras.Variable(scale, trainable=False, name="learning_rate_scale")

    def __call__(self, step):
        progress = keras.ops.cast(step, "float32") / self.steps
        return self.initial * self.scale * keras.ops.maximum(0.0, 1.0 - progress)

    def get_config(self):
        return {"initial": self.initial, "steps": self.steps,
                "scale": float(self.scale.numpy())}


def build_model(vocabulary, config, schedule=None):
    """A compiled `CharLanguageModel` for `config`, its weights and optimizer built; the
    learning rate follows `schedule` (default: `LinearDecay` over `config.steps`)."""
    model = CharLanguageModel(vocabulary, **model_config(config))
    # The model clips the gradient of the whole global batch itself (see `_clipped`).
    model.gradient_clipnorm = config.clipnorm
    schedule = schedule or LinearDecay(config.learning_rate, config.steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[BitsPerCharacter()],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    model(keras.ops.zeros((1, 1), "int32"))
    model.optimizer.build(model.trainable_variables)
    return model


class TrainingInterrupted(Exception):
    """Raised by `train` after SIGINT or SIGTERM, once the checkpoint of the current step is
    written; rerun with `resume=True` (`--resume`) to continue exactly from there."""


def train(corpus, config, output_dir, resume=False, verbose=1, extra_callbacks=()):
    """Trains on `corpus` and returns the results dict (also in `output_dir/results.json`).

    Raises:
        ValueError and OSError subclasses: bad settings, data or output directory, before
            anything is written.
        FloatingPointError: the loss became NaN or infinite (after `config.nan_rollbacks`
            roll-backs); the last good checkpoint is kept.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint of the current step was written.
    """
    require_tensorflow("train()")
    config.validate()
    # Everything about the data is checked before the output directory is touched.
    if config.shuffle:
        batches = ShuffledWindows(corpus.train, config.batch_size, config.seq_len,
                                  seed=config.seed, name="train")
    else:
        batches = TBPTTBatches(corpus.train, config.batch_size, config.seq_len,
                               min_batches=1, name="train")
    valid = corpus.valid if config.valid_symbols is None else corpus.valid[: config.valid_symbols]
    for name, split in (("valid", valid), ("test", corpus.test)):
        TBPTTBatches(split, config.eval_batch_size if name == "valid" else config.test_batch_size,
                     config.seq_len, name=name)
    strategy = make_strategy(config.strategy)
    check_batch_split(config.batch_size, strategy)
    chief = is_chief(strategy)
    # Every worker runs the same steps (checkpoints gather the carried state from all of
    # them), but only the chief writes into `output_dir`; the others write into a scratch
    # directory that is removed at the end. Resuming reads the chief's checkpoints.
    chief_dir = _prepare_output(output_dir, resume) if chief else os.fspath(output_dir)
    output_dir = chief_dir if chief else tempfile.mkdtemp(
        prefix=f"keras_mulrnn-{worker_name(strategy)}-")
    try:
        return _train(corpus, config, batches, valid, strategy, chief_dir, output_dir, resume,
                      verbose, extra_callbacks)
    finally:
        if not chief:
            shutil.rmtree(output_dir, ignore_errors=True)


def _train(corpus, config, batches, valid, strategy, chief_dir, output_dir, resume, verbose,
           extra_callbacks):
    keras.utils.set_random_seed(config.seed)
    schedule = LinearDecay(config.learning_rate, config.steps)
    compiled = config
    if config.jit_compile and not xla_supported(strategy):
        print("XLA cannot compile the all-reduce of several CPU replicas: this run trains "
              "without it (evaluation still uses it).")
        compiled = dataclasses.replace(config, jit_compile=False)
    with strategy.scope():
        model = build_model(corpus.vocabulary, compiled, schedule)
    model.start_carry(config.batch_size,
                      1 if batches.resets_every_batch else batches.batches_per_pass)
    manager = CheckpointManager(os.path.join(output_dir, "checkpoints"))
    meta = {"config": dataclasses.asdict(config), "vocabulary": corpus.vocabulary.get_config(),
            "learning_rate_scale": 1.0}
    start = 0
    if resume:
        restored = CheckpointManager(os.path.join(chief_dir, "checkpoints")).restore_latest(
            model, check=lambda saved: _check_compatible(saved, meta))
        if restored is not None:
            start = restored["step"]
            _set_learning_rate_scale(schedule, meta, restored["learning_rate_scale"])
            print(f"Resumed from step {start} of {config.steps}.")
    monitor = _Monitor(manager, meta, valid, config, output_dir)
    callbacks = [monitor, keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.CSVLogger(os.path.join(output_dir, "log.csv"), append=True)]
    if _has_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    callbacks.extend(extra_callbacks)

    started = time.perf_counter()
    rollbacks = 0
    with _SignalsStop(monitor):
        while True:
            step = int(model.optimizer.iterations.numpy())
            for first_epoch, last_epoch, per_epoch, first_step in _segments(
                step, config.steps, config.eval_every
            ):
                model.fit(distribute_batches(strategy, batches.dataset(start_step=first_step)),
                          initial_epoch=first_epoch,
                          epochs=last_epoch, steps_per_epoch=per_epoch, callbacks=callbacks,
                          shuffle=False, verbose=verbose)
                if model.stop_training:
                    break
            if monitor.nonfinite_step is None:
                break
            rollbacks = _roll_back(model, schedule, manager, meta, monitor, config, rollbacks)
    if monitor.interrupted_at is not None:
        raise TrainingInterrupted(
            f"Interrupted at step {monitor.interrupted_at} of {config.steps}; a checkpoint "
            f"of that step is in {manager.directory}. Run again with --resume to continue."
        )
    train_seconds = time.perf_counter() - started - monitor.eval_seconds
    steps_done = int(model.optimizer.iterations.numpy())
    if steps_done < config.steps:
        raise RuntimeError(f"Training stopped at step {steps_done} of {config.steps}.")

    valid_bpc, _ = evaluate_bpc(model, corpus.valid, config.test_batch_size, config.seq_len,
                                config.jit_compile)
    test_bpc, test_symbols = evaluate_bpc(model, corpus.test, config.test_batch_size,
                                          config.seq_len, config.jit_compile)
    _atomic_save(model, os.path.join(output_dir, "model.keras"))
    results = {
        "test_bpc": test_bpc,
        "valid_bpc": valid_bpc,
        "best_valid_bpc_during_training": monitor.best,
        "test_symbols": test_symbols,
        "params": model.count_params(),
        "recurrent_params": stack_params(
            config.family, config.parametrization, config.units, config.embedding_dim,
            config.rank, config.num_layers, weight_norm=config.weight_norm,
        ),
        "steps": steps_done,
        "steps_this_run": steps_done - start,
        "chars_per_sec": (steps_done - start) * config.batch_size * config.seq_len
        / max(train_seconds, 1e-9),
        "train_seconds": train_seconds,
        "nan_rollbacks": rollbacks,
        "checkpoint_failures": monitor.checkpoint_failures,
        "config": dataclasses.asdict(config),
        "corpus": corpus.name,
    }
    prompt = corpus.vocabulary.decode(corpus.test[:20])
    results["sample_prompt"] = prompt
    results["sample"] = generate(model, prompt, length=config.sample_length, seed=config.seed)
    write_json_atomically(os.path.join(output_dir, "results.json"), results)
    return results


def _roll_back(model, schedule, manager, meta, monitor, config, rollbacks):
    """After a non-finite loss: raise, or restore the last good checkpoint and halve the
    learning rate (at most `config.nan_rollbacks` times). Returns the roll-back count."""
    bad_step = monitor.nonfinite_step
    good = manager.steps()
    where = (f"the last good checkpoint (step {good[-1]}) is in {manager.directory}"
             if good else "no checkpoint was written before it")
    if rollbacks >= config.nan_rollbacks:
        raise FloatingPointError(
            f"The training loss became NaN or infinite at step {bad_step}; {where}. Lower "
            f"--learning-rate or --clipnorm, or pass --nan-rollbacks N to roll back "
            f"automatically."
        )
    if not good:
        raise FloatingPointError(
            f"The training loss became NaN or infinite at step {bad_step} and {where}, so "
            f"there is nothing to roll back to."
        )
    restored = manager.restore_latest(model)
    _set_learning_rate_scale(schedule, meta, restored["learning_rate_scale"] * 0.5)
    print(f"Non-finite loss at step {bad_step}: rolled back to step {restored['step']} with "
          f"the learning rate scaled by {meta['learning_rate_scale']}.")
    monitor.nonfinite_step = None
    return rollbacks + 1


def _set_learning_rate_scale(schedule, meta, scale):
    schedule.scale.assign(scale)
    meta["learning_rate_scale"] = scale


class _SignalsStop:
    """While training: SIGINT or SIGTERM asks `monitor` to checkpoint the current step and
    stop; a second signal interrupts at once."""

    def __init__(self, monitor):
        self.monitor = monitor
        self.previous = {}

    def _handle(self, signum, frame):
        if self.monitor.stop_requested:
            raise KeyboardInterrupt
        self.monitor.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this step "
              f"(send it again to stop at once).", flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


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
    """Watches the loss, validates, logs `val_bpc` (before the CSV and TensorBoard loggers
    read the logs), saves the best model and the checkpoints, and stops on request."""

    def __init__(self, manager, meta, valid, config, output_dir):
        super().__init__()
        self.manager, self.meta, self.valid, self.config = manager, meta, valid, config
        self.output_dir = output_dir
        self.best = _read_best(output_dir)
        self.eval_seconds = 0.0
        self.nonfinite_step = None
        self.stop_requested = False
        self.interrupted_at = None
        self.checkpoint_failures = []

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        self._step_before = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        loss = (logs or {}).get("loss")
        # (One element, not a scalar, under a multi-worker strategy: see `train_step`.)
        if loss is not None and not math.isfinite(float(np.reshape(loss, -1)[0])):
            # Never checkpoint these weights: the step that produced the loss updated them.
            self.nonfinite_step = step
            self.model.stop_training = True
            return
        every = self.config.checkpoint_every
        if self.stop_requested or (every and step // every != self._step_before // every):
            self._checkpoint()
        if self.stop_requested:
            self.interrupted_at = step
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nonfinite_step is not None or self.interrupted_at is not None:
            return
        started = time.perf_counter()
        bpc, _ = evaluate_bpc(self.model, self.valid, self.config.eval_batch_size,
                              self.config.seq_len, self.config.jit_compile)
        if logs is not None:
            logs["val_bpc"] = bpc
        if self.best is None or bpc < self.best:
            self.best = bpc
            _atomic_save(self.model, os.path.join(self.output_dir, "best.keras"))
            write_json_atomically(os.path.join(self.output_dir, "best.json"),
                               {"val_bpc": bpc, "step": self._step()})
        self._checkpoint()
        self.eval_seconds += time.perf_counter() - started

    def _checkpoint(self):
        try:
            self.manager.save(self.model, self.meta)
        except OSError as error:  # e.g. a full disk: keep training, keep the old checkpoint
            previous = self.manager.steps()
            message = (f"Could not write the checkpoint of step {self._step()} "
                       f"({type(error).__name__}: {error}); the previous checkpoint "
                       f"{'(step %d) is intact' % previous[-1] if previous else 'does not exist'}"
                       f". Training goes on; free space in {self.manager.directory}.")
            warnings.warn(message, stacklevel=2)
            self.checkpoint_failures.append(message)


def _atomic_save(model, path):
    temporary = path + ".tmp.keras"
    model.save(temporary)
    os.replace(temporary, path)


def write_json_atomically(path, value):
    """Writes `value` as JSON to `path` via a temporary file: a crash leaves the old file."""
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(value, handle, indent=1)
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
    # A run may resume on other devices: the carried state is saved for all rows.
    differing = sorted(
        key for key in meta["config"]
        if key != "strategy" and restored["config"].get(key) != meta["config"][key]
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
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass  # a real write: permission bits alone say nothing for root or read-only mounts
    except OSError as error:
        raise PermissionError(
            f"--output {output_dir!r} is not writable ({error.strerror or error}); choose "
            f"another directory."
        ) from None
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
