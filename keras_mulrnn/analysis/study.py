"""The sharing study: parametrizations compared at an equal parameter budget, repeated.

`plan_study` turns one base `TrainConfig` into the runs of the study: for every family,
parametrization and seed, a copy of the base that differs only in

- `parametrization`;
- the size knob that brings the recurrent stack to the shared budget: the `rank` of a
  multiplicative cell (its `units` stay the base's), the `units` of an additive one (which
  has no rank);
- `seed` (initialization and dropout masks; the same seeds for every parametrization, so run
  `i` of each is paired with run `i` of the others).

Data order, initialization scheme, optimizer, schedule, steps and evaluation are the base's
for all of them. The budget counts the recurrent weights (`stack_params`); by default it is
the count of the shared cell at the base's units and rank. `run_study` trains what is not
finished yet (a rerun skips finished runs and resumes interrupted ones) and `summarize`
writes the tables and plots.
"""

import csv
import dataclasses
import json
import logging
import math
import os

import numpy as np

from keras_mulrnn.factory import transition_arguments
from keras_mulrnn.params import rank_for_budget, stack_params, units_for_budget
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.lock import hold_directory
from keras_mulrnn.validation import check_positive_int
from keras_mulrnn.lm.training import train, write_json_atomically

PARAMETRIZATIONS = ("additive", "shared", "unshared")
# (a, b): report a − b per seed; negative favours a.
PAIRS = (("shared", "unshared"), ("shared", "additive"), ("unshared", "additive"))
RESULT_COLUMNS = ["family", "parametrization", "seeds", "params", "recurrent_params",
                  "units", "rank", "valid_bpc_mean", "valid_bpc_std", "test_bpc_mean",
                  "test_bpc_std", "chars_per_sec"]


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One training run of a study: its directory name and its full configuration."""

    name: str
    config: TrainConfig


def budget_of(base, family):
    """The default budget: the recurrent weights of a shared cell at the base's size."""
    return stack_params(family, "shared", base.units, base.embedding_dim, base.rank,
                        base.num_layers, weight_norm=base.weight_norm)


def equal_budget_config(base, family, parametrization, budget):
    """`base` with this family and parametrization, sized to `budget` recurrent weights."""
    if transition_arguments(family, parametrization)["transition"] == "additive":
        units = units_for_budget(family, parametrization, base.embedding_dim, budget,
                                 num_layers=base.num_layers, weight_norm=base.weight_norm)
        return dataclasses.replace(base, family=family, parametrization=parametrization,
                                   units=units, rank=None)
    rank = rank_for_budget(family, parametrization, base.units, base.embedding_dim, budget,
                           weight_norm=base.weight_norm, num_layers=base.num_layers)
    return dataclasses.replace(base, family=family, parametrization=parametrization,
                               rank=rank)


def plan_study(base, families=("lstm", "gru"), parametrizations=PARAMETRIZATIONS, seeds=3,
               budget=None):
    """The runs of a study, every family × parametrization × seed (see the module doc).

    The single-transform `"rnn"` family has nothing to share: its `"unshared"` is the same
    cell as `"shared"` and is left out.
    """
    if budget is not None:
        check_positive_int("budget", budget)
    runs = []
    for family in families:
        family_budget = budget or budget_of(base, family)
        for parametrization in parametrizations:
            if family == "rnn" and parametrization == "unshared":
                continue
            sized = equal_budget_config(base, family, parametrization, family_budget)
            for index in range(seeds):
                config = dataclasses.replace(sized, seed=base.seed + index).validate()
                runs.append(StudyRun(f"{family}-{parametrization}-seed{config.seed}", config))
    return runs


def run_study(corpus, runs, output_dir, analysis=False, verbose=2, on_run_done=None):
    """Trains every run not finished yet under `output_dir/runs/NAME/`, then summarizes.

    A finished run (its `results.json` exists) is skipped, after checking that it was made
    with the same configuration; an interrupted one (checkpoints, no results) resumes.
    With `analysis`, the error-recovery and state analyses of each finished model are
    computed on the test split (once; kept in `analysis.json`).
    """
    os.makedirs(output_dir, exist_ok=True)
    # Each run builds a new model whose functions TensorFlow traces anew, as it must: its
    # warning about retraced functions says nothing here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with hold_directory(output_dir, "study"):
        for position, run in enumerate(runs, 1):
            _run_one(corpus, run, position, len(runs), output_dir, analysis, verbose)
            if on_run_done is not None:
                on_run_done(run)
        return summarize(output_dir)


def _run_one(corpus, run, position, count, output_dir, analysis, verbose):
    """Trains (or resumes, or skips) one run of a study, then analyses it if asked."""
    directory = os.path.join(output_dir, "runs", run.name)
    results_path = os.path.join(directory, "results.json")
    if os.path.exists(results_path):
        _check_same_config(results_path, run)
        print(f"[{position}/{count}] {run.name}: finished earlier, skipped")
    else:
        checkpoints = os.path.join(directory, "checkpoints")
        resume = os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))
        print(f"[{position}/{count}] {run.name}: "
              f"{'resuming' if resume else 'training'} (units {run.config.units}, "
              f"rank {run.config.rank})", flush=True)
        train(corpus, run.config, directory, resume=resume, verbose=verbose)
    if analysis:
        analyse_run(corpus, directory)


def analyse_run(corpus, directory, positions=1000, horizon=50):
    """Error recovery and successive-state cosine of a finished run, on the test split;
    written to `analysis.json` (computed once)."""
    from keras_mulrnn.analysis.recovery import error_recovery, state_cosine
    from keras_mulrnn.saving import load_model

    path = os.path.join(directory, "analysis.json")
    if os.path.exists(path):
        return _read_json(path)
    model = load_model(os.path.join(directory, "model.keras"))
    recovery = error_recovery(model, corpus.test, positions=positions, horizon=horizon)
    result = {**recovery.summary(), "state_cosine": state_cosine(model, corpus.test)}
    write_json_atomically(path, result)
    return result


# ------------------------------------------------------------------------ summaries


def collect(output_dir):
    """The finished runs of a study: one dict per run (results, log, analysis)."""
    runs_dir = os.path.join(output_dir, "runs")
    finished = []
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else ():
        directory = os.path.join(runs_dir, name)
        if not os.path.exists(os.path.join(directory, "results.json")):
            continue
        run = _read_json(os.path.join(directory, "results.json"))
        run["name"] = name
        run["curve"] = _validation_curve(os.path.join(directory, "log.csv"), run["config"])
        analysis = os.path.join(directory, "analysis.json")
        run["analysis"] = _read_json(analysis) if os.path.exists(analysis) else None
        finished.append(run)
    if not finished:
        raise ValueError(f"No finished runs in {runs_dir!r}: run the study first.")
    return finished


def summarize(output_dir):
    """Writes `results.csv`, `results.md`, `paired.csv`, `learning_curves.png` (and, when
    analysed, `error_recovery.csv` and `error_recovery.png`); returns the result rows."""
    runs = collect(output_dir)
    rows = result_rows(runs)
    paired = paired_comparisons(runs)
    recovery = recovery_rows(runs)
    _write_csv(os.path.join(output_dir, "results.csv"), RESULT_COLUMNS, rows)
    _write_csv(os.path.join(output_dir, "paired.csv"), PAIRED_COLUMNS, paired)
    if recovery:
        _write_csv(os.path.join(output_dir, "error_recovery.csv"), RECOVERY_COLUMNS, recovery)
    plots = _plot(runs, output_dir)
    with open(os.path.join(output_dir, "results.md"), "w") as handle:
        handle.write(results_markdown(runs, rows, paired, recovery, plots))
    return rows


def _groups(runs):
    groups = {}
    for run in runs:
        config = run["config"]
        groups.setdefault((config["family"], config["parametrization"]), []).append(run)
    return groups


def _mean(values):
    return float(np.mean(values)) if values else None


def _mean_std(values):
    """Mean and sample standard deviation (None for one value: it is undefined)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def result_rows(runs):
    rows = []
    for (family, parametrization), group in _groups(runs).items():
        config = group[0]["config"]
        valid = _mean_std([r["valid_bpc"] for r in group])
        test = _mean_std([r["test_bpc"] for r in group])
        rows.append({
            "family": family, "parametrization": parametrization, "seeds": len(group),
            "params": group[0]["params"], "recurrent_params": group[0]["recurrent_params"],
            "units": config["units"], "rank": config["rank"],
            "valid_bpc_mean": valid[0], "valid_bpc_std": valid[1],
            "test_bpc_mean": test[0], "test_bpc_std": test[1],
            # (None for a run finished by a resume that had no steps left to time.)
            "chars_per_sec": _mean([r["chars_per_sec"] for r in group
                                    if r.get("chars_per_sec")]),
        })
    return rows


PAIRED_COLUMNS = ["family", "comparison", "split", "seeds", "differences", "mean",
                  "ci95_low", "ci95_high"]


def paired_comparisons(runs):
    """Per family and pair `(a, b)`: `bpc(a) − bpc(b)` of the runs with the same seed, their
    mean and a 95% t-interval (none with a single seed)."""
    from scipy import stats

    groups = _groups(runs)
    rows = []
    families = sorted({family for family, _ in groups})
    for family in families:
        for a, b in PAIRS:
            if (family, a) not in groups or (family, b) not in groups:
                continue
            by_seed = {r["config"]["seed"]: r for r in groups[(family, b)]}
            pairs = [(r, by_seed[r["config"]["seed"]]) for r in groups[(family, a)]
                     if r["config"]["seed"] in by_seed]
            for split in ("test", "valid"):
                differences = np.array([x[f"{split}_bpc"] - y[f"{split}_bpc"] for x, y in pairs])
                mean = float(differences.mean())
                low = high = None
                if len(differences) > 1:
                    half = stats.t.ppf(0.975, len(differences) - 1) * differences.std(
                        ddof=1) / math.sqrt(len(differences))
                    low, high = mean - half, mean + half
                rows.append({"family": family, "comparison": f"{a} − {b}", "split": split,
                             "seeds": len(differences),
                             "differences": " ".join(f"{d:+.4f}" for d in differences),
                             "mean": mean, "ci95_low": low, "ci95_high": high})
    return rows


RECOVERY_COLUMNS = ["family", "parametrization", "seeds", "area_mean", "area_std",
                    "recovery_steps_mean", "first_step_excess", "state_cosine"]


def recovery_rows(runs):
    rows = []
    for (family, parametrization), group in _groups(runs).items():
        analysed = [r["analysis"] for r in group if r["analysis"]]
        if not analysed:
            continue
        area = _mean_std([a["area"] for a in analysed])
        steps = [a["recovery_steps"] for a in analysed]
        rows.append({
            "family": family, "parametrization": parametrization, "seeds": len(analysed),
            "area_mean": area[0], "area_std": area[1],
            # A model that never recovers within the horizon counts as the horizon + 1.
            "recovery_steps_mean": float(np.mean([s if s is not None else a["horizon"] + 1
                                                  for s, a in zip(steps, analysed)])),
            "first_step_excess": float(np.mean([a["curve"][0] for a in analysed])),
            "state_cosine": float(np.mean([a["state_cosine"][-1] for a in analysed])),
        })
    return rows


def results_markdown(runs, rows, paired, recovery, plots):
    config = runs[0]["config"]
    lines = [
        "# Sharing study",
        "",
        f"Corpus `{runs[0]['corpus']}`; {config['steps']} steps of batch {config['batch_size']}"
        f" × {config['seq_len']} symbols, Adam at {config['learning_rate']} decayed linearly "
        f"to 0, embedding {config['embedding_dim']}, {config['num_layers']} layer(s). "
        "Within a family every parametrization has the same recurrent-weight budget "
        "(`recurrent_params`); `params` adds the embedding and output layer. BPC over the "
        f"whole valid and test splits (rows of {config['test_batch_size']}). Mean ± "
        "standard deviation over seeds.",
        "",
        _table(RESULT_COLUMNS, rows),
        "",
        "## Paired comparisons (same seed, same data order)",
        "",
        "`a − b` in BPC per seed; negative favours `a`. 95% t-interval over seeds.",
        "",
        _table(PAIRED_COLUMNS, paired),
    ]
    if recovery:
        lines += [
            "",
            "## Error recovery (test split)",
            "",
            "Excess loss after one wrong input symbol: `area` sums it over the next steps "
            "(bits), `recovery_steps` is the first step with an excess under the threshold, "
            "`first_step_excess` the excess on the very next symbol, `state_cosine` the mean "
            "cosine of successive hidden states of the top layer.",
            "",
            _table(RECOVERY_COLUMNS, recovery),
        ]
    for title, name in plots:
        lines += ["", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def _table(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _validation_curve(log_path, config):
    """`[(step, train_bpc, val_bpc)]` from a run's CSV log (one line per validation)."""
    if not os.path.exists(log_path):
        return []
    points = {}
    with open(log_path) as handle:
        for line in csv.DictReader(handle):
            step = min((int(line["epoch"]) + 1) * config["eval_every"], config["steps"])
            points[step] = (step, float(line["bpc"]), float(line["val_bpc"]))
    return [points[step] for step in sorted(points)]


def _plot(runs, output_dir):
    """The learning curves (and error-recovery curves) as PNGs; [] without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -e '.[plot]').")
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot

    groups = _groups(runs)

    def learning_curves(axis, family, parametrization, group):
        curves = [r["curve"] for r in group if r["curve"]]
        if not curves:
            return
        length = min(len(c) for c in curves)
        steps = [p[0] for p in curves[0][:length]]
        values = np.array([[p[2] for p in c[:length]] for c in curves])
        mean, std = values.mean(axis=0), values.std(axis=0)
        axis.plot(steps, mean, label=f"{parametrization} ({len(curves)} seeds)")
        axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
        axis.set(title=f"m{family.upper()} (additive: {family.upper()})", xlabel="step",
                 ylabel="validation BPC")

    def recovery_curves(axis, family, parametrization, group):
        analysed = [r["analysis"] for r in group if r["analysis"]]
        if not analysed:
            return
        curve = np.mean([a["curve"] for a in analysed], axis=0)
        axis.plot(np.arange(1, len(curve) + 1), curve, label=parametrization)
        axis.axhline(analysed[0]["threshold"], color="grey", linestyle=":")
        axis.set(title=f"{family}: excess loss after a wrong symbol", xlabel="steps after",
                 ylabel="excess bits")
        # Logarithmic above 0.01 bits, linear around 0 (late excesses are noise of either
        # sign).
        axis.set_yscale("symlog", linthresh=1e-2)

    plots = [("validation BPC during training, mean ± std over seeds", "learning_curves.png",
              learning_curves)]
    if any(r["analysis"] for r in runs):
        plots.append(("excess loss after one wrong symbol, mean over seeds",
                      "error_recovery.png", recovery_curves))
    families = sorted({family for family, _ in groups})
    for _, name, draw in plots:
        figure, axes = pyplot.subplots(1, len(families), figsize=(6 * len(families), 4),
                                       squeeze=False)
        for axis, family in zip(axes[0], families):
            for (group_family, parametrization), group in sorted(groups.items()):
                if group_family == family:
                    draw(axis, family, parametrization, group)
            axis.legend()
        figure.tight_layout()
        figure.savefig(os.path.join(output_dir, name), dpi=100)
        pyplot.close(figure)
    return [(title, name) for title, name, _ in plots]


def _check_same_config(results_path, run):
    # A setting that the saved run predates had its default value then.
    saved = {**dataclasses.asdict(TrainConfig()), **_read_json(results_path)["config"]}
    wanted = dataclasses.asdict(run.config)
    differing = sorted(key for key in wanted if saved.get(key) != wanted[key])
    if differing:
        raise ValueError(
            f"{os.path.dirname(results_path)!r} holds a finished run with other settings "
            f"({', '.join(f'{k}: {saved.get(k)!r} vs {wanted[k]!r}' for k in differing)}). "
            f"Use the same flags to continue this study, or another --output directory."
        )


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def _write_csv(path, columns, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({c: row.get(c) for c in columns} for row in rows)
