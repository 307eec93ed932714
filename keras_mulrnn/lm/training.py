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

import dataclasses
import math
import os
import shutil
import tempfile
import time
import warnings

import keras

from keras_mulrnn import backend
from keras_mulrnn.data.batches import ShuffledWindows, TBPTTBatches
from keras_mulrnn.data.corpora import Corpus
from keras_mulrnn.lm import files, run_directory
from keras_mulrnn.lm.callbacks import RunCallbacks, RunState
from keras_mulrnn.lm.checkpoints import CheckpointManager, check_compatible, model_step
from keras_mulrnn.lm.config import TrainConfig, check_fits, recurrent_params
from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.generation import check_generation_arguments, sample
from keras_mulrnn.lm.interruption import RunSignals, TrainingInterrupted
from keras_mulrnn.lm.lock import hold_directory
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.lm.provenance import code_version
from keras_mulrnn.lm.run_directory import FINAL, RESULT_FIGURES, RESULTS

# A run whose final validation BPC comes within this of a uniform guess over its
# vocabulary (log2 V bits), or is worse, has diverged (or never learned): it is recorded
# as such in results.json and warned about, but its files are complete, so it exits as a
# finished run (status 0). (Its figures stand: a study counts it, with its BPC.)
DIVERGENCE_MARGIN = 0.01


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
    output_dir = run_directory.prepare(output_dir)
    with hold_directory(output_dir):
        # Held: no other writer. A killed run may have left temporaries of its writes.
        files.remove_temporaries(output_dir,
                                 run_directory.path(output_dir, run_directory.CHECKPOINTS))
        run_directory.check_fresh(output_dir, resume)
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
        self.state = RunState()
        self.manager = CheckpointManager(run_directory.path(self.output_dir,
                                                            run_directory.CHECKPOINTS))
        self.callbacks = RunCallbacks(self.state, valid=self.valid, config=self.config,
                                      output_dir=self.output_dir, manager=self.manager,
                                      meta=self.meta, verbose=self.verbose)
        # From here on `RunSignals` answers SIGINT and SIGTERM: a `KeyboardInterrupt` raised
        # while the model is built and traced could land in code that swallows it (a
        # garbage-collection callback), and the run would go on.
        with RunSignals(self.state, self.manager) as signals:
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
            chief = CheckpointManager(run_directory.path(self.chief_dir,
                                                         run_directory.CHECKPOINTS),
                                      writable=self.distribution.is_chief)
            restored = chief.restore_latest(
                model, check=lambda saved: check_compatible(saved, self.meta))
            if restored is not None:
                start = restored["step"]
                self._set_learning_rate_scale(restored["learning_rate_scale"])
                if start < config.steps:
                    print(f"Resumed from step {start} of {config.steps}.")
            else:
                print(f"No checkpoint in {chief.directory}: starting the run from step 0.")
        if start >= config.steps and run_directory.finished(self.chief_dir,
                                                            config.sample_length):
            print(f"This run finished all {config.steps} steps earlier; its results are in "
                  f"{run_directory.path(self.chief_dir, RESULTS)}.")
            return files.read_json(run_directory.path(self.chief_dir, RESULTS), RESULT_FIGURES)

        started = time.perf_counter()
        self._fit(start, signals)
        train_seconds = time.perf_counter() - started - self.state.eval_seconds
        return self._finish(start, train_seconds)

    # ------------------------------------------------------------------ the loop

    def _fit(self, start, signals):
        config, model, state, progress = self.config, self.model, self.state, \
            self.callbacks.progress
        callbacks = self.callbacks.ordered()
        tensorboard = backend.tensorboard_callback(
            run_directory.path(self.output_dir, run_directory.TENSORBOARD))
        if tensorboard is not None:
            callbacks.append(tensorboard)
        callbacks.extend(self.extra_callbacks)
        self.rollbacks = 0
        self.callbacks.csv_log.log.keep_until(start)
        if config.nan_rollbacks and start == 0:  # (every worker has the same start)
            self.manager.save(model, self.meta)  # something to roll back to from the start
        progress.start(start)
        while True:
            for first, last in intervals(model_step(model), config.steps, config.eval_every):
                state.interval = (first, last)
                model.fit(self.distribution.serve(self.batches, first, last - first),
                          initial_epoch=first // config.eval_every,
                          epochs=first // config.eval_every + 1, steps_per_epoch=last - first,
                          callbacks=callbacks, shuffle=False, verbose=0)
                if model.stop_training:
                    break
            if state.nonfinite_step is None:
                break
            self._roll_back()
        progress.end()
        # From here a signal stops the run at once. One that came after the last step's
        # callbacks (in `fit`'s teardown) was too late for them to act on: it stops the run
        # here, at its last step, which the last validation checkpointed.
        signals.phase = "final"
        if state.stop_requested and state.interrupted_at is None:
            state.interrupted_at = model_step(model)
        if state.interrupted_at is not None:
            raise TrainingInterrupted(
                f"Interrupted at step {state.interrupted_at} of {config.steps}; a checkpoint "
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
            "best_valid_bpc_during_training": self.callbacks.best_model.best,
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
            "checkpoint_failures": self.callbacks.checkpointing.failures,
            "config": dataclasses.asdict(config),
            "corpus": self.corpus.name,
            "data": self.meta["data"],
            "backend": backend.name(),
            "strategy": config.strategy,
            "code": code_version(),
        }
        if not steps_run:  # a finished run evaluated again: its training's figures stand
            results.update(run_directory.previous_speed(self.chief_dir))
        if results["diverged"]:
            symbols = len(self.corpus.vocabulary)
            warnings.warn(
                f"The model is no better than a uniform guess over the {symbols} symbols: "
                f"validation BPC {valid_bpc:.4f}, a uniform guess {uniform_bpc:.4f}. "
                f"It diverged or never learned; try half the learning rate or more steps "
                f"(results.json says \"diverged\": true).", stacklevel=2)
        results_path = run_directory.path(self.output_dir, RESULTS)
        files.write_json(results_path, results)
        files.save_model(model, run_directory.path(self.output_dir, FINAL))
        prompt = self.corpus.test[:20]
        results["sample_prompt"] = self.corpus.vocabulary.decode(prompt)
        results["sample"] = sample(model, prompt, config.sample_length, 1.0, None,
                                   config.seed)  # checked by `check_run`
        files.write_json(results_path, results)
        return results

    # -------------------------------------------------------------- roll-back

    def _roll_back(self):
        """After a non-finite loss: raise, or restore the last good checkpoint and halve the
        learning rate (at most `config.nan_rollbacks` times)."""
        bad_step = self.state.nonfinite_step
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
        self.state.nonfinite_step = None
        self.model.stop_training = False
        self.rollbacks += 1

    def _set_learning_rate_scale(self, scale):
        self.model.optimizer.learning_rate_scale.assign(scale)
        self.meta["learning_rate_scale"] = scale


def intervals(start, total, every):
    """`(first, last)` step ranges from `start` to `total` that end on multiples of `every`
    (a resumed run may start mid-interval, and the last interval may be short)."""
    step = start
    while step < total:
        last = min((step // every + 1) * every, total)
        yield step, last
        step = last
