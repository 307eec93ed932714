"""An independent NumPy implementation of docs/DESIGN.md, "Cells", for the tests.

Written from the equations, one gate and one group at a time, with no code shared with the
package. `reference_weights(cell)` reads a built cell's weights through the layout its
docstring documents (gate columns in `cell.gate_order`, factor columns in `cell.groups`).
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
    p = {"Wx": {}, "b": {}, "U": {}, "Wm": {}, "Wmx": [], "Wmh": [], "group_of": {}}
    kernel = matrix("kernel")
    for g, cols in gate_cols.items():
        p["Wx"][g] = kernel[:, cols]
        p["b"][g] = raw["bias"][cols] if cell.use_bias else np.zeros(n)
    if cell.transition == "additive":
        rec = matrix("recurrent_kernel")
        for g, cols in gate_cols.items():
            p["U"][g] = rec[:, cols]
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


def step(family, p, x, states):
    """One step of `family` ("rnn", "lstm", "gru"); returns (h, new_states)."""
    h = states[0]
    rec = recurrent_terms(p, x, h)

    def pre(g):
        return x @ p["Wx"][g] + rec[g] + p["b"][g]

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
    candidate = np.tanh(x @ p["Wx"]["h"] + r * rec["h"] + p["b"]["h"])
    h = z * h + (1 - z) * candidate
    return h, [h]


def run(family, p, xs, states):
    """Runs `xs` (B, T, d) from `states`; returns outputs (B, T, n) and the final states."""
    outputs = []
    for t in range(xs.shape[1]):
        h, states = step(family, p, xs[:, t], states)
        outputs.append(h)
    return np.stack(outputs, axis=1), states
