"""Sample text from a trained model.

    python examples/generate.py --model runs/enwik8/model.keras --prompt "The " --length 300
"""

import argparse

from keras_mulrnn.cli import guarded
from keras_mulrnn.generation import generate
from keras_mulrnn.saving import load_model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.keras or best.keras file")
    p.add_argument("--prompt", required=True)
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model = load_model(args.model)
    print(args.prompt + generate(model, args.prompt, args.length, args.temperature, args.top_k,
                                 args.seed))


if __name__ == "__main__":
    guarded(main)
