"""An independent NumPy implementation of docs/DESIGN.md, "Cells", for the tests.

Written from the equations, one gate and one group at a time, with no code shared with the
package: multiplicative integration as Wu et al. write it (`α ⊙ Wx ⊙ Uh + β₁ ⊙ Uh + β₂ ⊙ Wx
+ b` per gate), the Mogrifier as Melis et al. write it (alternating rounds, `x` first, each
its own matrix). `reference_weights(cell)` reads a built cell's weights through the layout
its docstring documents (gate columns in `cell.gate_order`, factor columns in
`cell.groups`, one Mogrifier matrix per round).
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def raw_weights(cell):
    """The cell's weights by name, as float64 arrays."""
    return {v.path.split("/")[-1]: np.asarray(v.numpy(), dtype=np.float64) for v in cell.weights}


def reference_weights(cell, raw=None):
    """Per-gate and per-group matrices of `cell` (or of `raw`, arrays laid out as the cell's
    weights), weight normalization applied."""
    raw = raw_weights(cell) if raw is None else raw

    def matrix(name):
        v = raw[name]
        if cell.weight_norm:
            return raw[name + "_gain"] * v / np.sqrt((v**2).sum(axis=0))
        return v

    n = cell.units
    gate_cols = {g: slice(j * n, (j + 1) * n) for j, g in enumerate(cell.gate_order)}
    p = {"Wx": {}, "b": {}, "U": {}, "Wm": {}, "Wmx": [], "Wmh": [], "group_of": {},
         "mi": None, "mogrifier": []}
    kernel = matrix("kernel")
    for g, cols in gate_cols.items():
        p["Wx"][g] = kernel[:, cols]
        p["b"][g] = raw["bias"][cols] if cell.use_bias else np.zeros(n)
    # Round i's matrix maps the state (odd i, Qⁱ) or the input (even i, Rⁱ) to the other's
    # size; at a rank it is the product of its two factors.
    for i in range(1, getattr(cell, "mogrifier_rounds", 0) + 1):
        name = f"mogrifier_{'q' if i % 2 else 'r'}_{i}"
        p["mogrifier"].append(matrix(name) if name in raw
                              else matrix(name + "_left") @ matrix(name + "_right"))
    if cell.transition in ("additive", "integration"):
        rec = matrix("recurrent_kernel")
        for g, cols in gate_cols.items():
            p["U"][g] = rec[:, cols]
        if cell.transition == "integration":
            p["mi"] = {g: {"alpha": raw["alpha"][cols], "beta1": raw["beta_recurrent"][cols],
                           "beta2": raw["beta_input"][cols]} for g, cols in gate_cols.items()}
        return p
    k = cell.rank
    fx, fh, tr = (matrix(x) for x in ("factor_input_kernel", "factor_recurrent_kernel",
                                       "transition_kernel"))
    for index, group in enumerate(cell.groups):
        p["Wmx"].append(fx[:, index * k:(index + 1) * k])
        p["Wmh"].append(fh[:, index * k:(index + 1) * k])
        for g in group:
            p["group_of"][g] = index
    for g, cols in gate_cols.items():
        p["Wm"][g] = tr[:, cols]
    return p


def recurrent_terms(p, x, h):
    """The second-order term `W_gm m^g` (or additive `U_g h`) of every gate."""
    if p["U"]:
        return {g: h @ U for g, U in p["U"].items()}
    m = [(x @ Wmx) * (h @ Wmh) for Wmx, Wmh in zip(p["Wmx"], p["Wmh"])]
    return {g: m[p["group_of"][g]] @ Wm for g, Wm in p["Wm"].items()}


def mogrify(p, x, h):
    """Melis et al.'s rounds: `x⁻¹ = x`, `h⁰ = h`; for i = 1 … r, odd i:
    `xⁱ = 2σ(Qⁱ hⁱ⁻¹) ⊙ xⁱ⁻²`, even i: `hⁱ = 2σ(Rⁱ xⁱ⁻¹) ⊙ hⁱ⁻²` (row vectors here)."""
    for i, matrix in enumerate(p["mogrifier"], 1):
        if i % 2:
            x = 2 * sigmoid(h @ matrix) * x
        else:
            h = 2 * sigmoid(x @ matrix) * h
    return x, h


def step(family, p, x, states):
    """One step of `family` ("rnn", "lstm", "gru"); returns (h, new_states). The Mogrifier's
    `x` and `h` enter every product; the carried states (`c`, and the GRU's `z ⊙ h_{t-1}`)
    are the unmodified ones."""
    h_prev = states[0]
    x, h = mogrify(p, x, h_prev)

    if p["mi"] is not None:  # Wu et al.: the sum of Wx and Uh replaced by their MI block
        def block(g, uh):
            v, wx = p["mi"][g], x @ p["Wx"][g]
            return v["alpha"] * wx * uh + v["beta1"] * uh + v["beta2"] * wx + p["b"][g]

        def pre(g):
            return block(g, h @ p["U"][g])

        def candidate(reset):  # the GRU's reset gate on U_h h, inside the block
            return np.tanh(block("h", reset * (h @ p["U"]["h"])))
    else:
        rec = recurrent_terms(p, x, h)

        def pre(g):
            return x @ p["Wx"][g] + rec[g] + p["b"][g]

        def candidate(reset):
            return np.tanh(x @ p["Wx"]["h"] + reset * rec["h"] + p["b"]["h"])

    if family == "rnn":
        h = np.tanh(pre("h"))
        return h, [h]
    if family == "lstm":
        c = states[1]
        i, f, o = sigmoid(pre("i")), sigmoid(pre("f")), sigmoid(pre("o"))
        u = np.tanh(pre("u"))
        c = f * c + i * u
        h = o * np.tanh(c)
        return h, [h, c]
    z, r = sigmoid(pre("z")), sigmoid(pre("r"))
    h = z * h_prev + (1 - z) * candidate(r)
    return h, [h]


def run(family, p, xs, states):
    """Runs `xs` (B, T, d) from `states`; returns outputs (B, T, n) and the final states."""
    outputs = []
    for t in range(xs.shape[1]):
        h, states = step(family, p, xs[:, t], states)
        outputs.append(h)
    return np.stack(outputs, axis=1), states
