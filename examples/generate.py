"""Sample text from a trained model, streamed as it is sampled.

    python examples/generate.py --model runs/quick/model.keras --prompt "ROMEO:" --length 300
"""

from keras_mulrnn.lm import interruption

interruption.stop_quietly_while_starting()

from keras_mulrnn.lm import cli, commands

if __name__ == "__main__":
    cli.guarded(lambda: commands.generate(prog="generate.py"))
