"""The keras-tuner search space over the character language model, and the tuner that trains
each trial with the package's own training loop (`keras_mulrnn.train`).

Axes: family, parametrization, rank (absolute or relative to units), units, layers, learning
rate, dropout, the Mogrifier's rounds and rank. Each is fixed (one value) or searched
(several values, a `hp.Choice`). With a parameter budget, the size of each trial is derived
instead of searched: the units when the rank is given relative to them (or the cell has no
rank: additive, integration), else the rank, so that trials that differ in sharing are
compared at (within 1% of) the same number of recurrent parameters.
"""

import dataclasses
import itertools
import os
import re
import warnings

import keras_tuner

from keras_mulrnn.factory import UNFACTORED
from keras_mulrnn.params import rank_for_budget, units_for_budget
from keras_mulrnn.lm import files
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.optimization import build_model
from keras_mulrnn.lm.interruption import TrainingInterrupted
from keras_mulrnn.lm.run_directory import FINAL
from keras_mulrnn.lm.training import check_run, train

from tuning import TUNERS

OBJECTIVE = keras_tuner.Objective("val_bpc", direction="min")

# Axis name → the TrainConfig field it sets (rank_ratio is turned into rank).
AXES = {
    "family": "family",
    "parametrization": "parametrization",
    "units": "units",
    "rank": "rank",
    "rank_ratio": None,
    "num_layers": "num_layers",
    "learning_rate": "learning_rate",
    "recurrent_dropout": "recurrent_dropout",
    "mogrifier_rounds": "mogrifier_rounds",
    "mogrifier_rank": "mogrifier_rank",
}


class LanguageModelHyperModel(keras_tuner.HyperModel):
    """Search space of the character language model.

    Args:
        vocabulary: the corpus's `Vocabulary` (needed to build models).
        axes: axis name (see `AXES`) → list of values; one value fixes the axis.
        base: `TrainConfig` with everything that is not searched (batch, steps, ...).
        budget: recurrent parameter budget, or None.
    """

    def __init__(self, vocabulary, axes, base=None, budget=None):
        super().__init__(name="char_language_model")
        unknown = sorted(set(axes) - set(AXES))
        if unknown:
            raise ValueError(f"Unknown search axes {unknown}. Allowed: {sorted(AXES)}.")
        if axes.get("rank") and axes.get("rank_ratio"):
            raise ValueError("Give the rank either absolute (rank) or relative (rank_ratio).")
        if budget is not None and axes.get("rank"):
            raise ValueError(
                "With a budget the size is derived: give rank_ratio (then the units follow) "
                "or fixed units (then the rank follows), not an absolute rank."
            )
        empty = [name for name, values in axes.items() if not values]
        if empty:
            raise ValueError(f"Search axes {empty} have no values.")
        self.vocabulary = vocabulary
        self.axes = {name: list(values) for name, values in axes.items()}
        self.base = base or TrainConfig()
        self.budget = budget

    def check_space(self, corpus):
        """Checks every point of the space against `corpus` before the first trial (a bad
        value of any axis, or data too short for the batches, fails at once, naming it,
        instead of failing every trial)."""
        names = list(self.axes)
        points = itertools.product(*(self.axes[name] for name in names))
        for index, point in enumerate(points):
            hp = keras_tuner.HyperParameters()
            for name, value in zip(names, point):
                hp.Fixed(name, value)
            # The batches do not depend on the axes: the splits are checked once.
            check_run(corpus, self.config(hp), splits=index == 0)

    def config(self, hp):
        """The `TrainConfig` of one point of the space (declaring its hyperparameters)."""
        chosen = {}
        for name, values in self.axes.items():
            if name == "units" and self.budget is not None and "rank_ratio" in self.axes:
                continue  # the budget and the rank ratio determine the units

            chosen[name] = (
                hp.Fixed(name, values[0]) if len(values) == 1 else hp.Choice(name, values)
            )
        fields = {AXES[name]: value for name, value in chosen.items() if AXES[name]}
        config = dataclasses.replace(self.base, **fields)
        ratio = chosen.get("rank_ratio")
        if not config.mogrifier_rounds:  # (a Mogrifier's rank, where there is none)
            config = dataclasses.replace(config, mogrifier_rank=None)
        if config.parametrization in UNFACTORED:
            config = dataclasses.replace(config, rank=None)
        elif ratio is not None:
            config = dataclasses.replace(config, rank=max(1, round(ratio * config.units)))
        if self.budget is not None:
            config = self._fit_budget(config, ratio)
        return config.validate()

    def _fit_budget(self, config, ratio):
        common = dict(family=config.family, parametrization=config.parametrization,
                      input_dim=config.embedding_dim, budget=self.budget,
                      num_layers=config.num_layers, weight_norm=config.weight_norm,
                      mogrifier_rounds=config.mogrifier_rounds,
                      mogrifier_rank=config.mogrifier_rank)
        unfactored = config.parametrization in UNFACTORED
        if unfactored or ratio is not None:
            units = units_for_budget(rank_ratio=ratio or 1.0, **common)
            rank = None if unfactored else max(1, round(ratio * units))
            return dataclasses.replace(config, units=units, rank=rank)
        rank = rank_for_budget(units=config.units, **common)
        return dataclasses.replace(config, rank=rank)

    def build(self, hp):
        return build_model(self.vocabulary, self.config(hp))


class LanguageModelTuner(keras_tuner.Tuner):
    """Runs each trial with `keras_mulrnn.train` (the examples' loop) and reports the mean
    validation BPC over `executions_per_trial` seeds. A trial whose training fails is
    recorded as failed and the search goes on.

    Args:
        oracle, hypermodel, directory, project_name, overwrite: as for `keras_tuner.Tuner`.
        corpus: the `Corpus` every trial trains on.
        executions_per_trial: runs per trial, with seeds `seed, seed + 1, ...`.
        steps_per_epoch: for Hyperband, a trial of `tuner/epochs` epochs trains that many
            times this number of steps (from scratch).
    """

    def __init__(self, oracle, hypermodel, corpus, executions_per_trial=1,
                 steps_per_epoch=None, **kwargs):
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.corpus = corpus
        self.executions_per_trial = executions_per_trial
        self.steps_per_epoch = steps_per_epoch

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        config = self.hypermodel.config(hp)
        if "tuner/epochs" in hp.values:
            config = dataclasses.replace(
                config, steps=hp.values["tuner/epochs"] * self.steps_per_epoch
            )
        trial_dir = self.get_trial_dir(trial.trial_id)
        os.makedirs(trial_dir, exist_ok=True)
        files.write_text(os.path.join(trial_dir, "worker.txt"),  # who ran it
                         os.environ.get("KERASTUNER_TUNER_ID", "local"))
        runs = []
        for execution in range(self.executions_per_trial):
            run_config = dataclasses.replace(config, seed=config.seed + execution)
            output = os.path.join(trial_dir, f"run_{execution}")
            try:
                runs.append(train(self.corpus, run_config, output, resume=True, verbose=0))
            except TrainingInterrupted as stop:  # the search resumes by being run again
                raise TrainingInterrupted(
                    f"Trial {trial.trial_id}: {stop.what}", "Run the same command again to "
                    "continue the search: finished trials are kept, this one resumes.") from None
            except Exception as error:
                failure = f"Trial {trial.trial_id} failed: {type(error).__name__}: {error}"
                warnings.warn(failure, stacklevel=2)
                raise keras_tuner.errors.FailedTrialError(failure) from error
        return {"val_bpc": sum(run["valid_bpc"] for run in runs) / len(runs)}

    def on_trial_end(self, trial):
        # keras-tuner keeps a failed trial's whole traceback as its message, and every
        # results summary prints it: the message is the error's one line (`run_trial`'s).
        if trial.message:
            trial.message = re.sub(r"^[\w.]*FailedTrialError: ", "",
                                   trial.message.strip().splitlines()[-1])
        super().on_trial_end(trial)

    def save_model(self, trial_id, model, step=0):
        """Each run already saves its `model.keras` in the trial's folder."""

    def load_model(self, trial):
        from keras_mulrnn.saving import load_model

        return load_model(os.path.join(self.get_trial_dir(trial.trial_id), "run_0",
                                       FINAL))


def make_oracle(tuner, max_trials, seed=0, max_epochs=None):
    """The keras-tuner oracle of `tuner` ("random", "bayesian", "hyperband")."""
    if tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(OBJECTIVE, max_trials=max_trials,
                                                      seed=seed)
    if tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(OBJECTIVE, max_trials=max_trials,
                                                              seed=seed)
    if tuner == "hyperband":
        return keras_tuner.oracles.HyperbandOracle(OBJECTIVE, max_epochs=max_epochs or 9,
                                                   seed=seed)
    raise ValueError(f"Invalid tuner {tuner!r}. Allowed: {TUNERS}.")


