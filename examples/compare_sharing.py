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
first seed (that run counts as its first seed), interior to the rates tried and below any
rate at which one of its seeds diverged; `--rates-from` takes the rates another study chose
instead. Without `--data` or `--tfds` the corpus is the one embedded in the package.
Writes `results.md`, `results.csv`, `comparisons.csv` (paired t-tests, Holm-corrected),
`learning_curves.png` (and with `--analysis`, `error_recovery.csv` and the raw and normalised
recovery plots) into `--output`. Rerunning the same command skips finished runs and resumes
an interrupted one; the same command started twice shares the work between two processes
(`--threads 1` each on a 2-core machine).
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

from keras_mulrnn.lm import cli, commands

if __name__ == "__main__":
    cli.guarded(lambda: commands.study(prog="compare_sharing.py"))
