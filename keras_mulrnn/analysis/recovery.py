"""How a trained model recovers from a mistake in its input, and how smooth its state is.

The paper's motivation for multiplicative transitions: an additive RNN, whose transition does
not depend on the input, finds it hard to recover from a surprising symbol, because the wrong
input keeps steering the same transition. `error_recovery` measures this directly. At many
random positions `p` of a text it replaces the symbol `x_p` by a wrong one and compares the
model's loss on the *clean* targets `x_{p+1}, x_{p+2}, …` after reading the corrupted text
with its loss after reading the clean text:

    excess(k) = mean over positions of  −log2 p(x_{p+k} | corrupted x_{≤p+k−1})
                                      − (−log2 p(x_{p+k} | x_{≤p+k−1})),   k = 1 … horizon

Both passes read the same `context` clean symbols before `p` from a zero state. Reported:
the curve, its area `Σ_k excess(k)` over the horizon (bits), and the number of steps until the
excess first falls below `threshold` bits.

The raw excess mixes how much a model was disturbed with how sure it was: a model that
predicts the clean text better loses more bits when a surprise makes it wrong, and so looks
like a worse recoverer. Two normalised curves separate the two:

    relative(k)  = excess(k) / clean(k)        clean(k) = mean of −log2 p(x_{p+k} | x_{≤p+k−1})
    remaining(k) = excess(k) / excess(1)

`relative` is the excess in units of the model's own clean loss at that offset; `remaining`
is the share of the first step's excess still there after `k` steps (how fast the disturbance
fades, whatever its size).

`state_cosine` is the mean cosine similarity of successive hidden states `h_t, h_{t+1}` of
every recurrent layer over a text: how much one symbol moves the state.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.lm.model import symbol_bits
from keras_mulrnn.validation import check_positive_int


@dataclasses.dataclass
class ErrorRecovery:
    """The result of `error_recovery` (see the module docstring).

    `curve[k-1]` is the mean excess loss in bits `k` steps after the corruption; `area` its
    sum; `recovery_steps` the first `k` with `curve[k-1] < threshold` (None if never within
    the horizon). `clean[k-1]` is the mean clean loss at that offset, `relative` and
    `remaining` the normalised curves (module docstring), `relative_area` the sum of
    `relative`. `positions`, `originals` and `replacements` say what was changed.
    """

    curve: np.ndarray
    area: float
    recovery_steps: int
    threshold: float
    clean: np.ndarray
    relative: np.ndarray
    remaining: np.ndarray
    relative_area: float
    positions: np.ndarray
    originals: np.ndarray
    replacements: np.ndarray

    def summary(self):
        return {"area": self.area, "recovery_steps": self.recovery_steps,
                "threshold": self.threshold, "positions": len(self.positions),
                "horizon": len(self.curve), "relative_area": self.relative_area,
                **{name: [float(v) for v in getattr(self, name)]
                   for name in ("curve", "clean", "relative", "remaining")}}


def error_recovery(model, ids, positions=1000, horizon=50, context=100, threshold=0.05,
                   seed=0, replacements=None, batch_size=250):
    """Corrupts `ids` at random positions and measures the excess loss that follows.

    Args:
        model: a Keras model mapping ids `(B, T)` to logits `(B, T, V)` from a zero state
            (a `CharLanguageModel`, or any other such model).
        ids: 1-D array of symbol ids (e.g. a test split).
        positions: the number of positions to corrupt (drawn without replacement), or an
            explicit array of positions.
        horizon: the steps after each corruption to score.
        context: clean symbols read before each corrupted one.
        threshold: the excess (bits) under which the model counts as recovered.
        seed: fixes the positions and the wrong symbols.
        replacements: the symbols to put at the positions (default: a uniformly random symbol
            other than the original one).
        batch_size: windows per forward pass.
    """
    ids = np.asarray(ids)
    for name, value in (("horizon", horizon), ("context", context), ("batch_size", batch_size)):
        check_positive_int(name, value)
    if len(ids) < context + horizon + 1:
        raise ValueError(
            f"The text has {len(ids)} symbols; error_recovery needs at least context + "
            f"horizon + 1 = {context + horizon + 1}. Give a longer text or a shorter "
            f"context or horizon."
        )
    rng = np.random.default_rng(seed)
    candidates = np.arange(context, len(ids) - horizon)
    if np.ndim(positions) == 0:
        check_positive_int("positions", positions)
        positions = np.sort(rng.choice(candidates, min(positions, len(candidates)),
                                       replace=False))
    positions = np.asarray(positions)
    if positions.min() < context or positions.max() >= len(ids) - horizon:
        raise ValueError(
            f"Positions must lie in [{context}, {len(ids) - horizon}) so that every window "
            f"has its context and horizon."
        )
    originals = ids[positions]
    if replacements is None:
        vocabulary_size = _vocabulary_size(model)
        shift = rng.integers(1, vocabulary_size, size=len(positions))
        replacements = (originals + shift) % vocabulary_size  # never the original symbol
    replacements = np.asarray(replacements)

    offsets = np.arange(-context, horizon + 1)
    windows = ids[positions[:, None] + offsets[None, :]]
    corrupted = windows.copy()
    corrupted[:, context] = replacements
    clean_bits = _window_bits(model, windows, batch_size)
    excess = _window_bits(model, corrupted, batch_size) - clean_bits
    # Output `context + k - 1` predicts x_{p+k} after reading x_p (clean or corrupted).
    curve = excess[:, context:].mean(axis=0)
    clean = clean_bits[:, context:].mean(axis=0)
    relative = curve / np.maximum(clean, 1e-12)
    below = np.flatnonzero(curve < threshold)
    return ErrorRecovery(
        curve=curve, area=float(curve.sum()),
        recovery_steps=int(below[0]) + 1 if len(below) else None, threshold=threshold,
        clean=clean, relative=relative,
        remaining=curve / curve[0] if curve[0] != 0 else np.full_like(curve, np.nan),
        relative_area=float(relative.sum()), positions=positions, originals=originals,
        replacements=replacements,
    )


def state_cosine(model, ids, length=500, rows=32):
    """Mean cosine similarity of successive hidden states `h_t, h_{t+1}`, one value per
    recurrent layer of a `CharLanguageModel`, over `rows` windows of `length` symbols taken
    in order from the start of `ids` (each from a zero state)."""
    check_positive_int("length", length)
    rows = min(rows, len(ids) // length)
    if rows < 1:
        raise ValueError(
            f"The text has {len(ids)} symbols, fewer than one window of length={length}."
        )
    windows = np.asarray(ids[: rows * length]).reshape(rows, length).astype(np.int32)
    hidden = backend.compile_function(model, "hidden_sequences", lambda: (
        lambda x: model.hidden_sequences(x, training=False)[0]))
    layers = [ops.convert_to_numpy(h).astype(np.float64) for h in hidden(windows)]
    cosines = []
    for h in layers:
        dot = np.sum(h[:, 1:] * h[:, :-1], axis=-1)
        norms = np.linalg.norm(h[:, 1:], axis=-1) * np.linalg.norm(h[:, :-1], axis=-1)
        cosines.append(float(np.mean(dot / np.maximum(norms, 1e-12))))
    return cosines


def _vocabulary_size(model):
    if hasattr(model, "vocabulary"):
        return len(model.vocabulary)
    return int(model.output_shape[-1])


def _window_bits(model, windows, batch_size):
    """`−log2 p` of every target `windows[:, 1:]` after reading `windows[:, :-1]`."""
    score = backend.compile_function(model, "window_bits", lambda: (
        lambda inputs, targets: symbol_bits(targets, model(inputs, training=False))))
    bits = []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size].astype(np.int32)
        bits.append(ops.convert_to_numpy(score(chunk[:, :-1], chunk[:, 1:])).astype(np.float64))
    return np.concatenate(bits)
