"""Sample text from a trained model, streamed as it is sampled.

    python examples/generate.py --model runs/quick/model.keras --prompt "ROMEO:" --length 300
"""

import argparse
import sys
import time

from keras_mulrnn.lm import cli

# More than this is more than anyone reads; several runs with other seeds give more.
MAX_LENGTH = 10_000_000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="generate.py",
                                allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    args = p.parse_args()
    if not 0 <= args.length <= MAX_LENGTH:
        p.error(f"--length must be in [0, {MAX_LENGTH:,}], got {args.length}")
    cli.start_backend(args)
    from keras_mulrnn.lm.generation import CHUNK, check_generation_arguments, generate
    from keras_mulrnn.saving import load_language_model

    model = load_language_model(args.model)
    check_generation_arguments(args.length, args.temperature, args.top_k, args.seed,
                               len(model.vocabulary))
    print(args.prompt, end="", flush=True)
    progress = _Progress(args.length, CHUNK)
    generate(model, args.prompt, args.length, args.temperature, args.top_k, args.seed,
             on_chunk=progress.show)
    print(flush=True)


class _Progress:
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


if __name__ == "__main__":
    cli.guarded(main)
