"""Training checkpoints: weights, optimizer state, step, carried recurrent state and the
states of the dropout random generators (so that a resumed run draws the same masks).

Each checkpoint is a directory `ckpt-STEP/` written under a temporary name and renamed into
place only when complete, so a crash mid-write never leaves a checkpoint that looks whole;
the previous ones stay until a newer one is complete. On restore, a checkpoint that cannot
be read is reported and the one before it is used.
"""

import json
import os
import shutil
import warnings

import numpy as np

from keras_mulrnn.randomness import random_state_variables

PREFIX = "ckpt-"
META = "meta.json"  # written last: its presence marks a complete checkpoint


class CheckpointManager:
    """Saves and restores `CharLanguageModel` training checkpoints in `directory`.

    Args:
        directory: where the `ckpt-STEP/` directories live (created if missing).
        keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory, keep=2):
        self.directory = os.fspath(directory)
        self.keep = keep
        os.makedirs(self.directory, exist_ok=True)

    def steps(self):
        """Steps of the complete checkpoints, oldest first."""
        found = []
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.startswith(PREFIX) and os.path.exists(os.path.join(path, META)):
                found.append(int(name[len(PREFIX) :]))
        return sorted(found)

    def path(self, step):
        return os.path.join(self.directory, f"{PREFIX}{step:09d}")

    def save(self, model, meta):
        """Writes a checkpoint at the model's optimizer step; returns its path."""
        step = int(model.optimizer.iterations.numpy())
        final = self.path(step)
        if os.path.exists(os.path.join(final, META)):
            return final
        temporary = os.path.join(self.directory, f".tmp-{PREFIX}{step:09d}")
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(temporary)
        try:
            model.save_weights(os.path.join(temporary, "model.weights.h5"))
            np.savez(os.path.join(temporary, "carry.npz"), *model.carry_values())
            np.savez(
                os.path.join(temporary, "random.npz"),
                *[v.numpy() for v in random_state_variables(model)],
            )
            with open(os.path.join(temporary, META), "w") as handle:
                json.dump({**meta, "step": step}, handle, indent=1)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        for old in self.steps()[: -self.keep]:
            # Unmark it complete first, so that a crash mid-deletion leaves no half checkpoint
            # that looks whole.
            os.remove(os.path.join(self.path(old), META))
            shutil.rmtree(self.path(old), ignore_errors=True)
        return final

    def restore_latest(self, model, check=None):
        """Loads the newest readable checkpoint into `model` (built, compiled, carry started);
        returns its metadata, or None when there is none.

        `check(meta)` runs before anything is loaded and may raise to refuse a checkpoint
        that does not fit the run (other settings or vocabulary).

        Raises `RuntimeError` when there are checkpoints but none can be read.
        """
        steps = self.steps()
        for step in reversed(steps):
            path = self.path(step)
            try:
                with open(os.path.join(path, META)) as handle:
                    meta = json.load(handle)
            except (OSError, ValueError) as error:
                _warn_unreadable(path, error)
                continue
            if check is not None:
                check(meta)
            try:
                model.load_weights(os.path.join(path, "model.weights.h5"))
                model.set_carry_values(_read_arrays(os.path.join(path, "carry.npz")))
                for variable, value in zip(random_state_variables(model),
                                           _read_arrays(os.path.join(path, "random.npz")),
                                           strict=True):
                    variable.assign(value)
                return meta
            except Exception as error:  # a damaged checkpoint: fall back to the previous one
                _warn_unreadable(path, error)
        if steps:
            raise RuntimeError(
                f"None of the checkpoints in {self.directory!r} could be read (see the "
                f"warnings above). Start a new run in another --output directory."
            )
        return None


def _read_arrays(path):
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _warn_unreadable(path, error):
    warnings.warn(
        f"Checkpoint {path!r} could not be read ({type(error).__name__}: {error}); trying the "
        f"previous one.",
        stacklevel=3,
    )
