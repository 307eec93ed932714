"""The command line shared by the training scripts in `examples/` and `python -m keras_mulrnn`.

Each script names its corpus and its defaults; the flags, the `--quick` preset, the run and
the report are the same everywhere. The arguments are parsed before Keras and its backend
load (so `--help` is instant and a bad flag fails at once), and the backend then loads
quietly: TensorFlow's start-up logs go to /dev/null unless `--verbose` is given.
"""

import argparse
import dataclasses
import math
import os
import sys
import time

from keras_mulrnn.data import CORPORA, KINDS
from keras_mulrnn.lm import interruption
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.quiet import quiet_stderr

# A small model and few steps that finish in a few minutes on 2 CPU cores.
QUICK = dict(units=128, rank=None, embedding_dim=32, num_layers=1, batch_size=32, seq_len=100,
             steps=1000, eval_every=250, checkpoint_every=None, valid_symbols=20_000,
             eval_batch_size=16, test_batch_size=16, input_dropout=0.0, recurrent_dropout=0.0,
             output_dropout=0.0, weight_norm=False, learning_rate=5e-3, sample_length=200,
             steps_per_execution=1)

# What every `TrainConfig` field's flag does (its default is shown beside it).
FLAG_HELP = {
    "family": "recurrent family: rnn (mRNN), lstm (mLSTM) or gru (mGRU)",
    "parametrization": "additive (the plain cell), integration (multiplicative "
                       "integration), shared (one intermediate state for all gates), unshared "
                       "(one per gate), gates+candidate, or a partition of gate letters such "
                       "as ifo+u",
    "units": "hidden units of every recurrent layer",
    "rank": "factorization rank k of each intermediate state (none: = units)",
    "num_layers": "stacked recurrent layers",
    "embedding_dim": "size of the symbol embedding",
    "input_dropout": "variational dropout of the embedded input (one mask per sequence)",
    "recurrent_dropout": "variational dropout of h_{t-1} inside every layer",
    "output_dropout": "dropout between layers and before the output layer",
    "weight_norm": "weight normalization of every recurrent weight matrix",
    "mogrifier_rounds": "the Mogrifier's rounds: x and h gate each other this many times "
                        "before each step (0: none)",
    "mogrifier_rank": "rank of the Mogrifier's matrices (none: full matrices)",
    "batch_size": "rows per batch (the global batch under a data-parallel strategy)",
    "seq_len": "symbols per window (truncated BPTT length)",
    "shuffle": "train on shuffled independent windows instead of carried-state rows",
    "steps": "training steps",
    "learning_rate": "Adam's learning rate, decayed linearly to 0 over --steps",
    "clipnorm": "clip the global gradient norm to this (none: no clipping)",
    "eval_every": "validate, save the best model and checkpoint every this many steps",
    "checkpoint_every": "also checkpoint every this many steps (none: only at validations)",
    "valid_symbols": "validate on the first this many symbols of the valid split "
                     "(none: all of it)",
    "eval_batch_size": "rows of the validation during training",
    "test_batch_size": "rows of the final valid and test scoring (1: the papers' protocol, "
                       "one row with the state carried across the whole split)",
    "jit_compile": "compile the training step with XLA",
    "steps_per_execution": "training steps per compiled call",
    "seed": "seed of initialization, dropout and data order",
    "sample_length": "symbols sampled from the model at the end (0: none)",
    "nan_rollbacks": "on a NaN or infinite loss, roll back to the last checkpoint with half "
                     "the learning rate up to this many times (0: stop)",
    "strategy": "devices: default (one), mirrored or multiworker (TensorFlow), "
                "data-parallel (JAX)",
    "precision": "float32, or mixed_bfloat16 (products in bfloat16, weights, states and "
                 "logits in float32; for accelerators)",
}

# Fields whose flag takes `none` for None.
OPTIONAL = ("rank", "mogrifier_rank", "clipnorm", "checkpoint_every", "valid_symbols")


def parser(description, defaults, data_help, exclude=(), prog=None):
    """An argument parser whose defaults are `TrainConfig`'s updated by `defaults`; the
    `TrainConfig` fields named in `exclude` get no flag (the script sets them itself)."""
    config = dataclasses.replace(TrainConfig(), **defaults)
    p = argparse.ArgumentParser(description=description, prog=prog, allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help=data_help)
    p.add_argument("--output", default="runs/" + description.split()[0].lower(),
                   help="directory for checkpoints, logs, model.keras and results.json")
    if "resume" not in exclude:
        p.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in --output (on a finished "
                            "run: evaluate again what is missing, or say it is done)")
    quick = ", ".join(f"--{key.replace('_', '-')} {_show(value)}"
                      for key, value in QUICK.items())
    p.add_argument("--quick", action="store_true",
                   help=f"a small model and few steps (minutes on a CPU), for trying things; "
                        f"sets {quick} (flags given explicitly win)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (TensorFlow op determinism): the same seed "
                        "gives the same weights, somewhat slower")
    p.add_argument("--verbose", action="store_true",
                   help="show the backend's own start-up and compilation logs")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads an operation may use (0: all cores; 1 each for two "
                        "processes sharing a 2-core machine)")
    add_wait_timeout(p, "the other machines of a multi-worker cluster")
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        default = getattr(config, field.name)
        flag = "--" + field.name.replace("_", "-")
        text = FLAG_HELP[field.name]
        if isinstance(TrainConfig.__dataclass_fields__[field.name].default, bool):
            p.add_argument(flag, type=boolean, default=default, metavar="{true,false}",
                           help=text)
        elif field.name in OPTIONAL:
            kind = float if field.name == "clipnorm" else int
            p.add_argument(flag, type=optional(kind), default=default, help=text,
                           metavar="N|none")
        else:
            p.add_argument(flag, type=type(default), default=default, help=text)
    return p


def add_wait_timeout(parser_, what):
    """The flag `--wait-timeout`: how long to wait for `what` before stopping with an error."""
    parser_.add_argument("--wait-timeout", type=seconds, default=interruption.WAIT_TIMEOUT,
                         metavar="SECONDS",
                         help=f"how long to wait for {what} before stopping with an error")


def seconds(text):
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


CORPUS_HELP = ("where the data comes from: auto is text with --data, tfds with --tfds, else "
               "the corpus embedded in the package; enwik8 reads --data (enwik8 or its zip; "
               "any other byte file is split 90/5/5) or downloads it; ptb reads the "
               "directory --data of ptb.char.*.txt; embedded is Tiny Shakespeare, shipped "
               "in the package")


def add_corpus_arguments(parser_, corpus="auto", data_help=None):
    """The flags that name a corpus: `--corpus`, `--kind`, `--tfds`, and `--data` unless the
    parser has it already (then `data_help` is not used)."""
    if data_help is not None:
        parser_.add_argument("--data", help=data_help)
    parser_.add_argument("--corpus", choices=("auto",) + CORPORA, default=corpus,
                         help=CORPUS_HELP)
    parser_.add_argument("--kind", choices=KINDS, default="char",
                         help="read a text file as UTF-8 characters, raw bytes, or Penn "
                              "Treebank symbols (ptb)")
    parser_.add_argument("--tfds", help="a TFDS text dataset name (needs the tfds extra and, "
                                        "once, the network)")


def corpus_name(args, parser_, argv=None):
    """The corpus the parsed flags name (`--corpus auto` resolved), after a usage error for
    any flag that the corpus would not use or that it lacks."""
    for flag in ("data", "tfds"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            parser_.error(f"--{flag} is empty")
    if args.data is not None and args.tfds is not None:
        parser_.error("give at most one of --data or --tfds")
    name = args.corpus
    if name == "auto":
        name = "tfds" if args.tfds else "text" if args.data else "embedded"
    if args.tfds is not None and name != "tfds":
        parser_.error(f"--tfds goes with --corpus tfds, not --corpus {name}")
    if name == "tfds" and args.tfds is None:
        parser_.error("--corpus tfds needs --tfds NAME")
    if name == "embedded" and args.data is not None:
        parser_.error("--corpus embedded reads no --data (it is shipped in the package)")
    if name in ("text", "ptb") and args.data is None:
        parser_.error(f"--corpus {name} needs --data "
                      + ("DIR (the directory of ptb.char.*.txt)" if name == "ptb" else "FILE"))
    if name in ("enwik8", "ptb", "embedded") and "kind" in explicit_flags(parser_, argv):
        parser_.error(f"--kind applies to text files and TFDS datasets; --corpus {name} is "
                      f"read as {'bytes' if name == 'enwik8' else 'its own symbols'}")
    return name


def load_named_corpus(name, args):
    """The corpus `name` (from `corpus_name`) with the parsed flags' data."""
    from keras_mulrnn.data import load_corpus

    return load_corpus(name, args.data, args.tfds, args.kind)


def config_from(args, parser_, argv=None):
    """The `TrainConfig` of parsed `args`: `--quick` sets its preset, explicit flags win."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
              if hasattr(args, field.name)}
    if args.quick:
        given = explicit_flags(parser_, argv)
        values.update({key: value for key, value in QUICK.items()
                       if key not in given and key in values})
    return TrainConfig(**values)


def explicit_flags(parser_, argv=None):
    """The destinations of the flags given on the command line (not left at their default)."""
    silent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for action in parser_._actions:
        if not action.option_strings or action.dest == "help":
            continue
        if action.nargs == 0:  # a switch such as --quick
            silent.add_argument(*action.option_strings, dest=action.dest, const=True,
                                action="store_const", default=argparse.SUPPRESS)
        else:
            silent.add_argument(*action.option_strings, dest=action.dest,
                                default=argparse.SUPPRESS)
    known, _ = silent.parse_known_args(sys.argv[1:] if argv is None else argv)
    return set(vars(known))


def configure(args, parser_, argv=None):
    """The checked `TrainConfig` of parsed `args`, once the backend has started (see
    `start_backend`)."""
    config = config_from(args, parser_, argv)
    start_backend(args, config.strategy)
    return config.validate()


def start_backend(args, strategy="default"):
    """Starts Keras's backend: quietly unless `args.verbose` (file descriptor 2, where
    TensorFlow's C++ start-up logs go whatever the log level, points at /dev/null while the
    backend loads and runs a first operation, and TensorFlow's C++ logging stays off
    afterwards); with deterministic kernels for `args.deterministic`; and, for a
    data-parallel `strategy`, with the strategy made before any operation runs (a
    multi-worker cluster must be joined first)."""
    verbose = getattr(args, "verbose", False)
    deterministic = getattr(args, "deterministic", False)
    threads = getattr(args, "threads", 0)
    if not 0 <= threads <= 1024:
        raise ValueError(f"--threads must be 0 (all cores) or a number of threads up to "
                         f"1,024, got {threads}.")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if deterministic:  # read by XLA when the backend starts (TensorFlow's XLA and JAX)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_gpu_deterministic_ops=true").strip()
    # A Ctrl-C while the backend loads is raised once it has loaded (see `interruption`).
    with interruption.deferred(), quiet_stderr(enabled=not verbose):
        import keras

        from keras_mulrnn import backend

        if threads:
            backend.limit_threads(threads)
        if strategy != "default":
            backend.make_distribution(
                strategy, getattr(args, "wait_timeout", interruption.WAIT_TIMEOUT))
        keras.ops.convert_to_numpy(keras.ops.ones((1,)) + 1)
        if deterministic:
            backend.enable_determinism()


def run(corpus, config, args):
    """Trains, prints the test BPC and a sample, and returns the results."""
    from keras_mulrnn.lm.training import train

    print(f"{corpus.name}: {len(corpus.vocabulary)} symbols; train {len(corpus.train):,}, "
          f"valid {len(corpus.valid):,}, test {len(corpus.test):,}")
    started = time.perf_counter()
    results = train(corpus, config, args.output, resume=args.resume)
    wall = time.perf_counter() - started
    speed = (f"{results['chars_per_sec']:,.0f} chars/s" if results.get("chars_per_sec")
             else "no steps run now")
    print(f"\nparams {results['params']:,}, {results['steps']} steps, {speed}, "
          f"wall {wall:.0f} s")
    print(f"valid BPC {results['valid_bpc']:.4f}")
    print(f"test BPC {results['test_bpc']:.4f}")
    if results.get("sample"):
        print(f"sample after {results['sample_prompt']!r}:\n{results['sample']}")
    return results


# What the package raises for bad input and failed runs: one line each.
_INPUT_AND_RUN_ERRORS = (ValueError, OSError, FloatingPointError, RuntimeError, ImportError,
                        MemoryError)


def guarded(main):
    """Runs a script's `main`, turning the package's errors about bad input (wrong flags,
    files, data, checkpoints), failed runs and interruptions into one clear line and a
    non-zero exit status. A Ctrl-C is answered as `interruption` says: never lost, even
    where a library swallowed its exception."""
    import warnings

    # A warning is one line, as errors are (Python's format adds the source line).
    warnings.formatwarning = lambda message, *_: f"warning: {message}\n"
    with interruption.recording():
        try:
            main()
            interruption.check()
        except KeyboardInterrupt as stop:  # `TrainingInterrupted` says what was kept
            _stop(str(stop))
        except Exception as error:
            if interruption.requested():
                # What failed is the interruption: a library may have swallowed its
                # exception half-way.
                _stop("")
            if not isinstance(error, _INPUT_AND_RUN_ERRORS):
                raise  # a defect: its traceback is what a report needs
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None


def _stop(message):
    """Says that the program was interrupted (and what was kept), and exits with 130."""
    import signal

    # Stopping already: another Ctrl-C must not cut the message or the exit short (the
    # interpreter's exit takes a second with TensorFlow loaded).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"\n{message or 'Interrupted.'}", file=sys.stderr)
    raise SystemExit(130) from None


def comma_list(text, kind, flag, positive=False):
    """The values of a comma-separated flag, converted to `kind`. An empty item
    (`0.005,,0.01`), a value given twice (a study whose arms repeat) and, with `positive`, a
    value that is not a finite number > 0 are refused with a message naming `flag`."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError(f"{flag} {text!r} gives no values.")
    if not all(items):
        raise ValueError(f"{flag} {text!r} has an empty item: separate the values with "
                         f"single commas (e.g. {flag} {','.join(i for i in items if i)}).")
    try:
        parsed = [kind(item) for item in items]
    except ValueError:
        raise ValueError(f"Could not read {flag} {text!r} as {kind.__name__} values.") from None
    if positive and not all(math.isfinite(value) and value > 0 for value in parsed):
        raise ValueError(f"{flag} {text!r}: every value must be a finite number > 0.")
    repeated = [value for index, value in enumerate(parsed) if value in parsed[:index]]
    if repeated:
        raise ValueError(f"{flag} {text!r} gives {repeated[0]!r} twice: give each value once.")
    return parsed


def boolean(text):
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def optional(kind):
    """An argparse type: `kind`, or None for `none`."""

    def convert(text):
        if text.lower() in ("none", ""):
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {kind.__name__} or none, got {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


def _show(value):
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else value
