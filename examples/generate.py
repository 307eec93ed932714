"""Sample text from a trained model, streamed as it is sampled.

    python examples/generate.py --model runs/quick/model.keras --prompt "ROMEO:" --length 300
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

from keras_mulrnn.lm import cli, commands

if __name__ == "__main__":
    cli.guarded(lambda: commands.generate(prog="generate.py"))
