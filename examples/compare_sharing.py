"""The sharing study: additive, shared and unshared cells compared fairly, over seeds.

    python examples/compare_sharing.py --family lstm,gru --seeds 5 --steps 2000 \\
        --output runs/sharing --analysis

`--design factorial` (the default) separates sharing from rank: shared and unshared cells
each at the shared cell's rank and at the equal-budget unshared rank, plus the additive
control at the budget; `--design budget` compares the `--parametrizations` at one budget;
`--design families` puts the shared cell beside the additive one, multiplicative
integration, the Mogrifier (`--mogrifier-rounds`, default 4 full-rank rounds) and the
Mogrifier over the shared cell, all at the shared cell's budget.
Every arm picks its learning rate from `--learning-rates` on the validation split with its
first seed (that run counts as its first seed); `--rates-from` takes the rates another study
chose instead. Without `--data` or `--tfds` the corpus is the one embedded in the package.
Writes `results.md`, `results.csv`, `comparisons.csv` (paired t-tests, Holm-corrected),
`learning_curves.png` (and with `--analysis`, `error_recovery.csv` and the raw and normalised
recovery plots) into `--output`. Rerunning the same command skips finished runs and resumes
an interrupted one; the same command started twice shares the work between two processes
(`--threads 1` each on a 2-core machine).
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

import json
import sys

from keras_mulrnn.lm import cli

# A study of small models: about 3 minutes a run on 2 CPU cores.
DEFAULTS = dict(units=128, embedding_dim=32, batch_size=32, seq_len=100, steps=2000,
                learning_rate=5e-3, eval_every=250, valid_symbols=20_000, eval_batch_size=16,
                test_batch_size=1, sample_length=100)
PARAMETRIZATIONS = ("additive", "shared", "unshared")


def main():
    parser = cli.parser("sharing study", DEFAULTS, "a UTF-8 text, byte or PTB-format file "
                        "(default: the corpus embedded in the package)",
                        exclude=("family", "parametrization", "resume", "learning_rate"),
                        prog="compare_sharing.py")
    cli.add_corpus_arguments(parser)
    parser.add_argument("--family", dest="families", default="lstm,gru",
                        help="comma-separated families (rnn, lstm, gru) or 'all'")
    parser.add_argument("--design", choices=("factorial", "budget", "families"),
                        default="factorial",
                        help="factorial: sharing × rank plus the additive control; budget: "
                             "--parametrizations at one budget; families: the shared cell, "
                             "additive, integration, Mogrifier and Mogrifier-shared at one "
                             "budget")
    parser.add_argument("--parametrizations", default=",".join(PARAMETRIZATIONS),
                        help="the budget design's parametrizations; partitions such as "
                             "ifo+u too")
    parser.add_argument("--budget", type=int, default=None,
                        help="recurrent weights per equal-budget model (default: the shared "
                             "cell's at --units and --rank)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="runs per arm, seeds --seed, --seed + 1, …")
    parser.add_argument("--learning-rates", default="0.002,0.005,0.01",
                        help="the grid each arm picks its rate from (one value: no choice)")
    parser.add_argument("--rates-from",
                        help="another study's selection.json: each arm trains at the rate "
                             "it chose there (no grid)")
    parser.add_argument("--analysis", action="store_true",
                        help="also measure error recovery (raw and normalised) and state "
                             "smoothness")
    args = parser.parse_args()
    corpus_name = cli.corpus_name(args, parser)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.budget is not None and args.budget < 1:
        parser.error(f"--budget must be a positive number of weights, got {args.budget}")
    try:
        rates = cli.comma_list(args.learning_rates, float, "--learning-rates", positive=True)
        families = (["rnn", "lstm", "gru"] if args.families == "all"
                    else cli.comma_list(args.families, str, "--family"))
        parametrizations = cli.comma_list(args.parametrizations, str, "--parametrizations")
    except ValueError as error:
        parser.error(str(error))
    args.learning_rate = rates[0]
    base = cli.configure(args, parser)
    from keras_mulrnn.analysis.study import plan_arms, run_study

    arms = plan_arms(base, families, args.design, parametrizations, args.budget)
    fixed = read_rates(args.rates_from, arms) if args.rates_from else None
    corpus = cli.load_named_corpus(corpus_name, args)
    print(f"{corpus.name}: {len(arms)} arms × {args.seeds} seeds into {args.output}")
    rows = run_study(corpus, arms, args.seeds, rates, args.output, fixed_rates=fixed,
                     analysis=args.analysis, description=" ".join(sys.argv))
    for row in rows:
        spread = f" ± {row['test_bpc_std']:.4f}" if row["test_bpc_std"] is not None else ""
        print(f"{row['family']:>4} {row['arm']:>14}: test BPC {row['test_bpc_mean']:.4f}"
              f"{spread} ({row['seeds']} seeds, {row['recurrent_params']:,} recurrent "
              f"weights, learning rate {row['learning_rate']:g})")
    print(f"Tables and plots: {args.output}/results.md")


def read_rates(path, arms):
    """Arm key → rate, from another study's `selection.json`."""
    from keras_mulrnn.data.corpora import check_file

    check_file(path, "--rates-from file")
    try:
        with open(path) as handle:
            chosen = json.load(handle)["chosen"]
        rates = {arm.key: float(chosen[arm.key]) for arm in arms if arm.key in chosen}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"--rates-from {path!r} is not a study's selection.json (a JSON object whose "
            f"'chosen' maps arms such as 'lstm/shared@128' to rates): "
            f"{type(error).__name__}: {error}") from None
    missing = [arm.key for arm in arms if arm.key not in rates]
    if missing:
        raise ValueError(f"--rates-from {path!r} has no rate for {missing}: it is the "
                         f"selection of a study with other arms.")
    return rates


if __name__ == "__main__":
    cli.guarded(main)
