"""How a cell's gates are grouped around intermediate states (docs/DESIGN.md, "Cells").

A *group* owns one factorization `(W_mx, W_mh)` and so one intermediate state
`m = (W_mx x) ⊙ (W_mh h)`; every gate of the group reads that `m`. This module turns the
user's `sharing` argument into a normalized partition of the gate names, and is used by the
cells and by the parameter-count helpers so that both agree on what a partition means.
"""

SHARING_MODES = ("shared", "unshared")


def resolve_groups(gate_names, sharing):
    """Returns the partition of `gate_names` that `sharing` describes, as a tuple of tuples.

    Args:
        gate_names: the gates of the cell family, in their canonical order, e.g.
            `("i", "f", "o", "u")`.
        sharing: `"shared"` (one group holding every gate), `"unshared"` (one group per
            gate) or an explicit partition of `gate_names`, e.g. `(("i", "f", "o"), ("u",))`.

    Groups are ordered by the canonical position of their first gate and the gates inside a
    group keep their canonical order, so equivalent partitions give identical cells.

    Raises:
        ValueError: for an unknown mode, a gate name the family does not have, or a
            partition that misses or repeats a gate.
    """
    gate_names = tuple(gate_names)
    if isinstance(sharing, str):
        if sharing == "shared":
            return (gate_names,)
        if sharing == "unshared":
            return tuple((gate,) for gate in gate_names)
        raise ValueError(
            f"Invalid value for argument `sharing`: received sharing={sharing!r}. "
            f"Allowed: one of {SHARING_MODES}, or a partition of the gate names "
            f"{gate_names} such as {_example_partition(gate_names)}."
        )
    if not isinstance(sharing, (list, tuple)) or not all(
        isinstance(group, (list, tuple)) and len(group) > 0 for group in sharing
    ):
        raise ValueError(
            f"Invalid value for argument `sharing`: received sharing={sharing!r}. "
            f"An explicit partition must be a sequence of non-empty sequences of gate "
            f"names, e.g. {_example_partition(gate_names)}."
        )
    seen = [gate for group in sharing for gate in group]
    unknown = sorted({str(gate) for gate in seen if gate not in gate_names})
    if unknown:
        raise ValueError(
            f"Invalid value for argument `sharing`: received sharing={sharing!r}, which "
            f"names unknown gate(s) {unknown}. Allowed gate names: {gate_names}."
        )
    repeated = sorted({gate for gate in seen if seen.count(gate) > 1})
    missing = [gate for gate in gate_names if gate not in seen]
    if repeated or missing:
        raise ValueError(
            f"Invalid value for argument `sharing`: received sharing={sharing!r}, which "
            f"is not a partition of the gates {gate_names}: "
            f"repeated {repeated}, missing {missing}. Every gate must appear in exactly "
            f"one group."
        )
    position = {gate: index for index, gate in enumerate(gate_names)}
    groups = [tuple(sorted(group, key=position.get)) for group in sharing]
    return tuple(sorted(groups, key=lambda group: position[group[0]]))


def sharing_config(groups, gate_names):
    """The JSON-friendly form of a partition: the mode's name where one fits."""
    if groups == resolve_groups(gate_names, "shared"):
        return "shared"
    if groups == resolve_groups(gate_names, "unshared"):
        return "unshared"
    return [list(group) for group in groups]


def _example_partition(gate_names):
    if len(gate_names) < 2:
        return ((gate_names[0],),)
    return (tuple(gate_names[:-1]), (gate_names[-1],))
