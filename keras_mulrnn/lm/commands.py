"""The command-line programs: train, evaluate, generate, study.

`python -m keras_mulrnn train|evaluate|generate|study ...` runs them from an installed wheel;
the scripts in `examples/` are the same programs with the defaults of their jobs (enwik8,
Penn Treebank, any text, the sharing study). Each parses its arguments before Keras loads (so `--help` is instant and
a bad flag fails at once), then starts the backend quietly (`cli.start_backend`).
"""

import argparse
import json
import math
import os
import sys
import time

from keras_mulrnn.lm import cli

# `train` without a job's defaults: a mid-sized model on any text.
TEXT_DEFAULTS = dict(family="lstm", parametrization="shared", units=512, embedding_dim=64,
                     batch_size=32, seq_len=100, steps=5000, eval_every=500,
                     eval_batch_size=16, test_batch_size=1)
# More than this is more than anyone reads; several runs with other seeds give more.
MAX_LENGTH = 10_000_000
# `study`: small models, about 3 minutes a run on 2 CPU cores.
STUDY_DEFAULTS = dict(units=128, embedding_dim=32, batch_size=32, seq_len=100, steps=2000,
                      learning_rate=5e-3, eval_every=250, valid_symbols=20_000,
                      eval_batch_size=16, test_batch_size=1, sample_length=100)
# The budget design's default parametrizations.
STUDY_PARAMETRIZATIONS = ("additive", "shared", "unshared")


def train(argv=None, description="Train a character language model.", defaults=None,
          corpus="auto", prog="keras_mulrnn train"):
    """Trains on the corpus the flags name (default `corpus`), prints the test BPC and a
    sample. With `corpus="enwik8"`, `--quick` without `--data` trains on the embedded
    corpus instead of downloading enwik8, and says so."""
    parser = cli.parser(description, TEXT_DEFAULTS if defaults is None else defaults,
                        "the data file (or PTB directory); see --corpus", prog=prog)
    cli.add_corpus_arguments(parser, corpus)
    args = parser.parse_args(argv)
    name = cli.corpus_name(args, parser, argv)
    if name == "enwik8" and args.quick and args.data is None:
        print("--quick without --data: training on the corpus embedded in the package "
              "(Tiny Shakespeare, 1.1 MB, public domain). Give --data for enwik8.")
        name = "embedded"
    config = cli.configure(args, parser, argv)
    cli.run(cli.load_named_corpus(name, args), config, args)


def evaluate(argv=None, prog="keras_mulrnn evaluate"):
    """Prints the bits per character of a trained model on a split (and, with `--dynamic`,
    its dynamic-evaluation BPC)."""
    p = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Bits per character of a trained model on a split of a corpus, every "
                    "symbol after the first scored once with the state carried across it.")
    p.add_argument("--model", required=True, help="a model.keras or best.keras file")
    cli.add_corpus_arguments(p, data_help="the file (or PTB directory) the model was "
                                          "trained on")
    p.add_argument("--split", choices=("train", "valid", "test"), default="test",
                   help="the split to score")
    p.add_argument("--batch-size", type=int, default=1,
                   help="rows scored in parallel (1: the papers' protocol; each extra row "
                        "starts from a zero state)")
    p.add_argument("--seq-len", type=int, default=100,
                   help="symbols per window (per adapted segment with --dynamic)")
    p.add_argument("--dynamic", action="store_true",
                   help="also run dynamic evaluation (Krause et al., 2018)")
    p.add_argument("--dynamic-lr", type=float, default=3e-4, help="η of the update")
    p.add_argument("--dynamic-decay", type=float, default=1e-3,
                   help="λ, the decay towards the trained weights")
    p.add_argument("--statistics-segments", type=int, default=2000,
                   help="training segments whose gradients give the RMS statistics")
    p.add_argument("--verbose", action="store_true",
                   help="show the backend's own start-up logs")
    args = p.parse_args(argv)
    name = cli.corpus_name(args, p, argv)
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--seq-len", args.seq_len, 1),
                             ("--statistics-segments", args.statistics_segments, 1)):
        if value < low:
            p.error(f"{flag} must be at least {low}, got {value}")
    for flag, value in (("--dynamic-lr", args.dynamic_lr),
                        ("--dynamic-decay", args.dynamic_decay)):
        if not (math.isfinite(value) and value >= 0):
            p.error(f"{flag} must be a finite number >= 0, got {value}")
    cli.start_backend(args)
    from keras_mulrnn.analysis.dynamic_evaluation import dynamic_evaluate, gradient_statistics
    from keras_mulrnn.lm.evaluation import evaluate_bpc
    from keras_mulrnn.saving import load_language_model

    model = load_language_model(args.model)
    corpus = cli.load_named_corpus(name, args)
    if corpus.vocabulary != model.vocabulary:
        raise ValueError(
            f"The model's vocabulary ({len(model.vocabulary)} {model.vocabulary.kind} symbols) "
            f"is not this data's ({len(corpus.vocabulary)} {corpus.vocabulary.kind} symbols): "
            f"evaluate on the data the model was trained on (the same --corpus, --data and "
            f"--kind)."
        )
    split = corpus.split(args.split)
    if not args.dynamic:
        bpc, symbols = evaluate_bpc(model, split, args.batch_size, args.seq_len)
        print(f"{corpus.name} {args.split}: {bpc:.4f} bits per character over {symbols:,} "
              f"symbols")
        return
    statistics = gradient_statistics(model, corpus.train, args.batch_size, args.seq_len,
                                     args.statistics_segments)
    result = dynamic_evaluate(model, split, statistics, args.dynamic_lr, args.dynamic_decay,
                              args.seq_len, args.batch_size)
    print(f"{corpus.name} {args.split} over {result.symbols:,} symbols: static "
          f"{result.static_bpc:.4f} BPC, dynamic {result.dynamic_bpc:.4f} BPC "
          f"(lr {args.dynamic_lr:g}, decay {args.dynamic_decay:g}, segments of "
          f"{args.seq_len})")


def generate(argv=None, prog="keras_mulrnn generate"):
    """Prints the prompt and the text sampled after it, streamed as it is sampled."""
    p = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Sample text from a trained model, streamed as it is sampled.")
    p.add_argument("--model", required=True, help="a model.keras or best.keras file")
    p.add_argument("--prompt", required=True,
                   help="the text to continue (every symbol must be in the model's vocabulary)")
    p.add_argument("--length", type=int, default=300,
                   help=f"symbols to sample (at most {MAX_LENGTH:,})")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="below 1 sharpens the distribution, above 1 flattens it")
    p.add_argument("--top-k", type=int, default=None,
                   help="sample only among the k most likely symbols (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same text")
    p.add_argument("--verbose", action="store_true",
                   help="show the backend's own start-up logs")
    args = p.parse_args(argv)
    if not 0 <= args.length <= MAX_LENGTH:
        p.error(f"--length must be in [0, {MAX_LENGTH:,}], got {args.length}")
    cli.start_backend(args)
    from keras_mulrnn.lm.generation import (CHUNK, check_generation_arguments, check_prompt,
                                            sample)
    from keras_mulrnn.saving import load_language_model

    model = load_language_model(args.model)
    # Checked before any output: the prompt is printed first.
    check_generation_arguments(args.length, args.temperature, args.top_k, args.seed,
                               len(model.vocabulary))
    prompt_ids = check_prompt(model, args.prompt)
    print(args.prompt, end="", flush=True)
    progress = _StreamedText(args.length, CHUNK)
    sample(model, prompt_ids, args.length, args.temperature, args.top_k, args.seed,
           on_chunk=progress.show)
    print(flush=True)


class _StreamedText:
    """Prints each chunk as it comes; for a long text, says on stderr how long it will take
    once the sampling rate is known (after the first chunk, which compiles the sampler)."""

    def __init__(self, length, chunk):
        self.length, self.chunk, self.done, self.started = length, chunk, 0, None

    def show(self, texts):
        print(texts[0], end="", flush=True)
        self.done += len(texts[0])
        now = time.perf_counter()
        if self.started is None:
            self.started, self.first = now, self.done
            return
        if self.done - self.first == self.chunk and self.length - self.done > 20 * self.chunk:
            rate = self.chunk / (now - self.started)
            left = (self.length - self.done) / rate
            print(f"\n[sampling {self.length:,} symbols at about {rate:,.0f} per second: "
                  f"{left / 60:,.1f} more minutes]", file=sys.stderr, flush=True)


def study(argv=None, prog="keras_mulrnn study"):
    """Trains the runs of a sharing study that are not finished, then writes its tables and
    plots (`keras_mulrnn.analysis.study`)."""
    parser = cli.parser("sharing study", STUDY_DEFAULTS, "a UTF-8 text, byte or PTB-format "
                        "file (default: the corpus embedded in the package)",
                        exclude=("family", "parametrization", "resume", "learning_rate"),
                        prog=prog)
    cli.add_corpus_arguments(parser)
    parser.add_argument("--family", dest="families", default="lstm,gru",
                        help="comma-separated families (rnn, lstm, gru) or 'all'")
    parser.add_argument("--design", choices=("factorial", "budget", "families"),
                        default="factorial",
                        help="factorial: sharing × rank plus the additive control; budget: "
                             "--parametrizations at one budget; families: the shared cell, "
                             "additive, integration, Mogrifier and Mogrifier-shared at one "
                             "budget")
    parser.add_argument("--parametrizations", default=",".join(STUDY_PARAMETRIZATIONS),
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
    parser.add_argument("--trend-from",
                        help="a finished study of the same design at another budget: also "
                             "write trend.csv and trend.md (each effect at both budgets and "
                             "its change, with Welch's interval)")
    args = parser.parse_args(argv)
    corpus_name = cli.corpus_name(args, parser, argv)
    if args.trend_from is not None and not os.path.isfile(
            os.path.join(args.trend_from, "comparisons.csv")):
        parser.error(f"--trend-from {args.trend_from!r} is not a finished study's directory "
                     f"(it has no comparisons.csv)")
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
    base = cli.configure(args, parser, argv)
    from keras_mulrnn.analysis.study import plan_arms, run_study

    arms = plan_arms(base, families, args.design, parametrizations, args.budget)
    fixed = _chosen_rates(args.rates_from, arms) if args.rates_from else None
    corpus = cli.load_named_corpus(corpus_name, args)
    print(f"{corpus.name}: {len(arms)} arms × {args.seeds} seeds into {args.output}")
    command = " ".join(sys.argv if argv is None else [prog, *argv])  # (study.json's record)
    rows = run_study(corpus, arms, args.seeds, rates, args.output, fixed_rates=fixed,
                     analysis=args.analysis, description=command)
    for row in rows:
        spread = f" ± {row['test_bpc_std']:.4f}" if row["test_bpc_std"] is not None else ""
        print(f"{row['family']:>4} {row['arm']:>14}: test BPC {row['test_bpc_mean']:.4f}"
              f"{spread} ({row['seeds']} seeds, {row['recurrent_params']:,} recurrent "
              f"weights, learning rate {row['learning_rate']:g})")
    print(f"Tables and plots: {args.output}/results.md")
    if args.trend_from:
        from keras_mulrnn.analysis.study import write_trend

        write_trend(args.trend_from, args.output, args.output)
        print(f"The effects at both budgets: {args.output}/trend.md")


def _chosen_rates(path, arms):
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


COMMANDS = {"train": train, "evaluate": evaluate, "generate": generate, "study": study}
