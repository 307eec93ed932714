"""Tables and a plot of a finished (or running) search.

    python tuning/report.py --directory runs/tuning --project-name rank

Writes into the project's folder: `trials.csv` and `trials.md` (every trial: status,
hyperparameters, recurrent parameters, validation BPC, training time) and `bpc_vs_rank.png`
(validation BPC against rank, one line per parametrization; additive cells, which have no
rank, as horizontal lines).
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

import argparse
import glob
import json
import os
import sys

from keras_mulrnn.lm import files
from keras_mulrnn.lm.run_directory import RESULTS

COLUMNS = ["trial", "status", "worker", "family", "parametrization", "units", "rank", "num_layers",
           "learning_rate", "recurrent_dropout", "recurrent_params", "val_bpc",
           "train_seconds"]


def collect(project):
    """One row per trial of the keras-tuner project folder `project` (a trial still being
    written, or damaged, is reported and left out)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(project, "trial_*", "trial.json"))):
        try:
            row = _trial_row(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            print(f"warning: {path} left out: it is not a readable trial "
                  f"({type(error).__name__}: {error}).", file=sys.stderr)
            continue
        rows.append(row)
    if not rows:
        raise ValueError(
            f"No trials in {project!r}. Check --directory and --project-name."
        )
    if not any(row.get("val_bpc") is not None for row in rows):
        raise ValueError(
            f"{project!r} has {len(rows)} trial(s) but no finished trials yet: run (or "
            f"continue) the search first."
        )
    return rows


def _trial_row(path):
    trial = _read(path)
    values = trial["hyperparameters"]["values"]
    row = {"trial": trial["trial_id"], "status": trial["status"], "val_bpc": trial.get("score")}
    worker = os.path.join(os.path.dirname(path), "worker.txt")
    if os.path.exists(worker):
        with open(worker) as handle:
            row["worker"] = handle.read().strip()
    runs = sorted(glob.glob(os.path.join(os.path.dirname(path), "run_*", RESULTS)))
    if runs:
        results = [_read(run) for run in runs]
        config = results[0]["config"]
        row.update({key: config[key] for key in ("family", "parametrization", "units", "rank",
                                                 "num_layers", "learning_rate",
                                                 "recurrent_dropout")})
        row["recurrent_params"] = results[0]["recurrent_params"]
        seconds = [r["train_seconds"] for r in results if r.get("train_seconds") is not None]
        row["train_seconds"] = round(sum(seconds), 1) if seconds else None
    else:
        row.update({key: values.get(key) for key in COLUMNS if key in values})
    return row


def _read(path):
    with open(path) as handle:
        return json.load(handle)


def write_tables(rows, project):
    files.write_csv(os.path.join(project, "trials.csv"), COLUMNS,
                    [{key: row.get(key) for key in COLUMNS} for row in rows])
    ordered = sorted(rows, key=lambda row: (row.get("val_bpc") is None, row.get("val_bpc")))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in ordered:
        cells = []
        for key in COLUMNS:
            value = row.get(key)
            cells.append(f"{value:.4f}" if key == "val_bpc" and value is not None
                         else "" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    files.write_text(os.path.join(project, "trials.md"), "\n".join(lines) + "\n")


def plot(rows, project):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row.get("val_bpc") is not None and row.get("family")]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in sorted({f"{r['family']} {r['parametrization']}" for r in done}):
        points = sorted((r["rank"], r["val_bpc"]) for r in done
                        if f"{r['family']} {r['parametrization']}" == name and r["rank"])
        if points:
            axis.plot(*zip(*points), marker="o", label=name)
        else:  # additive: no rank
            best = min(r["val_bpc"] for r in done if f"{r['family']} {r['parametrization']}" == name)
            axis.axhline(best, linestyle="--", color="gray", label=f"{name} (no rank)")
    axis.set_xlabel("rank k")
    axis.set_ylabel("validation BPC")
    axis.set_title(os.path.basename(os.path.normpath(project)))
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path = os.path.join(project, "bpc_vs_rank.png")
    with files.replacing(path, ".png") as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="report.py",
                                allow_abbrev=False)
    p.add_argument("--directory", required=True, help="the search's --directory")
    p.add_argument("--project-name", required=True, help="the search's --project-name")
    args = p.parse_args(argv)
    project = os.path.join(args.directory, args.project_name)
    if not os.path.isdir(project):
        raise ValueError(f"{project!r} is not a keras-tuner project folder.")
    rows = collect(project)
    write_tables(rows, project)
    print(open(os.path.join(project, "trials.md")).read())
    print(f"wrote {project}/trials.csv, trials.md and {plot(rows, project)}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from keras_mulrnn.lm.cli import guarded

    guarded(main)
