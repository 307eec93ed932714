"""What this machine's memory can hold: the one place that estimates what reading a corpus,
training a model and scoring a window need, and refuses, before anything is read or built,
what would not fit (an out-of-memory kill loses a run without a word).

Each estimate is deliberately rough (it only has to tell "fits" from "cannot fit" on the
machine at hand); each check says what to change. Importing this module does not start
Keras.
"""

import os

# What reading a file costs in memory, per byte of the file: the bytes, the decoded str (up
# to 4 bytes a character) and the ids; bytes and ids alone for a byte corpus; a list of
# Python strings, one per token, for Penn Treebank's format.
BYTES_PER_FILE_BYTE = {"char": 6, "byte": 2, "ptb": 100}


def physical_memory():
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _refuse_beyond(need, error, message):
    """Raises `error(message(need_gib, have_gib))` if `need` bytes exceed this machine's."""
    have = physical_memory()
    if have and need > have:
        raise error(message(need / 2**30, have / 2**30))


def check_corpus_file(path, what, size, kind):
    """Refuses a `kind` corpus file of `size` bytes that cannot be read into memory."""
    _refuse_beyond(size * BYTES_PER_FILE_BYTE[kind], MemoryError, lambda need, have: (
        f"The {what} {path!r} holds {size / 2**30:,.1f} GiB; reading it as a {kind} corpus "
        f"needs about {need:,.1f} GiB of memory, more than this machine's {have:,.1f} GiB. "
        f"Use a part of it (e.g. `head -c`), or a machine with more memory."))


def check_training(config, params, vocabulary_size):
    """Refuses a training run of `config` (a `TrainConfig` of `params` weights) that cannot
    fit: float32 weights four times (weights, gradients and Adam's two moments) and what
    the recurrence keeps per symbol for the backward pass (about eight state-sized vectors
    per layer, and the logits twice)."""
    rank = config.rank or config.units
    per_symbol = config.num_layers * (6 * config.units + 2 * rank) + 2 * vocabulary_size
    need = 4 * (4 * params + config.batch_size * config.seq_len * per_symbol)
    _refuse_beyond(need, ValueError, lambda need, have: (
        f"This model ({params:,} parameters; units={config.units}, rank={config.rank}, "
        f"num_layers={config.num_layers}, batch_size={config.batch_size}, "
        f"seq_len={config.seq_len}) needs about {need:,.1f} GiB to train, more than this "
        f"machine's {have:,.1f} GiB. Use fewer units, a smaller rank or a smaller batch."))


def check_scoring(units, num_layers, vocabulary_size, batch_size, seq_len):
    """Refuses scoring windows of `batch_size` × `seq_len` symbols whose activations cannot
    fit: the logits and about eight state-sized vectors per layer for every symbol, twice
    over."""
    need = 2 * 4 * batch_size * seq_len * (vocabulary_size + 8 * units * num_layers)
    _refuse_beyond(need, ValueError, lambda need, have: (
        f"Scoring windows of {batch_size} × {seq_len:,} symbols needs about {need:,.1f} GiB "
        f"of memory, more than this machine's {have:,.1f} GiB: give a shorter --seq-len (the "
        f"state is carried from window to window, so the figure does not change)."))
