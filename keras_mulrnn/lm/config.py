"""`TrainConfig`: everything that defines a training run, and the one place where it is
checked. `validate()` runs before anything is read or written, so that a bad setting (used at
the first step or only after the last one) fails at once with a message naming it.

Importing this module does not start Keras (the command lines build their flags from
`TrainConfig` before the backend loads); checking a configuration does.
"""

import dataclasses

import numpy as np

from keras_mulrnn.validation import (
    check_bool,
    check_choice,
    check_count,
    check_optional_positive_int,
    check_positive_int,
    check_positive_number,
    check_rate,
    check_seed,
)

# Two symbols are the least a language model can predict between.
MIN_VOCABULARY = 2
# Keras dtype policies a run may train in (float16 would need loss scaling).
PRECISIONS = ("float32", "mixed_bfloat16")
# The settings of how a run is carried out rather than of what it trains: a resumed run may
# change them (a roll-back budget after a NaN, the devices, the compilation, the sample).
OPERATIONAL = ("strategy", "jit_compile", "steps_per_execution", "checkpoint_every",
               "nan_rollbacks", "sample_length")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Model: `family`, `parametrization`, `units`, `rank`, `num_layers`, `embedding_dim`,
    `input_dropout`, `recurrent_dropout`, `output_dropout`, `weight_norm`,
    `mogrifier_rounds`, `mogrifier_rank` (see `CharLanguageModel`). Data: `batch_size` rows of `seq_len` symbols; `shuffle=True` trains
    on shuffled independent windows instead of carried-state TBPTT. Optimization: `steps`,
    `learning_rate` (decayed linearly to 0 over `steps`), `clipnorm` (the global gradient
    norm is clipped to it; None: no clipping). Bookkeeping: validate and checkpoint every
    `eval_every` steps (validation on the first `valid_symbols` symbols of the valid split,
    all when None, in rows of `eval_batch_size`), also checkpoint every `checkpoint_every`
    steps; the final valid and test figures score the whole splits in rows of
    `test_batch_size` (1 = the papers' protocol); `sample_length` symbols are sampled at the
    end (0: none). Speed: `jit_compile` (XLA on TensorFlow; on by default: it trained the
    mLSTM 1.2–1.4× faster on a 2-core CPU, see BENCHMARKS.md; JAX always compiles),
    `steps_per_execution`, `precision` (`"mixed_bfloat16"`: products in bfloat16, weights,
    states and logits in float32; for accelerators). `seed` fixes initialization, dropout and data order. On a NaN or
    infinite loss the run stops, unless `nan_rollbacks > 0`: then it goes back to the last
    good checkpoint with half the learning rate, that many times. Devices: `strategy` is
    `"default"` (one device) or a data-parallel strategy of the backend
    (`keras_mulrnn.backend.DISTRIBUTIONS`); `batch_size` is the global batch (split across
    replicas) and nothing is rescaled.
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
    mogrifier_rounds: int = 0
    mogrifier_rank: int = None
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
    precision: str = "float32"

    def validate(self):
        """Checks every setting; returns `self`. Raises `ValueError` naming the first bad one.
        NumPy scalars are accepted and become the Python numbers they hold.

        Settings that passed are not checked again while they stay as they are (a program
        checks its flags before it reads the data, then `train` checks what it is given)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.generic):
                setattr(self, field.name, value.item())
        if self.__dict__.get("_passed") == self._settings():
            return self
        for name in ("units", "num_layers", "embedding_dim", "batch_size", "seq_len", "steps",
                     "eval_every", "eval_batch_size", "test_batch_size",
                     "steps_per_execution"):
            check_positive_int(name, getattr(self, name))
        check_optional_positive_int("rank", self.rank)
        check_count("mogrifier_rounds", self.mogrifier_rounds)
        check_optional_positive_int("mogrifier_rank", self.mogrifier_rank)
        check_optional_positive_int("checkpoint_every", self.checkpoint_every)
        if self.valid_symbols is not None:
            check_count("valid_symbols", self.valid_symbols, minimum=2)
        check_seed("seed", self.seed)
        for name in ("sample_length", "nan_rollbacks"):
            check_count(name, getattr(self, name))
        for name in ("input_dropout", "recurrent_dropout", "output_dropout"):
            check_rate(name, getattr(self, name))
        for name in ("weight_norm", "shuffle", "jit_compile"):
            check_bool(name, getattr(self, name))
        check_positive_number("learning_rate", self.learning_rate)
        check_positive_number("clipnorm", self.clipnorm, optional=True)
        check_choice("precision", self.precision, PRECISIONS)
        from keras_mulrnn import backend

        backend.check_distribution_name(self.strategy)
        from keras_mulrnn.factory import make_cell

        # The cell's own checks of family, parametrization, rank and the Mogrifier, by a
        # throwaway cell (the model builds its own).
        make_cell(self.family, self.parametrization, units=self.units, rank=self.rank,
                  dropout=self.input_dropout, recurrent_dropout=self.recurrent_dropout,
                  mogrifier_rounds=self.mogrifier_rounds, mogrifier_rank=self.mogrifier_rank)
        self._passed = self._settings()
        return self

    def _settings(self):
        # Each value with its type: 512.0 == 512 and 1 == True, but a float is not a count
        # and an int not a switch.
        return tuple((type(value), value) for value in dataclasses.astuple(self))


def model_arguments(config):
    """The `CharLanguageModel` arguments of a (validated) `TrainConfig`."""
    names = ("family", "parametrization", "units", "rank", "num_layers", "embedding_dim",
             "input_dropout", "recurrent_dropout", "output_dropout", "weight_norm",
             "mogrifier_rounds", "mogrifier_rank", "seed")
    return {name: getattr(config, name) for name in names}


def recurrent_params(config):
    """The weights of a configuration's recurrent layers (what a budget counts)."""
    from keras_mulrnn.params import stack_params

    return stack_params(config.family, config.parametrization, config.units,
                        config.embedding_dim, config.rank, config.num_layers,
                        weight_norm=config.weight_norm, mogrifier_rounds=config.mogrifier_rounds,
                        mogrifier_rank=config.mogrifier_rank)


def check_fits(config, vocabulary_size):
    """Refuses a corpus too small for a language model, and a model that cannot train in
    this machine's memory (`keras_mulrnn.memory`), before anything is built; returns the
    model's number of weights."""
    if vocabulary_size < MIN_VOCABULARY:
        raise ValueError(
            f"The corpus has {vocabulary_size} distinct symbol(s); a language model needs at "
            f"least {MIN_VOCABULARY}. Give a text with more than one kind of character."
        )
    from keras_mulrnn import memory

    params = recurrent_params(config) + vocabulary_size * (config.embedding_dim + config.units + 1)
    memory.check_training(config, params, vocabulary_size)
    return params
