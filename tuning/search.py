"""Search the hyperparameters of a character language model with keras-tuner.

    python tuning/search.py --family lstm --parametrization shared,unshared \\
        --rank-ratio 0.125,0.25,0.5,1 --budget 200000 --max-trials 8 --steps-per-trial 400 \\
        --directory runs/tuning --project-name rank

An axis given one value is fixed, several values (comma-separated) are searched. Without
`--data` or `--tfds` the corpus is the one embedded in the package. Rerunning the same
command continues an interrupted search (keras-tuner reloads the project; pass --overwrite to
start over). For several machines, start one chief and N workers:

    python tuning/search.py ... --chief --oracle-ip 10.0.0.1 --oracle-port 8000
    python tuning/search.py ... --worker 1 --oracle-ip 10.0.0.1 --oracle-port 8000

(or set KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT yourself).
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

import argparse
import contextlib
import dataclasses
import glob
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_mulrnn.lm import cli, interruption  # noqa: E402
from keras_mulrnn.lm.config import TrainConfig  # noqa: E402
from tuning import TUNERS  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="search.py",
                                allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data (as in the training scripts)")
    cli.add_corpus_arguments(data, data_help="a text/byte file, enwik8(.zip), or the PTB "
                                             "directory")

    space = p.add_argument_group("search axes: one value fixes the axis, a,b,c searches it")
    space.add_argument("--family", default="lstm", help="rnn, lstm, gru")
    space.add_argument("--parametrization", default="shared,unshared",
                       help="additive, integration, shared, unshared, gates+candidate, or "
                            "gate letters such as ifo+u")
    space.add_argument("--units", default="256", help="hidden units")
    space.add_argument("--rank", default=None, help="absolute ranks")
    space.add_argument("--rank-ratio", default=None, help="ranks relative to the units")
    space.add_argument("--num-layers", default="1", help="stacked recurrent layers")
    space.add_argument("--learning-rate", default="0.002", help="Adam's initial rate")
    space.add_argument("--recurrent-dropout", default="0.0",
                       help="variational dropout of h_{t-1}")
    space.add_argument("--mogrifier-rounds", default=None,
                       help="the Mogrifier's rounds (default and 0: none)")
    space.add_argument("--mogrifier-rank", default=None,
                       help="ranks of the Mogrifier's matrices (default: full; ignored at 0 "
                            "rounds)")
    space.add_argument("--budget", type=int, default=None,
                       help="recurrent parameter budget: each trial's size is derived from it")

    tuner = p.add_argument_group("the search")
    tuner.add_argument("--tuner", choices=TUNERS, default="random",
                       help="keras-tuner's oracle")
    tuner.add_argument("--max-trials", type=int, default=10,
                       help="trials to run (random and bayesian)")
    tuner.add_argument("--executions-per-trial", type=int, default=1,
                       help="runs per trial with seeds --seed, --seed + 1, ...; the objective "
                            "is their mean validation BPC")
    tuner.add_argument("--steps-per-trial", type=int, default=500,
                       help="training steps of a trial (Hyperband: steps per epoch)")
    tuner.add_argument("--max-epochs", type=int, default=9,
                       help="Hyperband only: the most epochs a trial trains")
    tuner.add_argument("--directory", default="runs/tuning",
                       help="where the project folder goes")
    tuner.add_argument("--project-name", default="search", help="the project folder's name")
    tuner.add_argument("--overwrite", action="store_true",
                       help="start over instead of continuing the project")
    tuner.add_argument("--seed", type=int, default=0,
                       help="seed of the oracle and of every trial's first run")
    role = tuner.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true", help="serve the oracle to workers")
    role.add_argument("--worker", help="run trials for the chief, with this unique id")
    tuner.add_argument("--oracle-ip", default=None, help="the chief's address")
    tuner.add_argument("--oracle-port", type=port, default=None,
                       help="the chief's port (1–65535)")
    cli.add_wait_timeout(tuner, "the chief (on a worker)")
    tuner.add_argument("--verbose", action="store_true",
                       help="show the backend's own start-up logs")

    fixed = p.add_argument_group("training settings shared by every trial")
    fixed.add_argument("--embedding-dim", type=int, default=64, help="symbol embedding size")
    fixed.add_argument("--batch-size", type=int, default=32, help="rows per batch")
    fixed.add_argument("--seq-len", type=int, default=100, help="symbols per window")
    fixed.add_argument("--valid-symbols", type=int, default=20_000,
                       help="validation symbols (the objective)")
    fixed.add_argument("--test-batch-size", type=int, default=16,
                       help="rows of the final scoring of each run")
    fixed.add_argument("--strategy", default="default",
                       help="default, or a data-parallel strategy of the backend: each trial "
                            "trains on every device of its machine (mirrored on TensorFlow, "
                            "data-parallel on JAX; the tuner's workers already spread trials "
                            "over machines)")
    args = p.parse_args(argv)
    for name in ("max_trials", "executions_per_trial", "steps_per_trial", "max_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.budget is not None and args.budget < 1:
        p.error(f"--budget must be a positive number of weights, got {args.budget}")
    if args.strategy == "multiworker":
        p.error("--strategy multiworker is not for tuning: run one worker per machine "
                "(--chief / --worker) instead")
    for flag in ("directory", "project_name", "worker"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            p.error(f"--{flag.replace('_', '-')} is empty")
    args.corpus_name = cli.corpus_name(args, p, argv)
    return args


def port(text):
    """An argparse type: a TCP port number."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got "
                                         f"{text!r}")
    return number


def values(text, kind, flag, positive=False):
    """Comma-separated values of one axis (`cli.comma_list`), or None when not given."""
    return None if text is None else cli.comma_list(text, kind, flag, positive)


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


def check_project(project):
    """Raises `DamagedFile` for a file that keras-tuner would reload from `project` and
    could not parse (its own error names no file), saying what to do. It reloads a project
    that holds this tuner's file: the oracle, this tuner and every trial."""
    from keras_mulrnn.lm.files import DamagedFile, read_json

    tuner = os.path.join(project, f"{os.environ.get('KERASTUNER_TUNER_ID', 'tuner0')}.json")
    if not os.path.exists(tuner):
        return
    trials = sorted(glob.glob(os.path.join(project, "trial_*", "trial.json")))
    for path in [os.path.join(project, "oracle.json"), tuner] + trials:
        if not os.path.exists(path):
            continue
        try:
            read_json(path)
        except DamagedFile as error:
            if path in trials:
                advice = (f"Restore it, or delete the folder {os.path.dirname(path)!r} (the "
                          f"search forgets that trial and may run it again)")
            else:
                advice = "Restore it"
            raise DamagedFile(f"{error} {advice}, or start the search over with "
                              f"--overwrite.") from None


def meet_the_chief(args):
    """A chief checks that it can serve on its address; a worker waits (bounded and
    interruptibly) for the chief to serve: keras-tuner's own wait holds a worker for an hour
    with no word and no way to stop it."""
    host, port_ = os.environ["KERASTUNER_ORACLE_IP"], int(os.environ["KERASTUNER_ORACLE_PORT"])
    if os.environ["KERASTUNER_TUNER_ID"] == "chief":
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((host, port_))
            except OSError as error:
                raise OSError(f"The chief cannot serve on {host}:{port_}: "
                              f"{error.strerror}. Give this machine's address and a "
                              f"free port.") from None
        return
    import grpc  # (keras-tuner's own dependency)

    connected = grpc.channel_ready_future(grpc.insecure_channel(f"{host}:{port_}"))

    def serving():
        try:  # a gRPC server, not merely something that accepts connections
            connected.result(timeout=0.5)
            return True
        except grpc.FutureTimeoutError:
            return False

    interruption.wait_until(
        serving, args.wait_timeout,
        f"the search's chief at {host}:{port_}",
        lambda: f"No chief answered at {host}:{port_} after {args.wait_timeout:g} s: start "
                f"the chief first (the same command with --chief), check --oracle-ip and "
                f"--oracle-port, or wait longer with --wait-timeout.")


def worker():
    """Whether this process is a worker of keras-tuner's distributed mode."""
    return distributed() and os.environ["KERASTUNER_TUNER_ID"] != "chief"


def distributed():
    """Whether this process is the chief or a worker of keras-tuner's distributed mode."""
    return "KERASTUNER_TUNER_ID" in os.environ


def make_hypermodel(args, corpus):
    """The search space of the flags, checked against the corpus (before anything is
    written)."""
    from tuning.space import LanguageModelHyperModel

    axes = {
        "family": values(args.family, str, "--family"),
        "parametrization": values(args.parametrization, str, "--parametrization"),
        "units": values(args.units, int, "--units"),
        "num_layers": values(args.num_layers, int, "--num-layers"),
        "learning_rate": values(args.learning_rate, float, "--learning-rate"),
        "recurrent_dropout": values(args.recurrent_dropout, float, "--recurrent-dropout"),
    }
    if args.mogrifier_rounds:
        axes["mogrifier_rounds"] = values(args.mogrifier_rounds, int, "--mogrifier-rounds")
    if args.mogrifier_rank:
        axes["mogrifier_rank"] = values(args.mogrifier_rank, int, "--mogrifier-rank",
                                        positive=True)
    if args.rank:
        axes["rank"] = values(args.rank, int, "--rank")
    if args.rank_ratio:
        axes["rank_ratio"] = values(args.rank_ratio, float, "--rank-ratio", positive=True)
    steps = args.steps_per_trial
    base = dataclasses.replace(
        TrainConfig(), embedding_dim=args.embedding_dim, batch_size=args.batch_size,
        seq_len=args.seq_len, steps=steps, eval_every=max(1, steps // 2),
        valid_symbols=args.valid_symbols, eval_batch_size=16,
        test_batch_size=args.test_batch_size, seed=args.seed, sample_length=50,
        strategy=args.strategy,
    ).validate()
    hypermodel = LanguageModelHyperModel(corpus.vocabulary, axes, base, args.budget)
    hypermodel.check_space(corpus)
    return hypermodel


def make_tuner(args, corpus, hypermodel, overwrite):
    """The tuner of the flags, over `hypermodel`; `overwrite` lets keras-tuner delete the
    project first (for a distributed search only: a local one clears it under its lock)."""
    from tuning.space import LanguageModelTuner, make_oracle

    oracle = make_oracle(args.tuner, args.max_trials, args.seed, args.max_epochs)
    return LanguageModelTuner(
        oracle, hypermodel, corpus, executions_per_trial=args.executions_per_trial,
        steps_per_epoch=args.steps_per_trial, directory=args.directory,
        project_name=args.project_name, overwrite=overwrite,
    )


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.directory) and not os.path.isdir(args.directory):
        raise NotADirectoryError(
            f"--directory {args.directory!r} is a file; give a directory for the search.")
    set_role(args)
    if distributed():
        meet_the_chief(args)
    cli.start_backend(args, args.strategy)
    # keras-tuner prints a failed trial's traceback while its (private) DEBUG flag is on, as
    # it is by default: here a trial's error is one line (see `LanguageModelTuner`).
    import keras_tuner.src.config

    keras_tuner.src.config.DEBUG = False
    from keras_mulrnn.lm.lock import clear_held_directory, hold_directory

    corpus = cli.load_named_corpus(args.corpus_name, args)
    hypermodel = make_hypermodel(args, corpus)
    project = os.path.join(args.directory, args.project_name)
    os.makedirs(project, exist_ok=True)
    # One search per project folder, except keras-tuner's own chief and workers, which share
    # it by design. `--overwrite` deletes only under the lock: never a running search's files.
    with (contextlib.nullcontext() if distributed()
          else hold_directory(project, "search")):
        if args.overwrite and not distributed():
            clear_held_directory(project)
        elif not args.overwrite and not worker():
            check_project(project)  # (a worker reloads nothing: the chief's files are live)
        tuner = make_tuner(args, corpus, hypermodel, args.overwrite and distributed())
        tuner.search_space_summary()
        tuner.search()
    # Only a local search holds its oracle's trials (a worker's oracle is a client of the
    # chief's, and the chief trains none).
    trials = [] if distributed() else list(tuner.oracle.trials.values())
    if trials and not any(t.status == "COMPLETED" for t in trials):
        errors = sorted({t.message.rstrip(".") for t in trials if t.message})
        raise RuntimeError(
            f"Every trial of the search failed ({len(trials)}): {'; '.join(errors) or '?'}. "
            f"Fix that, then run again with --overwrite (keras-tuner does not retry a failed "
            f"trial).")
    if not args.worker:
        tuner.results_summary(num_trials=5)
        print(f"\nTable and plot: python tuning/report.py --directory {args.directory} "
              f"--project-name {args.project_name}")


if __name__ == "__main__":
    cli.guarded(main)
