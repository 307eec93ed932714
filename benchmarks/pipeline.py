"""Memory and speed of the data pipeline alone (no model).

    python benchmarks/pipeline.py --data enwik8.zip [--batch-size 128 --seq-len 100]

Reports the resident memory after loading the corpus and building the train batches, and
the symbols per second that the backend's input pipeline delivers to `model.fit` (`tf.data`
on TensorFlow, a `keras.utils.PyDataset` on JAX).
"""

import argparse
import resource
import time

from keras_mulrnn import backend
from keras_mulrnn.data import TBPTTBatches, load_enwik8


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="enwik8, enwik8.zip or any byte file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--batches", type=int, default=2000)
    args = p.parse_args()
    started = time.perf_counter()
    corpus = load_enwik8(args.data)
    loaded = time.perf_counter() - started
    batches = TBPTTBatches(corpus.train, args.batch_size, args.seq_len)
    print(f"loaded {corpus.name} in {loaded:.1f} s; peak resident memory after building the "
          f"train batches: {peak_rss_mib():.0f} MiB")
    source = backend.make_distribution().serve(batches, 0, args.batches + 1)
    iterator = iter(source)
    next(iterator)
    started = time.perf_counter()
    for _ in range(args.batches):
        next(iterator)
    seconds = time.perf_counter() - started
    symbols = args.batches * args.batch_size * args.seq_len
    print(f"{backend.name()} pipeline: {symbols / seconds:,.0f} symbols/s ({args.batches} batches of "
          f"{args.batch_size}x{args.seq_len}); peak resident memory {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
