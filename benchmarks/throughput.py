"""Training throughput of the cells against Keras's LSTM and GRU, side by side in one process.

    python benchmarks/throughput.py --quick                 # a reduced grid, a few minutes
    python benchmarks/throughput.py --quick --backend jax   # the same on JAX (its own process)
    python benchmarks/throughput.py --json > out.jsonl      # the full grid, one JSON per line

Cells are named `family/parametrization` (`lstm/integration`: multiplicative integration),
with `/mogrifierR` for the Mogrifier's R rounds (`lstm/additive/mogrifier4`: the Mogrifier
LSTM, which runs Keras's generic loop: its input side cannot be hoisted).

Each configuration is a character model (embedding 64 → one recurrent layer → logits over a
vocabulary of 205) trained on random symbols with Adam: forward, backward and update. After a
warm-up, a fixed number of steps is timed. Reported per configuration: characters per second,
the analytic FLOPs per character (matrix products only; training = 3 × forward), the achieved
GFLOP/s, and the "peak": the GFLOP/s of a float32 matrix product of the recurrent step's shape
`(batch, units) @ (units, width)` measured in the same run. Ratios are taken within one run
(one backend): JAX runs XLA always, so its grid has only `jit=True` rows.
"""

import argparse
import json

from common import (  # benchmarks/ is the script's directory
    EMBEDDING,
    GATES,
    build_model,
    variant,
    choose_backend,
    describe_machine,
    flops_per_char,
    matmul_rate,
    time_training,
)

choose_backend()


def grid(quick, jits, units=None, batches=None, only=None):
    references = [("lstm", "keras"), ("gru", "keras")]
    ours = [(family, p) for family in ("rnn", "lstm", "gru")
            for p in ("additive", "shared", "unshared", "integration")]
    ours += [("lstm", "additive/mogrifier4"), ("lstm", "shared/mogrifier4")]
    if units or batches or only:
        models = ([tuple(name.split("/", 1)) for name in only] if only
                  else references + ours)
        return [(f, p, u, b, j) for u in units or (256, 1024) for b in batches or (64, 128)
                for j in jits for f, p in models]
    if quick:
        return [(f, p, 256, 64, jit)
                for f, p in references[:1] + [("lstm", "additive"), ("lstm", "shared"),
                                              ("lstm", "unshared"), ("lstm", "integration"),
                                              ("lstm", "additive/mogrifier4"),
                                              ("lstm", "shared/mogrifier4")]
                for jit in jits]
    return [(f, p, units, batch, jit) for units in (256, 1024) for batch in (64, 128)
            for jit in jits for f, p in references + ours]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("tensorflow", "jax"), default=None,
                   help="the Keras backend (default: KERAS_BACKEND, else TensorFlow)")
    p.add_argument("--quick", action="store_true", help="a reduced grid, a few minutes")
    p.add_argument("--json", action="store_true", help="one JSON record per configuration")
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per configuration (default: about 2 s of work at 256 "
                        "units, 4 steps at 1024)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1,
                   help="time every configuration this many times, round-robin, keep the best")
    p.add_argument("--units", type=int, nargs="*", help="a sub-grid: these units only")
    p.add_argument("--batch", type=int, nargs="*", help="a sub-grid: these batch sizes only")
    p.add_argument("--only", nargs="*", help="a sub-grid: e.g. lstm/keras lstm/shared")
    p.add_argument("--jit", type=lambda s: s.lower() == "true", nargs="*",
                   help="a sub-grid: true and/or false (TensorFlow; JAX always compiles)")
    args = p.parse_args()
    import keras

    import keras_mulrnn as km

    jits = (True,) if km.backend.always_compiles() else tuple(args.jit or (False, True))
    peaks = {}
    columns = ["name", "units", "rank", "batch", "jit", "chars/s", "MFLOP/char", "GFLOP/s",
               "peak GFLOP/s", "% of peak"]
    if args.markdown:
        print(f"<!-- {describe_machine()} -->")
        print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    elif not args.json:
        print(f"# {describe_machine()}")
        print(f"{'name':24} {'units':>5} {'rank':>5} {'batch':>5} {'jit':>5} "
              f"{'chars/s':>9} {'MFLOP/ch':>9} {'GFLOP/s':>8} {'peak':>7} {'%peak':>6}")
    prepared = []
    for family, parametrization, units, batch, jit in grid(args.quick, jits, args.units,
                                                             args.batch, args.only):
        rank = None
        cell_parametrization = variant(parametrization)[0]
        if cell_parametrization == "shared":
            rank = units
        elif cell_parametrization == "unshared":
            rank = km.matching_rank(family, "unshared", units, EMBEDDING, like="shared")
        analytic = flops_per_char(family, parametrization, units, rank)
        width = GATES[family] * units
        if (batch, units, width) not in peaks:
            peaks[(batch, units, width)] = matmul_rate(batch, units, width)
        prepared.append((family, parametrization, units, batch, jit, rank, analytic, width))
    # Round-robin repetitions, best of each: a shared, noisy machine slows some runs, never
    # speeds them up, so the best time is the closest to what the code costs.
    best = {}
    models = {}
    for _ in range(args.repeat):
        for config in prepared:
            family, parametrization, units, batch, jit, rank, analytic, width = config
            if config not in models or args.repeat == 1:
                keras.utils.set_random_seed(0)
                models[config] = build_model(family, parametrization, units, rank, jit)
            steps = args.steps or (max(4, 65536 // (units * batch // 16)) if units <= 256
                                   else 4)
            chars = time_training(models[config], batch, args.warmup, steps)
            best[config] = max(best.get(config, 0.0), chars)
            if args.repeat == 1:
                del models[config]
    for config in prepared:
        family, parametrization, units, batch, jit, rank, analytic, width = config
        chars = best[config]
        gflops = 3 * analytic * chars / 1e9
        name = (f"keras.{family.upper()}" if parametrization == "keras"
                else f"{family}/{parametrization}")
        record = dict(name=name, family=family, sharing=parametrization, units=units,
                      rank=rank, batch=batch, jit=jit, chars_per_sec=round(chars, 1),
                      flops_per_char=3 * analytic, gflops=round(gflops, 2),
                      peak_gflops=round(peaks[(batch, units, width)], 2),
                      backend=km.backend.name())
        share = 100 * gflops / record["peak_gflops"]
        if args.json:
            print(json.dumps(record), flush=True)
        elif args.markdown:
            cells = [name, units, rank or "-", batch, jit, f"{chars:,.0f}",
                     f"{3 * analytic / 1e6:.2f}", f"{gflops:.1f}",
                     f"{record['peak_gflops']:.1f}", f"{share:.0f}%"]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
        else:
            print(f"{name:24} {units:5} {rank or '-':>5} {batch:5} {str(jit):>5} "
                  f"{chars:9,.0f} {3 * analytic / 1e6:9.2f} {gflops:8.1f} "
                  f"{record['peak_gflops']:7.1f} {share:5.0f}%",
                  flush=True)


if __name__ == "__main__":
    main()
