"""Compare additive, shared and unshared cells at an equal parameter budget, over seeds.

    python examples/compare_sharing.py --family lstm,gru --seeds 3 --steps 2000 \\
        --output runs/sharing --analysis

Every run is the same `TrainConfig` except the parametrization, the size knob that sets the
budget (rank; units for additive cells) and the seed (shared by all parametrizations, so the
runs pair up). Without `--data` or `--tfds` the corpus is the one embedded in the package.
Writes `results.csv`, `results.md`, `paired.csv`, `learning_curves.png` (and with
`--analysis`, `error_recovery.csv`/`.png`) into `--output`. Rerunning the same command skips
finished runs and resumes an interrupted one.
"""

from keras_mulrnn.lm import cli

# A study of 18 small models that fits in about an hour on 2 CPU cores.
DEFAULTS = dict(units=128, embedding_dim=32, batch_size=32, seq_len=100, steps=2000,
                learning_rate=5e-3, eval_every=250, valid_symbols=20_000, eval_batch_size=16,
                test_batch_size=1, sample_length=100)
PARAMETRIZATIONS = ("additive", "shared", "unshared")


def main():
    parser = cli.parser("sharing study", DEFAULTS, "a UTF-8 text or byte file (default: the "
                        "corpus embedded in the package)",
                        exclude=("family", "parametrization", "resume"),
                        prog="compare_sharing.py")
    parser.add_argument("--kind", choices=("char", "byte"), default="char",
                        help="read --data as UTF-8 characters or as raw bytes")
    parser.add_argument("--tfds", help="a TFDS text dataset name instead of --data")
    parser.add_argument("--family", dest="families", default="lstm,gru",
                        help="comma-separated families (rnn, lstm, gru) or 'all'")
    parser.add_argument("--parametrizations", default=",".join(PARAMETRIZATIONS),
                        help="comma-separated parametrizations; partitions such as ifo+u too")
    parser.add_argument("--budget", type=int, default=None,
                        help="recurrent weights per model (default: the shared cell's at "
                             "--units and --rank)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="runs per parametrization, seeds --seed, --seed + 1, …")
    parser.add_argument("--analysis", action="store_true",
                        help="also measure error recovery and state smoothness")
    args = parser.parse_args()
    if args.data is not None and args.tfds is not None:
        parser.error("give at most one of --data FILE or --tfds NAME")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.budget is not None and args.budget < 1:
        parser.error(f"--budget must be a positive number of weights, got {args.budget}")
    base = cli.configure(args, parser)
    from keras_mulrnn.analysis.study import plan_study, run_study
    from keras_mulrnn.data import load_embedded, load_text, load_tfds

    families = ("rnn", "lstm", "gru") if args.families == "all" else args.families.split(",")
    runs = plan_study(base, families, args.parametrizations.split(","), args.seeds,
                      args.budget)
    corpus = (load_tfds(args.tfds, args.kind) if args.tfds
              else load_text(args.data, args.kind) if args.data else load_embedded())
    print(f"{corpus.name}: {len(runs)} runs into {args.output}")
    rows = run_study(corpus, runs, args.output, analysis=args.analysis)
    for row in rows:
        spread = (f" ± {row['test_bpc_std']:.4f}" if row["test_bpc_std"] is not None else "")
        print(f"{row['family']:>4} {row['parametrization']:>10}: test BPC "
              f"{row['test_bpc_mean']:.4f}{spread} ({row['seeds']} seeds, "
              f"{row['recurrent_params']:,} recurrent weights)")
    print(f"Tables and plots: {args.output}/results.md")


if __name__ == "__main__":
    cli.guarded(main)
