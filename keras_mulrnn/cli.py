"""The command line shared by the training scripts in `examples/`.

Each script names its corpus and its defaults; the flags, the `--quick` preset, the run and
the report are the same everywhere.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import tensorflow as tf

from keras_mulrnn.distribute import is_chief, make_strategy
from keras_mulrnn.training import TrainConfig, TrainingInterrupted, train

# A small model and few steps that finish in a few minutes on 2 CPU cores.
QUICK = dict(units=128, rank=None, embedding_dim=32, num_layers=1, batch_size=32, seq_len=100,
             steps=1000, eval_every=250, valid_symbols=20_000, eval_batch_size=16,
             test_batch_size=16, input_dropout=0.0, recurrent_dropout=0.0,
             output_dropout=0.0, weight_norm=False, learning_rate=5e-3, sample_length=200,
             steps_per_execution=1)


def parser(description, defaults, data_help, exclude=()):
    """An argument parser whose defaults are `TrainConfig`'s updated by `defaults`; the
    `TrainConfig` fields named in `exclude` get no flag (the script sets them itself)."""
    config = dataclasses.replace(TrainConfig(), **defaults)
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help=data_help)
    p.add_argument("--output", default="runs/" + description.split()[0].lower(),
                   help="directory for checkpoints, logs, model.keras and results.json")
    if "resume" not in exclude:
        p.add_argument("--resume", action="store_true",
                       help="continue from the latest checkpoint in --output")
    p.add_argument("--quick", action="store_true",
                   help="a small model and few steps (minutes on a CPU), for trying things")
    p.add_argument("--deterministic", action="store_true",
                   help="TensorFlow op determinism: the same seed gives the same weights")
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        default = getattr(config, field.name)
        flag = "--" + field.name.replace("_", "-")
        if field.type is bool or isinstance(default, bool):
            p.add_argument(flag, type=_boolean, default=default, metavar="{true,false}")
        elif field.name == "rank" or field.name.endswith(("_every", "_symbols")):
            p.add_argument(flag, type=_optional_int, default=default)
        else:
            p.add_argument(flag, type=type(default) if default is not None else str,
                           default=default)
    return p


def config_from(args, parser_):
    """The `TrainConfig` of parsed `args`: `--quick` sets its preset, explicit flags win.
    Call it before reading the data: it also starts a `--strategy` other than the default."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
              if hasattr(args, field.name)}
    if args.quick:
        explicit = {
            action.dest for action in parser_._actions
            if any(option in _given_options() for option in action.option_strings)
        }
        values.update({key: value for key, value in QUICK.items() if key not in explicit})
    config = TrainConfig(**values)
    if config.strategy != "default":
        # First: a multi-worker cluster must be joined before TensorFlow runs any operation
        # (validating builds a throwaway cell; the data is read after this).
        make_strategy(config.strategy)
    return config.validate()


def run(corpus, config, args):
    """Trains, prints the test BPC and a sample, and returns the results."""
    print(f"{corpus.name}: {len(corpus.vocabulary)} symbols; train {len(corpus.train):,}, "
          f"valid {len(corpus.valid):,}, test {len(corpus.test):,}")
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    try:
        results = train(corpus, config, args.output, resume=args.resume)
    except TrainingInterrupted as stop:
        print(stop)
        raise SystemExit(130) from None
    results["wall_seconds"] = time.perf_counter() - started
    if is_chief(make_strategy(config.strategy)):  # the other workers write nothing
        with open(os.path.join(args.output, "results.json"), "w") as handle:
            json.dump(results, handle, indent=1)
    print(f"\nparams {results['params']:,}, {results['steps']} steps, "
          f"{results['chars_per_sec']:,.0f} chars/s, wall {results['wall_seconds']:.0f} s")
    print(f"valid BPC {results['valid_bpc']:.4f}")
    print(f"test BPC {results['test_bpc']:.4f}")
    print(f"sample after {results['sample_prompt']!r}:\n{results['sample']}")
    return results


def guarded(main):
    """Runs a script's `main`, turning the package's errors about bad input (wrong flags,
    files, data, checkpoints) and failed runs into one clear line and exit status 1."""
    try:
        main()
    except (ValueError, OSError, FloatingPointError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _given_options():
    return {argument.split("=")[0] for argument in sys.argv[1:]}


def _boolean(text):
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_int(text):
    return None if text.lower() in ("none", "") else int(text)
