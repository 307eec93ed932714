"""Search the hyperparameters of a character language model with keras-tuner.

    python tuning/search.py --data ../shared/data/tinyshakespeare.txt \\
        --parametrization shared,unshared --rank-ratio 0.25,0.5,1 --budget 200000 \\
        --max-trials 8 --steps-per-trial 300 --directory runs/tuning --project-name rank

An axis given one value is fixed, several values (comma-separated) are searched. Rerunning the
same command continues an interrupted search (keras-tuner reloads the project; pass
--overwrite to start over). For several machines, start one chief and N workers:

    python tuning/search.py ... --chief --oracle-ip 10.0.0.1 --oracle-port 8000
    python tuning/search.py ... --worker 1 --oracle-ip 10.0.0.1 --oracle-port 8000

(or set KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT yourself).
"""

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_mulrnn.cli import guarded  # noqa: E402
from keras_mulrnn.data import CORPORA, load_corpus  # noqa: E402
from keras_mulrnn.distribute import make_strategy  # noqa: E402
from keras_mulrnn.training import TrainConfig  # noqa: E402
from tuning.space import (  # noqa: E402
    TUNERS,
    LanguageModelHyperModel,
    LanguageModelTuner,
    make_oracle,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data (as in the training scripts)")
    data.add_argument("--corpus", choices=CORPORA, default="text")
    data.add_argument("--data", help="a text/byte file, enwik8(.zip), or the PTB directory")
    data.add_argument("--tfds", help="a TFDS text dataset name (with --corpus tfds)")
    data.add_argument("--kind", choices=("char", "byte"), default="char")

    space = p.add_argument_group("search axes: one value fixes the axis, a,b,c searches it")
    space.add_argument("--family", default="lstm", help="rnn, lstm, gru")
    space.add_argument("--parametrization", default="shared,unshared",
                       help="additive, shared, unshared, gates+candidate, or gate letters "
                            "such as ifo+u")
    space.add_argument("--units", default="256")
    space.add_argument("--rank", default=None, help="absolute ranks")
    space.add_argument("--rank-ratio", default=None, help="ranks relative to the units")
    space.add_argument("--num-layers", default="1")
    space.add_argument("--learning-rate", default="0.002")
    space.add_argument("--recurrent-dropout", default="0.0")
    space.add_argument("--budget", type=int, default=None,
                       help="recurrent parameter budget: each trial's size is derived from it")

    tuner = p.add_argument_group("the search")
    tuner.add_argument("--tuner", choices=TUNERS, default="random")
    tuner.add_argument("--max-trials", type=int, default=10)
    tuner.add_argument("--executions-per-trial", type=int, default=1)
    tuner.add_argument("--steps-per-trial", type=int, default=500,
                       help="training steps of a trial (Hyperband: steps per epoch)")
    tuner.add_argument("--max-epochs", type=int, default=9, help="Hyperband only")
    tuner.add_argument("--directory", default="runs/tuning")
    tuner.add_argument("--project-name", default="search")
    tuner.add_argument("--overwrite", action="store_true")
    tuner.add_argument("--seed", type=int, default=0)
    role = tuner.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true", help="serve the oracle to workers")
    role.add_argument("--worker", help="run trials for the chief, with this unique id")
    tuner.add_argument("--oracle-ip", default=None)
    tuner.add_argument("--oracle-port", default=None)

    fixed = p.add_argument_group("training settings shared by every trial")
    fixed.add_argument("--embedding-dim", type=int, default=64)
    fixed.add_argument("--batch-size", type=int, default=32)
    fixed.add_argument("--seq-len", type=int, default=100)
    fixed.add_argument("--valid-symbols", type=int, default=20_000)
    fixed.add_argument("--test-batch-size", type=int, default=16)
    fixed.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                       help="mirrored: each trial trains on every GPU of its machine (the "
                            "tuner's workers already spread trials over machines)")
    return p.parse_args(argv)


def values(text, kind):
    """Comma-separated values of one axis, converted to `kind`."""
    if text is None:
        return None
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"Could not read {text!r} as {kind.__name__} values.") from None


def set_role(args):
    """keras-tuner's distributed mode is configured through the environment."""
    if args.chief or args.worker:
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if args.chief else f"tuner{args.worker}"
    for name, value in (("KERASTUNER_ORACLE_IP", args.oracle_ip),
                        ("KERASTUNER_ORACLE_PORT", args.oracle_port)):
        if value:
            os.environ[name] = str(value)
    if "KERASTUNER_TUNER_ID" in os.environ and not (
            os.environ.get("KERASTUNER_ORACLE_IP") and os.environ.get("KERASTUNER_ORACLE_PORT")):
        raise ValueError("A chief or worker needs --oracle-ip and --oracle-port.")


def make_tuner(args, corpus):
    axes = {
        "family": values(args.family, str),
        "parametrization": values(args.parametrization, str),
        "units": values(args.units, int),
        "num_layers": values(args.num_layers, int),
        "learning_rate": values(args.learning_rate, float),
        "recurrent_dropout": values(args.recurrent_dropout, float),
    }
    if args.rank:
        axes["rank"] = values(args.rank, int)
    if args.rank_ratio:
        axes["rank_ratio"] = values(args.rank_ratio, float)
    steps = args.steps_per_trial
    base = dataclasses.replace(
        TrainConfig(), embedding_dim=args.embedding_dim, batch_size=args.batch_size,
        seq_len=args.seq_len, steps=steps, eval_every=max(1, steps // 2),
        valid_symbols=args.valid_symbols, eval_batch_size=16,
        test_batch_size=args.test_batch_size, seed=args.seed, sample_length=50,
        strategy=args.strategy,
    )
    hypermodel = LanguageModelHyperModel(corpus.vocabulary, axes, base, args.budget)
    oracle = make_oracle(args.tuner, args.max_trials, args.seed, args.max_epochs)
    return LanguageModelTuner(
        oracle, hypermodel, corpus, executions_per_trial=args.executions_per_trial,
        steps_per_epoch=steps, directory=args.directory, project_name=args.project_name,
        overwrite=args.overwrite,
    )


def main(argv=None):
    args = parse_args(argv)
    set_role(args)
    make_strategy(args.strategy)  # sees the devices before anything else runs
    corpus = load_corpus(args.corpus, args.data, args.tfds, args.kind)
    tuner = make_tuner(args, corpus)
    tuner.search_space_summary()
    tuner.search()
    if not args.worker:
        tuner.results_summary(num_trials=5)
        print(f"\nTable and plot: python tuning/report.py --directory {args.directory} "
              f"--project-name {args.project_name}")


if __name__ == "__main__":
    guarded(main)
