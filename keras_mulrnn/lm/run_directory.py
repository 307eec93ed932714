"""A training run's output directory: the names of its files, in one place, and the checks
that make a directory fit to hold a run.

Every file in it is written through `keras_mulrnn.lm.files` (atomically: a unique
temporary renamed over the target), and only by the process that holds the directory
(`keras_mulrnn.lm.lock`). What reads a run (the study's report, the tuner's report, the
evaluation of a finished run) finds its files by these names.
"""

import os
import tempfile
import warnings

from keras_mulrnn.data.corpora import file_mode
from keras_mulrnn.lm import files

RESULTS = "results.json"  # the final figures, written first once training is done
FINAL = "model.keras"  # the model after the last step
BEST = "best.keras"  # the model of the best validation so far
BEST_INFO = "best.json"  # its validation BPC and step
LOG = "log.csv"  # one row per validation
CHECKPOINTS = "checkpoints"  # `keras_mulrnn.lm.checkpoints`
TENSORBOARD = "tensorboard"  # on TensorFlow
# The figures of `results.json` that are numbers (a file where one is not is damaged).
RESULT_FIGURES = ("valid_bpc", "test_bpc", "params", "steps", "chars_per_sec",
                  "train_seconds")


def path(directory, name):
    """The path of the file `name` (one of the names above) of the run in `directory`."""
    return os.path.join(directory, name)


def prepare(output_dir):
    """Creates `output_dir` if needed and checks that it is a writable directory; returns it
    as a string."""
    output_dir = os.fspath(output_dir)
    if not output_dir.strip():
        raise ValueError("--output is empty: give a directory for the run's files.")
    try:
        output_dir.encode("utf-8")
    except UnicodeEncodeError:  # bytes a command line could not decode (PEP 383)
        raise ValueError(f"--output {output_dir!r} holds bytes that are not UTF-8 (TensorBoard "
                         f"and TensorFlow take UTF-8 paths only): give a UTF-8 path.") from None
    if os.path.islink(output_dir):
        file_mode(output_dir, "--output directory")  # (a link must lead somewhere)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(
            f"--output {output_dir!r} is a file; give a directory for checkpoints and logs."
        )
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass  # a real write: permission bits alone say nothing for root or read-only mounts
    except OSError as error:
        raise PermissionError(
            f"--output {output_dir!r} is not writable ({error.strerror or error}); choose "
            f"another directory."
        ) from None
    return output_dir


def has_checkpoints(output_dir):
    """Whether the run in `output_dir` has written anything into its checkpoints folder."""
    checkpoints = path(output_dir, CHECKPOINTS)
    return os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))


def check_fresh(output_dir, resume):
    """A new run (no `--resume`) refuses a directory that holds a run, and starts its logs
    anew in an empty one (with the directory held, so no other run can be writing them)."""
    if resume:
        return
    if has_checkpoints(output_dir) or os.path.exists(path(output_dir, RESULTS)):
        raise FileExistsError(
            f"{output_dir!r} already holds a run. Pass --resume to continue it, or choose "
            f"another --output directory."
        )
    for name in (LOG, BEST_INFO):
        if os.path.exists(path(output_dir, name)):
            os.remove(path(output_dir, name))


def read_best(output_dir):
    """The best validation BPC recorded in `best.json`, or None (none yet, or a damaged
    record: the next validation writes a new one)."""
    best_info = path(output_dir, BEST_INFO)
    if os.path.exists(best_info):
        try:
            return float(files.read_json(best_info, ("val_bpc",))["val_bpc"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def finished(output_dir, sample_length):
    """Whether the results, the final model and a sample of `sample_length` symbols of a
    finished run are all there (a damaged `results.json` is not: the run evaluates again
    and rewrites it)."""
    results_path = path(output_dir, RESULTS)
    if not (os.path.exists(path(output_dir, FINAL)) and os.path.exists(results_path)):
        return False
    try:
        results = files.read_json(results_path, RESULT_FIGURES)
    except files.DamagedFile as error:
        warnings.warn(f"{error} The finished run is evaluated again to write it anew.",
                      stacklevel=2)
        return False
    length = (results.get("config") or {}).get("sample_length")
    if "sample" in results and length != sample_length:
        print(f"This run finished earlier with a sample of {length} symbols; "
              f"--sample-length {sample_length} asks for another: evaluating "
              f"it again to write the results with a new sample.")
        return False
    return "sample" in results


def previous_speed(output_dir):
    """The speed figures of the run's earlier `results.json`, if it is readable."""
    try:
        previous = files.read_json(path(output_dir, RESULTS),
                                   ("chars_per_sec", "train_seconds"))
    except (OSError, files.DamagedFile):
        return {}
    return {key: previous.get(key) for key in ("chars_per_sec", "train_seconds")
            if previous.get(key) is not None}
