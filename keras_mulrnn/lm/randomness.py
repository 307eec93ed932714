"""The dropout random generators' state, which training must own alone.

Keras's `RNN` draws dropout masks on every call, inference included, and each draw advances
the cell's seed generator. If validation or sampling advanced it, a run's dropout masks would
depend on how often it validated, and a run resumed from a checkpoint taken before a
validation would draw other masks than the uninterrupted run. Evaluation and generation
therefore put the state back as they found it.
"""

import contextlib

from keras import ops


def random_state_variables(model):
    """The seed generators' state variables (which `save_weights` leaves out), in the
    model's own deterministic order."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights and "seed_generator" in v.path]


@contextlib.contextmanager
def preserved_random_state(model):
    """Restores the model's dropout random state on exit."""
    variables = random_state_variables(model)
    saved = [ops.convert_to_numpy(v.value) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
