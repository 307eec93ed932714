"""Training a character language model with `model.fit`, truncated BPTT and exact resume.

`train(corpus, config, output_dir)` checks every setting, the data and the output directory
first, then builds the model and trains it for `config.steps` steps with Keras's own
`train_step` on any backend: Adam on the published mLSTM's linear decay, clipping of the
global gradient norm, the recurrent state carried from batch to batch by the model. Every
`eval_every` steps it validates in bits per character, saves the best model and a checkpoint;
at the end it scores the whole valid and test splits, writes `results.json`, the final model
and a sample. With `resume=True` it continues from the newest sound checkpoint exactly:
weights, optimizer state, step (which fixes the position in the data and the schedule), the
carried recurrent state and the dropout generators.
"""

import csv
import dataclasses
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings

import keras
import numpy as np

from keras_mulrnn import backend
from keras_mulrnn.data.batches import ShuffledWindows, TBPTTBatches
from keras_mulrnn.data.corpora import Corpus, file_mode
from keras_mulrnn.lm import files, interruption
from keras_mulrnn.lm.checkpoints import CheckpointManager, CheckpointMismatch, model_step
from keras_mulrnn.lm.config import OPERATIONAL, TrainConfig, check_fits, recurrent_params
from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.generation import check_generation_arguments, generate_after
from keras_mulrnn.lm.lock import hold_directory
from keras_mulrnn.lm.optimization import build_model

# Files of a run's output directory (besides checkpoints/ and tensorboard/).
RESULTS, BEST, BEST_INFO, FINAL, LOG = ("results.json", "best.keras", "best.json",
                                        "model.keras", "log.csv")
# The figures of `results.json` that are numbers (a file where one is not is damaged).
RESULT_FIGURES = ("valid_bpc", "test_bpc", "params", "steps", "chars_per_sec",
                  "train_seconds")
# A run whose final validation BPC comes within this of a uniform guess over its
# vocabulary (log2 V bits), or is worse, has diverged (or never learned): it is recorded
# as such in results.json and warned about, but its files are complete, so it exits as a
# finished run (status 0). (Its figures stand: a study counts it, with its BPC.)
DIVERGENCE_MARGIN = 0.01


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `train` after SIGINT or SIGTERM, once the checkpoint of the current step is
    written (or, after a second signal or during the final evaluation, with the newest
    checkpoint as it was); rerun with `resume=True` (`--resume`) to continue from there.

    A `KeyboardInterrupt`, so that what runs many trainings (the study, the tuner) stops
    rather than counting the run as failed. `what` says what happened and what was kept;
    `advice` how to continue (what runs many trainings gives its own)."""

    RESUME = "Run again with --resume to continue."

    def __init__(self, what, advice=RESUME):
        super().__init__(f"{what} {advice}")
        self.what = what


def train(corpus, config, output_dir, resume=False, verbose=1, extra_callbacks=()):
    """Trains on `corpus` and returns the results dict (also in `output_dir/results.json`).

    `verbose`: 0 silent, 1 a progress bar over the run's steps, 2 one line per validation.

    Raises:
        ValueError and OSError subclasses: bad settings, data or output directory, before
            anything is written.
        DirectoryInUse: another run holds `output_dir`.
        FloatingPointError: the loss became NaN or infinite (after `config.nan_rollbacks`
            roll-backs); the last good checkpoint is kept.
        TrainingInterrupted: SIGINT/SIGTERM; see the exception.
        KeyboardInterrupt: in a program (`keras_mulrnn.lm.interruption`), a Ctrl-C that came
            before the run began; nothing was trained.
    """
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(f"`output_dir` must be a path, not {type(output_dir).__name__}.")
    batches, valid = check_run(corpus, config)
    distribution = backend.make_distribution(config.strategy)
    distribution.check_batch(config.batch_size)
    # Every worker runs the same steps (checkpoints gather the carried state from all of
    # them), but only the chief writes into `output_dir`; the others write into a scratch
    # directory that is removed at the end. Resuming reads the chief's checkpoints.
    if not distribution.is_chief:
        scratch = tempfile.mkdtemp(prefix=f"keras_mulrnn-{distribution.worker_name}-")
        try:
            return _Run(corpus, config, batches, valid, distribution, os.fspath(output_dir),
                        scratch, resume, verbose, extra_callbacks).train()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    output_dir = _prepare_output(output_dir, resume)
    with hold_directory(output_dir):
        # Held: no other writer. A killed run may have left temporaries of its writes.
        files.remove_temporaries(output_dir, os.path.join(output_dir, "checkpoints"))
        _check_fresh(output_dir, resume)
        return _Run(corpus, config, batches, valid, distribution, output_dir, output_dir,
                    resume, verbose, extra_callbacks).train()


def check_run(corpus, config, splits=True):
    """Checks that `config` can train on `corpus`, every setting and (with `splits`) every
    split (the validation, the final scoring, the closing sample), before anything is built
    or written; returns the training batches and the validation symbols (None without
    `splits`)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a keras_mulrnn.TrainConfig, not "
                        f"{type(config).__name__}.")
    if not isinstance(corpus, Corpus):
        raise TypeError(f"`corpus` must be a keras_mulrnn.data.Corpus (load_text, "
                        f"load_enwik8, ...), not {type(corpus).__name__}.")
    config.validate()
    check_generation_arguments(config.sample_length, 1.0, None, config.seed,
                               len(corpus.vocabulary))
    check_fits(config, len(corpus.vocabulary))
    if not splits:
        return None, None
    batches = training_batches(corpus, config)
    valid = corpus.valid if config.valid_symbols is None else corpus.valid[: config.valid_symbols]
    for name, split, rows, flag in (
            ("validation", valid, config.eval_batch_size,
             "--eval-batch-size; the validation reads the first --valid-symbols symbols"),
            ("test", corpus.test, config.test_batch_size, "--test-batch-size"),
            ("valid", corpus.valid, config.test_batch_size, "--test-batch-size")):
        TBPTTBatches(split, rows, config.seq_len, name=name, rows_flag=flag)
    return batches, valid


def training_batches(corpus, config):
    """The training batches of `config` over the corpus's train split."""
    if config.shuffle:
        return ShuffledWindows(corpus.train, config.batch_size, config.seq_len,
                               seed=config.seed, name="train")
    return TBPTTBatches(corpus.train, config.batch_size, config.seq_len, min_batches=1,
                        name="train")


class _Run:
    """One call of `train`: the model, its output and its loop."""

    def __init__(self, corpus, config, batches, valid, distribution, chief_dir, output_dir,
                 resume, verbose, extra_callbacks):
        self.corpus, self.config, self.batches, self.valid = corpus, config, batches, valid
        self.distribution, self.chief_dir, self.output_dir = distribution, chief_dir, output_dir
        self.resume, self.verbose, self.extra_callbacks = resume, verbose, extra_callbacks
        self.meta = {"config": dataclasses.asdict(config),
                     "vocabulary": corpus.vocabulary.get_config(),
                     "data": corpus.fingerprint(), "learning_rate_scale": 1.0}

    def train(self):
        # From here on `_Signals` answers SIGINT and SIGTERM: a `KeyboardInterrupt` raised
        # while the model is built and traced could land in code that swallows it (a
        # garbage-collection callback), and the run would go on.
        self.manager = CheckpointManager(os.path.join(self.output_dir, "checkpoints"))
        self.monitor = _Monitor(self)
        with _Signals(self.monitor) as signals:
            return self._train(signals)

    def _train(self, signals):
        config, distribution = self.config, self.distribution
        keras.utils.set_random_seed(config.seed)
        compiled = config
        if config.jit_compile and not distribution.xla_supported():
            print("XLA cannot compile the all-reduce of several CPU replicas: this run trains "
                  "without it (evaluation still uses it).")
            compiled = dataclasses.replace(config, jit_compile=False)
        model = self.model = build_model(self.corpus.vocabulary, compiled,
                                         distribution=distribution)
        model.start_carry(config.batch_size, distribution)
        start = 0
        if self.resume:
            # Only the chief sets a damaged checkpoint aside; the other workers only read.
            restored = CheckpointManager(os.path.join(self.chief_dir, "checkpoints"),
                                         writable=self.distribution.is_chief) \
                .restore_latest(model, check=self._check_compatible)
            if restored is not None:
                start = restored["step"]
                self._set_learning_rate_scale(restored["learning_rate_scale"])
                if start < config.steps:
                    print(f"Resumed from step {start} of {config.steps}.")
            else:
                print(f"No checkpoint in {os.path.join(self.chief_dir, 'checkpoints')}: "
                      f"starting the run from step 0.")
        if start >= config.steps and self._finished_outputs():
            print(f"This run finished all {config.steps} steps earlier; its results are in "
                  f"{os.path.join(self.chief_dir, RESULTS)}.")
            return files.read_json(os.path.join(self.chief_dir, RESULTS), RESULT_FIGURES)

        started = time.perf_counter()
        self._fit(start, signals)
        train_seconds = time.perf_counter() - started - self.monitor.eval_seconds
        return self._finish(start, train_seconds)

    # ------------------------------------------------------------------ the loop

    def _fit(self, start, signals):
        config, model, monitor = self.config, self.model, self.monitor
        # The monitor stops on a NaN loss itself (Keras's TerminateOnNaN would only print a
        # second message about it).
        callbacks = [monitor]
        tensorboard = backend.tensorboard_callback(os.path.join(self.output_dir, "tensorboard"))
        if tensorboard is not None:
            callbacks.append(tensorboard)
        callbacks.extend(self.extra_callbacks)
        self.rollbacks = 0
        monitor.log.keep_until(start)
        if config.nan_rollbacks and start == 0:  # (every worker has the same start)
            self.manager.save(model, self.meta)  # something to roll back to from the start
        monitor.progress.start(start)
        while True:
            for first, last in intervals(model_step(model), config.steps, config.eval_every):
                monitor.interval = (first, last)
                model.fit(self.distribution.serve(self.batches, first, last - first),
                          initial_epoch=first // config.eval_every,
                          epochs=first // config.eval_every + 1, steps_per_epoch=last - first,
                          callbacks=callbacks, shuffle=False, verbose=0)
                if model.stop_training:
                    break
            if monitor.nonfinite_step is None:
                break
            self._roll_back()
        monitor.progress.end()
        # From here a signal stops the run at once. One that came after the last step's
        # callbacks (in `fit`'s teardown) was too late for them to act on: it stops the run
        # here, at its last step, which the last validation checkpointed.
        signals.phase = "final"
        if monitor.stop_requested and monitor.interrupted_at is None:
            monitor.interrupted_at = model_step(model)
        if monitor.interrupted_at is not None:
            raise TrainingInterrupted(
                f"Interrupted at step {monitor.interrupted_at} of {config.steps}; a checkpoint "
                f"of that step is in {self.manager.directory}.")
        steps_done = model_step(model)
        if steps_done < config.steps:
            raise RuntimeError(f"Training stopped at step {steps_done} of {config.steps}.")

    def _finish(self, start, train_seconds):
        """Scores the whole valid and test splits and writes the results first, then the
        final model and the sample."""
        config, model = self.config, self.model
        steps_done = model_step(model)
        valid_bpc, _ = evaluate_bpc(model, self.corpus.valid, config.test_batch_size,
                                    config.seq_len, config.jit_compile)
        test_bpc, test_symbols = evaluate_bpc(model, self.corpus.test, config.test_batch_size,
                                              config.seq_len, config.jit_compile)
        steps_run = steps_done - start
        uniform_bpc = math.log2(len(self.corpus.vocabulary))
        results = {
            "test_bpc": test_bpc,
            "valid_bpc": valid_bpc,
            "best_valid_bpc_during_training": self.monitor.best,
            "uniform_bpc": uniform_bpc,
            # (One symbol is certain: nothing to diverge from.)
            "diverged": bool(uniform_bpc > 0
                             and valid_bpc >= uniform_bpc - DIVERGENCE_MARGIN),
            "test_symbols": test_symbols,
            "params": model.count_params(),
            "recurrent_params": recurrent_params(config),
            "steps": steps_done,
            "steps_this_run": steps_run,
            "chars_per_sec": (steps_run * config.batch_size * config.seq_len
                              / max(train_seconds, 1e-9) if steps_run else None),
            "train_seconds": train_seconds if steps_run else None,
            "nan_rollbacks": self.rollbacks,
            "checkpoint_failures": self.monitor.checkpoint_failures,
            "config": dataclasses.asdict(config),
            "corpus": self.corpus.name,
            "data": self.meta["data"],
            "backend": backend.name(),
            "strategy": config.strategy,
            "code": code_version(),
        }
        if not steps_run:  # a finished run evaluated again: its training's figures stand
            results.update(self._previous_speed())
        if results["diverged"]:
            symbols = len(self.corpus.vocabulary)
            warnings.warn(
                f"The model is no better than a uniform guess over the {symbols} symbols: "
                f"validation BPC {valid_bpc:.4f}, a uniform guess {uniform_bpc:.4f}. "
                f"It diverged or never learned; try half the learning rate or more steps "
                f"(results.json says \"diverged\": true).", stacklevel=2)
        results_path = os.path.join(self.output_dir, RESULTS)
        files.write_json(results_path, results)
        files.save_model(model, os.path.join(self.output_dir, FINAL))
        prompt = self.corpus.test[:20]
        results["sample_prompt"] = self.corpus.vocabulary.decode(prompt)
        results["sample"] = generate_after(model, prompt, length=config.sample_length,
                                           seed=config.seed)
        files.write_json(results_path, results)
        return results

    def _previous_speed(self):
        """The speed figures of this run's earlier `results.json`, if it is readable."""
        try:
            previous = files.read_json(os.path.join(self.chief_dir, RESULTS),
                                       ("chars_per_sec", "train_seconds"))
        except (OSError, files.DamagedFile):
            return {}
        return {key: previous.get(key) for key in ("chars_per_sec", "train_seconds")
                if previous.get(key) is not None}

    def _finished_outputs(self):
        """Whether the results and the final model of a finished run are all there (a
        damaged `results.json` is not: the run evaluates again and rewrites it)."""
        path = os.path.join(self.chief_dir, RESULTS)
        if not (os.path.exists(os.path.join(self.chief_dir, FINAL)) and os.path.exists(path)):
            return False
        try:
            results = files.read_json(path, RESULT_FIGURES)
        except files.DamagedFile as error:
            warnings.warn(f"{error} The finished run is evaluated again to write it anew.",
                          stacklevel=2)
            return False
        length = (results.get("config") or {}).get("sample_length")
        if "sample" in results and length != self.config.sample_length:
            print(f"This run finished earlier with a sample of {length} symbols; "
                  f"--sample-length {self.config.sample_length} asks for another: evaluating "
                  f"it again to write the results with a new sample.")
            return False
        return "sample" in results

    # -------------------------------------------------------------- roll-back

    def _roll_back(self):
        """After a non-finite loss: raise, or restore the last good checkpoint and halve the
        learning rate (at most `config.nan_rollbacks` times)."""
        bad_step = self.monitor.nonfinite_step
        # A checkpoint holds the weights after its step's update, which the next step's loss
        # is the first to see: the checkpoint of the step before the bad one is ruined (its
        # weights gave the non-finite loss), and only older ones are good. With several
        # steps per execution the loss is seen once per execution: the bad step may be its
        # first. The ruined ones go, so that neither a roll-back nor a --resume returns to
        # them.
        per_execution = self.config.steps_per_execution
        self.manager.discard_after(bad_step - per_execution - 1)
        good = self.manager.steps()
        where = (f"the last good checkpoint (step {good[-1]}) is in {self.manager.directory}"
                 if good else "no good checkpoint was written before it")
        if bad_step == 1:
            raise FloatingPointError(
                "The training loss was NaN or infinite at the first step, from the initial "
                "weights: the data or the model's settings give a non-finite loss, which no "
                "learning rate changes.")
        if self.rollbacks >= self.config.nan_rollbacks:
            resume = ("Continue from it" if good else
                      "Run it again from step 0 (which it then checkpoints)")
            raise FloatingPointError(
                f"The training loss became NaN or infinite at step {bad_step}; {where}. "
                f"{resume} with --resume --nan-rollbacks N (it rolls back and halves the "
                f"learning rate, up to N times), or start a new run with a lower "
                f"--learning-rate or --clipnorm in another --output directory."
            )
        if not good:
            raise FloatingPointError(
                f"The training loss became NaN or infinite at step {bad_step} and {where}, so "
                f"there is nothing to roll back to."
            )
        restored = self.manager.restore_latest(self.model)
        self._set_learning_rate_scale(restored["learning_rate_scale"] * 0.5)
        print(f"Non-finite loss at step {bad_step}: rolled back to step {restored['step']} "
              f"with the learning rate scaled by {self.meta['learning_rate_scale']}.")
        self.monitor.nonfinite_step = None
        self.model.stop_training = False
        self.rollbacks += 1

    def _set_learning_rate_scale(self, scale):
        self.model.optimizer.learning_rate_scale.assign(scale)
        self.meta["learning_rate_scale"] = scale

    def _check_compatible(self, restored):
        meta = self.meta
        if restored["vocabulary"] != meta["vocabulary"]:
            raise CheckpointMismatch(
                "The checkpoint was trained on a different vocabulary than this data's. "
                "Resume with the same data, or start a new run in another --output directory."
            )
        if restored["data"] != meta["data"]:
            changed = sorted(split for split in meta["data"]
                             if restored["data"].get(split) != meta["data"][split])
            raise CheckpointMismatch(
                f"The data differs from the data this run started with ({', '.join(changed)} "
                f"changed). Resume with the same data file, or start a new run in another "
                f"--output directory."
            )
        # A setting that the checkpoint predates had its default value then. (A run may
        # resume on other devices: the carried state is saved for all rows.)
        saved = {**dataclasses.asdict(TrainConfig()), **restored["config"]}
        differing = sorted(
            key for key in meta["config"]
            if key not in OPERATIONAL and saved.get(key) != meta["config"][key]
        )
        if differing:
            details = ", ".join(
                f"{key}: checkpoint {saved.get(key)!r}, now "
                f"{meta['config'][key]!r}" for key in differing
            )
            raise CheckpointMismatch(
                f"The checkpoint's settings differ from this run's ({details}). Resume with "
                f"the same flags, or start a new run in another --output directory."
            )


def code_version():
    """The package version and, when the package runs from a git checkout of its own
    repository, its commit and whether files differ from it: what a result was computed
    with. An installed package has no commit of its own (a virtual environment inside
    another project's repository must not record that project's commit)."""
    import subprocess

    from keras_mulrnn import __version__

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(package)
    version = {"version": __version__, "commit": None, "modified": None}

    def git(*arguments):
        return subprocess.run(["git", *arguments], cwd=checkout, capture_output=True,
                              text=True, timeout=10)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or not _same_directory(top.stdout.strip(), checkout):
            return version
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return version
    if commit.returncode == 0:
        version.update(commit=commit.stdout.strip(), modified=bool(status.stdout.strip()))
    return version


def _same_directory(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def intervals(start, total, every):
    """`(first, last)` step ranges from `start` to `total` that end on multiples of `every`
    (a resumed run may start mid-interval, and the last interval may be short)."""
    step = start
    while step < total:
        last = min((step // every + 1) * every, total)
        yield step, last
        step = last


class _Progress:
    """The run's progress in its own terms: steps `a–b` of `N`, as a Keras progress bar over
    all the run's steps (verbose 1, on a terminal) or one line per validation (verbose 2, or
    1 when the output goes to a file)."""

    def __init__(self, total, verbose):
        if verbose == 1 and not sys.stdout.isatty():
            verbose = 2
        self.total, self.verbose, self.bar = total, verbose, None

    def start(self, step):
        if self.verbose == 1:
            self.bar = keras.utils.Progbar(self.total, unit_name="step",
                                           stateful_metrics=["loss", "bpc"])
            self.bar.update(step)

    def step(self, step, logs):
        if self.bar is not None:
            self.bar.update(step, [(key, float(np.reshape(logs[key], -1)[0]))
                                   for key in ("loss", "bpc") if key in logs])

    def validated(self, first, last, logs):
        if self.verbose == 2 or (self.bar is not None and last < self.total):
            parts = [f"{key} {float(np.reshape(logs[key], -1)[0]):.4f}"
                     for key in ("loss", "bpc", "val_bpc") if key in logs]
            print(("\n" if self.bar is not None else "")
                  + f"steps {first + 1}–{last} of {self.total}: " + ", ".join(parts),
                  flush=True)

    def end(self):
        if self.bar is not None:
            print(flush=True)


class _Monitor(keras.callbacks.Callback):
    """Counts the steps, watches the loss, validates, logs `val_bpc` and `step` (before the
    CSV and TensorBoard loggers read the logs), saves the best model and the checkpoints,
    shows the progress, and stops on request."""

    def __init__(self, run):
        super().__init__()
        self.run = run
        config = run.config
        self.best = _read_best(run.output_dir)
        self.eval_seconds = 0.0
        self.nonfinite_step = None
        self.stop_requested = False
        self.interrupted_at = None
        self.checkpoint_failures = []
        self.interval = (0, 0)
        self.progress = _Progress(config.steps, run.verbose)
        self.log = ValidationLog(os.path.join(run.output_dir, LOG))

    def on_train_batch_end(self, batch, logs=None):
        first, last = self.interval
        step = min(first + batch + 1, last)
        logs = logs or {}
        loss = logs.get("loss")
        # (One element, not a scalar, under a multi-worker strategy: see `step_logs`.)
        if loss is not None and not math.isfinite(float(np.reshape(loss, -1)[0])):
            # Never checkpoint these weights: the step that produced the loss updated them.
            self.nonfinite_step = step
            self.model.stop_training = True
            return
        self.progress.step(step, logs)
        every = self.run.config.checkpoint_every
        if self.stop_requested or (every and step % every == 0 and step < last):
            self.checkpoint()
        if self.stop_requested:
            self.interrupted_at = step
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nonfinite_step is not None or self.interrupted_at is not None:
            return
        run = self.run
        first, last = self.interval
        started = time.perf_counter()
        bpc, _ = evaluate_bpc(self.model, run.valid, run.config.eval_batch_size,
                              run.config.seq_len, run.config.jit_compile)
        if logs is not None:
            logs["val_bpc"] = bpc
            logs["step"] = last
        self.log.write(epoch, last, logs or {"val_bpc": bpc}, loss_steps=last - first)
        if self.best is None or bpc < self.best:
            self.best = bpc
            files.save_model(self.model, os.path.join(run.output_dir, BEST))
            files.write_json(os.path.join(run.output_dir, BEST_INFO),
                                  {"val_bpc": bpc, "step": last})
        self.checkpoint()
        self.progress.validated(first, last, logs or {"val_bpc": bpc})
        self.eval_seconds += time.perf_counter() - started
        if self.stop_requested:
            self.interrupted_at = last
            self.model.stop_training = True

    def checkpoint(self):
        try:
            self.run.manager.save(self.model, self.run.meta)
        except OSError as error:  # e.g. a full disk: keep training, keep the old checkpoint
            previous = self.run.manager.steps()
            message = (f"Could not write the checkpoint of step {model_step(self.model)} "
                       f"({type(error).__name__}: {error}); the previous checkpoint "
                       f"{'(step %d) is intact' % previous[-1] if previous else 'does not exist'}"
                       f". Training goes on; free space in {self.run.manager.directory}.")
            warnings.warn(message, stacklevel=2)
            self.checkpoint_failures.append(message)


class _Signals:
    """While a run lasts, SIGINT and SIGTERM stop it without losing anything.

    While the model is built, trained or validated, the first signal asks the monitor to
    checkpoint the current step (the first, while building) and stop; a second stops at once
    (the newest complete checkpoint is kept). In the final evaluation (`phase = "final"`),
    training is complete and checkpointed, so a signal stops at once; `--resume` evaluates
    again. A program's Ctrl-C from before the run, whose exception a library swallowed,
    stops it before anything is built.
    """

    def __init__(self, monitor):
        self.monitor = monitor
        self.phase = "training"
        self.previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        directory = self.monitor.run.manager.directory
        stop = None
        if self.phase == "final":
            stop = TrainingInterrupted(
                f"{name} during the final evaluation: training is complete and its last "
                f"checkpoint is in {directory}.", "Run again with --resume to evaluate.")
        elif self.monitor.stop_requested:
            steps = self.monitor.run.manager.steps()
            newest = f"step {steps[-1]}" if steps else "none yet"
            stop = TrainingInterrupted(
                f"{name} again: stopped at once. The newest complete checkpoint ({newest}) is "
                f"in {directory}.")
        if stop is not None:
            interruption.record(stop)  # in a program: raised again if a library swallows it
            raise stop
        self.monitor.stop_requested = True
        # Straight to the descriptor: the signal may have come in the middle of a write to a
        # buffered stream (output piped to a reader that paused), which a `print` here would
        # re-enter, and fail.
        try:
            os.write(2, f"\n{name}: saving a checkpoint at the end of this step (send it "
                        f"again to stop at once).\n".encode())
        except OSError:  # no standard error: nothing to say it on
            pass

    def __enter__(self):
        interruption.check()  # a program's Ctrl-C whose exception a library swallowed
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored: stays so
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


class ValidationLog:
    """`log.csv`: one row per validation (`epoch` is the validation's index), its columns
    fixed: the training `loss` and `bpc` average the `loss_steps` steps before `step`. An
    interval cut short by an interruption writes no row; a resumed run first drops the rows
    beyond its checkpoint, so the log reads as if the run had never stopped (but for the
    training loss of an interval that the resume cut in two, which averages the steps run
    after the resume: its `loss_steps` says how many)."""

    COLUMNS = ["epoch", "step", "loss", "bpc", "val_bpc", "loss_steps"]

    def __init__(self, path):
        self.path = path

    def rows(self):
        """The rows written so far (those of an older layout without a step are dropped). A
        log that cannot be read (not text, or not a file) is set aside as `log.csv.damaged`
        with a warning, and the log starts again: what it held cannot be rebuilt."""
        if not os.path.lexists(self.path):
            return []
        try:
            if not os.path.isfile(self.path):
                raise ValueError("it is not a regular file")
            with open(self.path, newline="", encoding="utf-8") as handle:
                return [row for row in csv.DictReader(handle)
                        if (row.get("step") or "").isdigit() and row.get("val_bpc")]
        except (ValueError, csv.Error) as error:  # (UnicodeDecodeError is a ValueError)
            os.replace(self.path, self.path + ".damaged")
            warnings.warn(f"{self.path!r} is damaged ({error}): set aside as "
                          f"{os.path.basename(self.path)}.damaged; the log starts again.",
                          stacklevel=2)
            return []

    def keep_until(self, step):
        """Keeps the rows of the validations up to `step` (the step a run starts from)."""
        kept = [row for row in self.rows() if int(row["step"]) <= step]
        files.write_csv(self.path, self.COLUMNS, kept)

    def write(self, epoch, step, logs, loss_steps):
        values = {"epoch": epoch, "step": step}
        for key in ("loss", "bpc", "val_bpc"):
            if key in logs:
                values[key] = float(np.reshape(logs[key], -1)[0])
        if "loss" in logs:
            values["loss_steps"] = loss_steps
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.COLUMNS).writerow(values)


def _read_best(output_dir):
    path = os.path.join(output_dir, BEST_INFO)
    if os.path.exists(path):
        try:
            return float(files.read_json(path, ("val_bpc",))["val_bpc"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged record: the next validation writes a new one
    return None


def _prepare_output(output_dir, resume):
    """Creates `output_dir` if needed and checks that it is a writable directory."""
    output_dir = os.fspath(output_dir)
    if not output_dir.strip():
        raise ValueError("--output is empty: give a directory for the run's files.")
    try:
        output_dir.encode("utf-8")
    except UnicodeEncodeError:  # bytes a command line could not decode (PEP 383)
        raise ValueError(f"--output {output_dir!r} holds bytes that are not UTF-8 (TensorBoard "
                         f"and TensorFlow take UTF-8 paths only): give a UTF-8 path.") from None
    if os.path.islink(output_dir):
        file_mode(output_dir, "--output directory")  # (a link must lead somewhere)
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
    return output_dir


def _check_fresh(output_dir, resume):
    """A new run (no `--resume`) refuses a directory that holds a run, and starts its logs
    anew in an empty one (with the directory held, so no other run can be writing them)."""
    if resume:
        return
    checkpoints = os.path.join(output_dir, "checkpoints")
    if (os.path.isdir(checkpoints) and os.listdir(checkpoints)) or os.path.exists(
            os.path.join(output_dir, RESULTS)):
        raise FileExistsError(
            f"{output_dir!r} already holds a run. Pass --resume to continue it, or choose "
            f"another --output directory."
        )
    for name in (LOG, BEST_INFO):
        if os.path.exists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
