"""The study's report: the finished runs collected, the arm and comparison tables (CSV and
Markdown), the rate brackets, the learning-curve and error-recovery plots."""

import os

import numpy as np

from keras_mulrnn.analysis.study.comparisons import COMPARISON_COLUMNS, comparison_rows
from keras_mulrnn.analysis.study.design import (
    BRACKET_FACTOR,
    SELECTION_FILE,
    STUDY_FILE,
    diverged,
    stopped_by_nan,
)
from keras_mulrnn.lm import files
from keras_mulrnn.lm.callbacks import ValidationLog
from keras_mulrnn.lm.run_directory import LOG, RESULT_FIGURES, RESULTS


def collect(output_dir):
    """The finished runs of a study: one dict per run (results, learning curve, analysis,
    and its arm from `study.json`)."""
    plan = files.read_json(os.path.join(output_dir, STUDY_FILE))
    arms = {_arm_key(arm): arm for arm in plan["arms"]}
    finished = []
    for name, directory, run in _run_results(output_dir):
        if stopped_by_nan(run):
            continue  # left out of every table (its rate was not chosen, or it is a lost seed)
        run.update(name=name, arm=arms.get(_run_arm_key(name, run)),
                   curve=_validation_curve(os.path.join(directory, LOG)))
        analysis = os.path.join(directory, "analysis.json")
        run["analysis"] = files.read_json(analysis) if os.path.exists(analysis) else None
        if run["arm"] is not None:
            finished.append(run)
    if not finished:
        raise ValueError(f"No finished runs in {os.path.join(output_dir, 'runs')!r}: run the "
                         f"study first.")
    return plan, finished


def _run_results(output_dir):
    """`(name, directory, results)` of each run of a study with a `results.json`."""
    runs_dir = os.path.join(output_dir, "runs")
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else ():
        directory = os.path.join(runs_dir, name)
        if os.path.exists(os.path.join(directory, RESULTS)):
            yield name, directory, files.read_json(os.path.join(directory, RESULTS),
                                                   RESULT_FIGURES)


def _run_arm_key(name, run):
    """The arm key of a run, from its directory name (`FAMILY-ARM-lrRATE-seedSEED`)."""
    return f"{run['config']['family']}/{name.split('-lr')[0].split('-', 1)[1]}"


def summarize(output_dir, chosen=None):
    """Writes `results.csv`, `comparisons.csv`, `runs.csv`, `results.md`,
    `learning_curves.png` (and, when analysed, `error_recovery.csv`, `error_recovery.png`);
    returns the arm rows. `chosen` (arm key → rate) is the runner's choice; without it, the
    choice recorded in `selection.json` by the study's last finish, or for a study without
    one (unfinished, or older than the record) `_chosen_rates`."""
    plan, runs = collect(output_dir)
    selection_path = os.path.join(output_dir, SELECTION_FILE)
    selection = files.read_json(selection_path) if os.path.exists(selection_path) else None
    if chosen is None:
        chosen = {**(selection["chosen"] if selection else
                     _chosen_rates(plan, runs, _stopped_by_nan(output_dir))),
                  **plan["fixed_rates"]}
    counted = _counted(runs, chosen)
    rows = arm_rows(counted)
    comparisons = comparison_rows(counted, plan)
    recovery = recovery_rows(counted)
    _write_csv(os.path.join(output_dir, "results.csv"), ARM_COLUMNS, rows)
    _write_csv(os.path.join(output_dir, "comparisons.csv"), COMPARISON_COLUMNS, comparisons)
    _write_csv(os.path.join(output_dir, "runs.csv"), RUN_COLUMNS, run_rows(runs))
    if recovery:
        _write_csv(os.path.join(output_dir, "error_recovery.csv"), RECOVERY_COLUMNS, recovery)
    plots = _plot(counted, output_dir)
    files.write_text(os.path.join(output_dir, "results.md"),
                     results_markdown(plan, counted, rows, comparisons, recovery, plots, runs,
                                      selection))
    return rows


def _arm_key(arm):
    """An arm's key from its record in `study.json`: `family/name`, as `Arm.key`."""
    return f"{arm['family']}/{arm['name']}"


def _chosen_rates(plan, runs, stopped=()):
    """Arm key → the rate of its first-seed run with the lowest validation BPC, below the
    lowest rate at which one of the plan's seeds diverged (`stopped`: the `(arm key, rate,
    seed)` of the runs stopped by a NaN, which `runs` leaves out). This is `select_rates`'s
    rule without its bracket, for a study without its record: the choice its finished runs
    make so far."""
    first = plan["base"]["seed"]
    seeds = range(first, first + plan["seeds"])
    flagged = [(_arm_key(run["arm"]), run["config"]["learning_rate"], run["config"]["seed"])
               for run in runs if diverged(run)]
    edge = {}  # arm key → the lowest rate at which a seed diverged
    for key, rate, seed in [*stopped, *flagged]:
        if seed in seeds:
            edge[key] = min(edge.get(key, rate), rate)
    best = {}
    for run in runs:
        key, rate = _arm_key(run["arm"]), run["config"]["learning_rate"]
        if run["config"]["seed"] == first and rate < edge.get(key, float("inf")) and (
                key not in best or run["valid_bpc"] < best[key][1]):
            best[key] = (rate, run["valid_bpc"])
    return {key: rate for key, (rate, _) in best.items()}


def _stopped_by_nan(output_dir):
    """The `(arm key, rate, seed)` of each run of a study stopped by a NaN."""
    return [(_run_arm_key(name, run), run["config"]["learning_rate"], run["config"]["seed"])
            for name, _, run in _run_results(output_dir) if stopped_by_nan(run)]


def _counted(runs, chosen):
    """The runs that count as seeds of their arm: all of them at the arm's chosen rate (the
    other rates' first-seed runs served the selection only)."""
    counted = []
    for run in runs:
        rate = chosen.get(_arm_key(run["arm"]))
        if rate is None or run["config"]["learning_rate"] == rate:
            counted.append(run)
    return counted


def _by_arm(runs):
    arms = {}
    for run in runs:
        arms.setdefault((run["arm"]["family"], run["arm"]["name"]), []).append(run)
    return arms


def _mean(values):
    return float(np.mean(values)) if values else None


def _mean_std(values):
    """Mean and sample standard deviation (None for one value: it is undefined)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


ARM_COLUMNS = ["family", "arm", "sharing", "rank_level", "units", "rank", "mogrifier_rounds",
               "recurrent_params",
               "params", "learning_rate", "seeds", "valid_bpc_mean", "valid_bpc_std",
               "test_bpc_mean", "test_bpc_std", "chars_per_sec"]


def arm_rows(runs):
    rows = []
    for (family, name), group in _by_arm(runs).items():
        arm, config = group[0]["arm"], group[0]["config"]
        valid = _mean_std([r["valid_bpc"] for r in group])
        test = _mean_std([r["test_bpc"] for r in group])
        rows.append({
            "family": family, "arm": name, "sharing": arm["sharing"],
            "rank_level": arm["level"], "units": config["units"], "rank": config["rank"],
            "mogrifier_rounds": config.get("mogrifier_rounds", 0),
            "recurrent_params": group[0]["recurrent_params"], "params": group[0]["params"],
            "learning_rate": config["learning_rate"], "seeds": len(group),
            "valid_bpc_mean": valid[0], "valid_bpc_std": valid[1],
            "test_bpc_mean": test[0], "test_bpc_std": test[1],
            # (None for a run finished by a resume that had no steps left to time.)
            "chars_per_sec": _mean([r["chars_per_sec"] for r in group
                                    if r.get("chars_per_sec")]),
        })
    return rows


RUN_COLUMNS = ["run", "family", "arm", "parametrization", "units", "rank", "learning_rate",
               "seed", "steps", "valid_bpc", "test_bpc", "diverged", "train_seconds",
               "commit", "modified"]


def run_rows(runs):
    """One row per finished run, chosen rate or not (a run stopped by a NaN has no figures:
    `selection.json` and the report's bracket table record it as diverged)."""
    return [{
        "run": run["name"], "family": run["arm"]["family"], "arm": run["arm"]["name"],
        "parametrization": run["config"]["parametrization"], "units": run["config"]["units"],
        "rank": run["config"]["rank"], "learning_rate": run["config"]["learning_rate"],
        "seed": run["config"]["seed"], "steps": run["steps"], "valid_bpc": run["valid_bpc"],
        "test_bpc": run["test_bpc"], "diverged": run["diverged"],
        # (None for a run finished by a resume that had no steps left to time.)
        "train_seconds": run.get("train_seconds"),
        "commit": (run.get("code") or {}).get("commit"),
        "modified": (run.get("code") or {}).get("modified"),
    } for run in runs]


RECOVERY_COLUMNS = ["family", "arm", "seeds", "clean_bits", "first_step_excess",
                    "area_mean", "relative_area_mean", "remaining_after_5",
                    "remaining_after_20", "recovery_steps_mean", "state_cosine"]


def recovery_rows(runs):
    rows = []
    for (family, name), group in _by_arm(runs).items():
        analysed = [r["analysis"] for r in group if r["analysis"]]
        if not analysed:
            continue
        steps = [a["recovery_steps"] for a in analysed]
        rows.append({
            "family": family, "arm": name, "seeds": len(analysed),
            "clean_bits": _mean([np.mean(a["clean"]) for a in analysed if "clean" in a]),
            "first_step_excess": _mean([a["curve"][0] for a in analysed]),
            "area_mean": _mean([a["area"] for a in analysed]),
            "relative_area_mean": _mean([a["relative_area"] for a in analysed
                                         if "relative_area" in a]),
            "remaining_after_5": _mean([a["remaining"][4] for a in analysed
                                        if "remaining" in a]),
            "remaining_after_20": _mean([a["remaining"][19] for a in analysed
                                         if "remaining" in a]),
            # A model that never recovers within the horizon counts as the horizon + 1.
            "recovery_steps_mean": _mean([s if s is not None else a["horizon"] + 1
                                          for s, a in zip(steps, analysed)]),
            "state_cosine": _mean([a["state_cosine"][-1] for a in analysed]),
        })
    return rows


def _bracket_lines(selection):
    """The report's table of each arm's rate search (from `selection.json`), if any."""
    paths = (selection or {}).get("paths") or {}
    if not paths:
        return []
    lines = ["| arm | chosen | bracket | validation BPC of the first seed at each rate tried |",
             "|---|---|---|---|"]
    for key, path in sorted(paths.items()):
        lost = path.get("diverged_seeds", {})  # (not recorded before 2026-12-03)
        tried = ", ".join(
            f"{rate}: {'diverged' if bpc is None else f'{bpc:.4f}'}"
            + (f" (seed{'s' if len(lost[rate]) > 1 else ''} "
               f"{', '.join(map(str, lost[rate]))} diverged)" if rate in lost else "")
            for rate, bpc in path["tried"].items())
        lines.append(f"| {key} | {selection['chosen'].get(key, '')} | {path['bracket']} | "
                     f"{tried} |")
    return lines + [""]


def _rates_line(plan):
    """How the arms' learning rates were chosen: the grid, unless every rate was fixed."""
    fixed = plan["fixed_rates"]
    if all(_arm_key(arm) in fixed for arm in plan["arms"]):
        return f"Learning rates: fixed for every arm (another study's choice): {fixed}."
    if len(plan["rates"]) == 1:
        return (f"Learning rate: {plan['rates'][0]} for every arm (given, not searched)"
                + (f"; fixed: {fixed}" if fixed else "") + ".")
    return (f"Learning rates: {plan['rates']}; each arm's is the one with the lowest "
            "validation BPC of its first seed, interior to the rates tried (a best rate at the "
            f"grid's edge grows the grid ×{BRACKET_FACTOR:g} on that side), among the rates "
            "where no seed diverged (stopped by a NaN or no better than a uniform guess)"
            + (f"; fixed: {fixed}" if fixed else "") + ".")


def results_markdown(plan, runs, rows, comparisons, recovery, plots, all_runs,
                     selection=None):
    config = runs[0]["config"]
    commits = sorted({str((r.get("code") or {}).get("commit")) for r in all_runs})
    lines = [
        "# Sharing study",
        "",
        f"Corpus `{runs[0]['corpus']}`; {config['steps']} steps of batch {config['batch_size']}"
        f" × {config['seq_len']} symbols, Adam decayed linearly to 0 (rate per arm, below), "
        f"embedding {config['embedding_dim']}, {config['num_layers']} layer(s). BPC over the "
        f"whole valid and test splits (rows of {config['test_batch_size']}). Mean ± standard "
        "deviation over seeds (none for one seed).",
        "",
        f"Command: `{plan.get('description') or 'keras_mulrnn.analysis.study.run_study'}`; "
        f"code: {', '.join(commits)} (every run's `results.json` records its own); seeds "
        f"{sorted({r['config']['seed'] for r in runs})}.",
        "",
        _rates_line(plan),
        "",
        *_bracket_lines(selection),
        table(ARM_COLUMNS, rows),
        "",
        "## Comparisons (test split; runs paired by seed)",
        "",
        "`a − b` in BPC per seed; negative favours `a`. Mean, 95% t-interval, paired t-test, "
        "Holm-adjusted p over the tests of one family (the rows of kind `test` of that "
        "family), effect size d_z = mean / sd of the differences. Rows of kind "
        "`descriptive` are the simple effects behind the main effects; their p is not "
        "corrected.",
        "",
        table(COMPARISON_COLUMNS, comparisons),
    ]
    if recovery:
        lines += [
            "",
            "## Error recovery (test split)",
            "",
            "After one wrong input symbol: `first_step_excess` (bits) on the next symbol, "
            "`area_mean` the raw excess summed over 50 steps, `relative_area_mean` the excess "
            "in units of the model's own clean loss summed likewise, `remaining_after_k` the "
            "share of the first step's excess left after k steps, `clean_bits` the mean clean "
            "loss at those positions, `state_cosine` of successive hidden states.",
            "",
            table(RECOVERY_COLUMNS, recovery),
        ]
    for title, name in plots:
        lines += ["", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def table(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _validation_curve(log_path):
    """`[(step, train_bpc, val_bpc)]` from a run's CSV log (one line per validation)."""
    points = {}
    for row in ValidationLog(log_path).rows():
        step = int(row["step"])
        points[step] = (step, float(row["bpc"] or "nan"), float(row["val_bpc"]))
    return [points[step] for step in sorted(points)]


def _plot(runs, output_dir):
    """The learning curves (and recovery curves) as PNGs; [] without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -e '.[plot]').")
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot

    arms = _by_arm(runs)
    families = sorted({family for family, _ in arms})

    def learning_curves(axis, family, name, group):
        curves = [r["curve"] for r in group if r["curve"]]
        if not curves:
            return
        length = min(len(c) for c in curves)
        steps = [p[0] for p in curves[0][:length]]
        values = np.array([[p[2] for p in c[:length]] for c in curves])
        mean, std = values.mean(axis=0), values.std(axis=0)
        axis.plot(steps, mean, label=f"{name} ({len(curves)} seeds)")
        axis.fill_between(steps, mean - std, mean + std, alpha=0.15)
        axis.set(title=f"{family}: validation BPC", xlabel="step", ylabel="BPC")

    def curve_plot(key, ylabel, symlog):
        def draw(axis, family, name, group):
            analysed = [r["analysis"][key] for r in group
                        if r["analysis"] and key in r["analysis"]]
            if not analysed:
                return
            curve = np.mean(analysed, axis=0)
            axis.plot(np.arange(1, len(curve) + 1), curve, label=name)
            axis.set(title=f"{family}: after one wrong symbol", xlabel="steps after",
                     ylabel=ylabel)
            if symlog:
                # Logarithmic above 0.01, linear around 0 (late values are noise of either
                # sign).
                axis.set_yscale("symlog", linthresh=1e-2)

        return draw

    plots = [("validation BPC during training, mean ± std over seeds", "learning_curves.png",
              learning_curves)]
    if any(r["analysis"] for r in runs):
        plots += [("excess loss after one wrong symbol (bits), mean over seeds",
                   "error_recovery.png", curve_plot("curve", "excess bits", True)),
                  ("excess loss in units of the clean loss, mean over seeds",
                   "error_recovery_relative.png",
                   curve_plot("relative", "excess / clean loss", True))]
    for _, file_name, draw in plots:
        figure, axes = pyplot.subplots(1, len(families), figsize=(6.5 * len(families), 4.2),
                                       squeeze=False)
        for axis, family in zip(axes[0], families):
            for (arm_family, name), group in sorted(arms.items()):
                if arm_family == family:
                    draw(axis, family, name, group)
            axis.legend(fontsize=8)
        figure.tight_layout()
        with files.replacing(os.path.join(output_dir, file_name), ".png") as temporary:
            figure.savefig(temporary, dpi=100)
        pyplot.close(figure)
    return [(title, name) for title, name, _ in plots]


def _write_csv(path, columns, rows):
    files.write_csv(path, columns, [{c: row.get(c) for c in columns} for row in rows])
