"""`python -m keras_mulrnn train|evaluate|generate|study ...` (also the `keras-mulrnn`
command): the programs of `examples/` for an installed wheel, which has no `examples/`.

    python -m keras_mulrnn train --quick                 # the embedded corpus, minutes
    python -m keras_mulrnn train --corpus enwik8 --data enwik8.zip --units 2800 ...
    python -m keras_mulrnn evaluate --model runs/train/model.keras
    python -m keras_mulrnn generate --model runs/train/model.keras --prompt "ROMEO:"
    python -m keras_mulrnn study --family lstm --seeds 5 --output runs/sharing
    python -m keras_mulrnn --version
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

import sys

from keras_mulrnn.lm import cli
from keras_mulrnn.lm.commands import COMMANDS


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from keras_mulrnn import __version__

        print(f"keras_mulrnn {__version__}")
        return
    if not argv or argv[0] not in COMMANDS:
        asked = argv[:1] in (["-h"], ["--help"])
        print(__doc__.strip(), file=sys.stdout if asked else sys.stderr)
        if not asked:
            what = f"unknown command {argv[0]!r}" if argv else "no command"
            print(f"\nerror: {what}; give one of {', '.join(COMMANDS)}.", file=sys.stderr)
            raise SystemExit(2)
        return
    command = COMMANDS[argv[0]]
    cli.guarded(lambda: command(argv[1:], prog=f"keras_mulrnn {argv[0]}"))


if __name__ == "__main__":
    main()
