"""Training checkpoints: weights, optimizer state, step, carried recurrent state and the
states of the dropout random generators (so that a resumed run draws the same masks).

Each checkpoint is a directory `ckpt-STEP/` written under a temporary name and renamed into
place only when complete, so a crash mid-write never leaves a checkpoint that looks whole;
the previous ones stay until a newer one is complete.

Nothing in a checkpoint is trusted on restore: its metadata must be whole and agree with
itself (the step of its name, of its metadata and of its optimizer), its arrays must fit the
model; one that does not is set aside as `damaged-ckpt-STEP/` (kept for inspection, never
read again, and so replaced by the next checkpoint of that step) and the one before it is
used. A sound checkpoint made with other settings or data than the run is refused with a
message, unless an older one of the same directory fits the run.
"""

import dataclasses
import json
import os
import shutil
import warnings

import numpy as np
from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.lm import files
from keras_mulrnn.lm.config import OPERATIONAL, TrainConfig
from keras_mulrnn.lm.randomness import random_state_variables

PREFIX = "ckpt-"
DAMAGED = "damaged-"
META = "meta.json"  # written last: its presence marks a complete checkpoint
FILES = ("model.weights.h5", "carry.npz", "random.npz", META)
META_KEYS = {"step": int, "config": dict, "vocabulary": dict, "data": dict,
             "learning_rate_scale": (int, float)}


class CheckpointMismatch(ValueError):
    """A sound checkpoint that does not fit this run (other settings or data)."""


def check_compatible(restored, meta):
    """Raises `CheckpointMismatch` unless the checkpoint metadata `restored` fits the run
    whose metadata is `meta`: the same vocabulary, data and settings (but the operational
    ones, which a resumed run may change)."""
    if restored["vocabulary"] != meta["vocabulary"]:
        raise CheckpointMismatch(
            "The checkpoint was trained on a different vocabulary than this data's. "
            "Resume with the same data, or start a new run in another --output directory."
        )
    if restored["data"] != meta["data"]:
        changed = sorted(split for split in meta["data"]
                         if restored["data"].get(split) != meta["data"][split])
        raise CheckpointMismatch(
            f"The data differs from the data this run started with ({', '.join(changed)} "
            f"changed). Resume with the same data file, or start a new run in another "
            f"--output directory."
        )
    # A setting that the checkpoint predates had its default value then. (A run may
    # resume on other devices: the carried state is saved for all rows.)
    saved = {**dataclasses.asdict(TrainConfig()), **restored["config"]}
    differing = sorted(
        key for key in meta["config"]
        if key not in OPERATIONAL and saved.get(key) != meta["config"][key]
    )
    if differing:
        details = ", ".join(
            f"{key}: checkpoint {saved.get(key)!r}, now "
            f"{meta['config'][key]!r}" for key in differing
        )
        raise CheckpointMismatch(
            f"The checkpoint's settings differ from this run's ({details}). Resume with "
            f"the same flags, or start a new run in another --output directory."
        )


class CheckpointManager:
    """Saves and restores `CharLanguageModel` training checkpoints in `directory`.

    Args:
        directory: where the `ckpt-STEP/` directories live (created if missing).
        keep: how many of the newest checkpoints to keep.
        writable: False for a reader that must change nothing (a multi-worker run's other
            workers reading the chief's checkpoints): a damaged checkpoint is only skipped.
    """

    def __init__(self, directory, keep=2, writable=True):
        self.directory = os.fspath(directory)
        self.keep, self.writable = keep, writable
        if writable:
            os.makedirs(self.directory, exist_ok=True)

    def steps(self):
        """Steps of the checkpoints that look complete, oldest first."""
        found = []
        if not os.path.isdir(self.directory):
            return found
        for name in os.listdir(self.directory):
            digits = name[len(PREFIX):]
            if (name.startswith(PREFIX) and digits.isdigit()
                    and os.path.exists(os.path.join(self.directory, name, META))):
                found.append(int(digits))
        return sorted(found)

    def path(self, step):
        return os.path.join(self.directory, f"{PREFIX}{step:09d}")

    def save(self, model, meta):
        """Writes a checkpoint at the model's optimizer step; returns its path. Every worker
        of a multi-worker run calls it (the carried state is gathered from all of them)."""
        step = model_step(model)
        carry = model.carry_values()
        final = self.path(step)
        if os.path.exists(os.path.join(final, META)):
            return final
        temporary = None
        try:
            # A folder of its own (`files` says why), renamed into place once complete.
            files.ensure_space(final, files.saved_size(model)
                               + sum(value.nbytes for value in carry))
            temporary = files.unique_path(self.directory, f".tmp-{PREFIX}{step:09d}-", "",
                                          os.mkdir)
            model.save_weights(os.path.join(temporary, "model.weights.h5"))
            np.savez(os.path.join(temporary, "carry.npz"), *carry)
            np.savez(os.path.join(temporary, "random.npz"),
                     *[ops.convert_to_numpy(v.value) for v in random_state_variables(model)])
            with open(os.path.join(temporary, META), "w") as handle:
                json.dump({**meta, "step": step}, handle, indent=1)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(temporary, final)
        except BaseException as error:
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)
            if isinstance(error, OSError) and not isinstance(error, files.WriteError):
                # A full disk: the message names the checkpoint.
                raise files.write_error(final, error) from None
            raise
        for old in self.steps()[: -self.keep]:
            self._delete(old)
        return final

    def discard_after(self, step):
        """Deletes the checkpoints of the steps after `step`."""
        for newer in [s for s in self.steps() if s > step]:
            self._delete(newer)

    def _delete(self, step):
        # Unmarked complete first, so that a crash mid-deletion leaves no half checkpoint
        # that looks whole.
        os.remove(os.path.join(self.path(step), META))
        shutil.rmtree(self.path(step), ignore_errors=True)

    def restore_latest(self, model, check=None):
        """Loads the newest sound checkpoint that fits the run into `model` (built, compiled,
        carry started); returns its metadata, or None when there is none.

        `check(meta)` raises `CheckpointMismatch` for a checkpoint that does not fit the run
        (other settings, vocabulary or data); an older one that fits is used instead, and if
        none does, the newest one's mismatch is raised.

        Raises `RuntimeError` when there are checkpoints but none can be read.
        """
        steps = self.steps()
        mismatch = None
        for step in reversed(steps):
            path = self.path(step)
            try:
                meta = _read_meta(path, step)
            except ValueError as error:
                self._set_aside(path, error)
                continue
            if check is not None:
                try:
                    check(meta)
                except CheckpointMismatch as error:
                    mismatch = mismatch or error
                    continue
            try:
                _load(model, path, step)
            except Exception as error:  # a damaged checkpoint: fall back to the previous one
                self._set_aside(path, error)
                continue
            if mismatch is not None:
                warnings.warn(
                    f"A newer checkpoint in {self.directory!r} does not fit this run "
                    f"({mismatch}); resuming from step {step}, which does.", stacklevel=2)
            return meta
        if mismatch is not None:
            raise mismatch
        if steps:
            raise RuntimeError(
                f"None of the checkpoints in {self.directory!r} could be read (see the "
                f"warnings above; they were set aside as {DAMAGED}{PREFIX}*). Start a new run "
                f"in another --output directory."
            )
        return None

    def _set_aside(self, path, error):
        """Renames a damaged checkpoint so that it is never read again and its step can be
        written anew (a read-only manager only skips it); warns."""
        if not self.writable:
            warnings.warn(f"Checkpoint {path!r} could not be used ({type(error).__name__}: "
                          f"{error}); the previous one is tried.", stacklevel=3)
            return
        aside = os.path.join(self.directory, DAMAGED + os.path.basename(path))
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(path, aside)
        warnings.warn(
            f"Checkpoint {path!r} could not be used ({type(error).__name__}: {error}); it was "
            f"set aside as {aside!r} and the previous one is tried.",
            stacklevel=3,
        )


def model_step(model):
    """The optimizer's step count (the number of training steps taken)."""
    backend.sync_model_state(model)
    return int(ops.convert_to_numpy(model.optimizer.iterations))


def _read_meta(path, step):
    """The metadata of the checkpoint at `path`; `ValueError` unless whole and consistent."""
    missing = [name for name in FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    try:
        with open(os.path.join(path, META)) as handle:
            meta = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"unreadable {META}: {error}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{META} holds no settings")
    for key, kind in META_KEYS.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ValueError(f"{META} has no valid {key!r}")
    if meta["step"] != step:
        raise ValueError(f"{META} says step {meta['step']}, the checkpoint's name {step}")
    if not meta["learning_rate_scale"] > 0:
        raise ValueError(f"{META} has a learning-rate scale of {meta['learning_rate_scale']}")
    return meta


def _load(model, path, step):
    model.load_weights(os.path.join(path, "model.weights.h5"))
    saved_step = int(ops.convert_to_numpy(model.optimizer.iterations))
    if saved_step != step:
        raise ValueError(f"its optimizer is at step {saved_step}, not {step}")
    carry = _read_arrays(os.path.join(path, "carry.npz"))
    expected = [(model.carry.batch_size, size) for size in model.state_sizes]
    if [tuple(a.shape) for a in carry] != expected:
        raise ValueError(
            f"its carried state has shapes {[a.shape for a in carry]}, this run needs "
            f"{expected}")
    model.set_carry_values(carry)
    variables = random_state_variables(model)
    randomness = _read_arrays(os.path.join(path, "random.npz"))
    if len(randomness) != len(variables):
        raise ValueError(f"it holds {len(randomness)} random states, the model "
                         f"{len(variables)}")
    for variable, value in zip(variables, randomness):
        variable.assign(value)


def _read_arrays(path):
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]
