"""Writing a run's files: every write atomic, through one scheme.

A file is written to a temporary of its own beside its target (unique, so that two writers
never share one) and renamed over the target only once it is complete: a crash, a full disk
or an interruption leaves the previous version. On any failure the temporary is removed, and
an `OSError` (a full disk, a read-only folder, a quota) becomes a `WriteError` that names the
file and says what to do. A new file gets the permissions that `open` would give it (the
user's umask), not a temporary file's private 0600.
"""

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import secrets
import shutil

import numpy as np

# The names `replacing` gives its temporaries: `.NAME.RANDOM.tmp[SUFFIX]`.
_TEMPORARY = re.compile(r"^\..+\.[^.]+\.tmp(\.[a-z]+)?$")
# A file that must not exist yet; the kernel applies the umask to its mode, as for any file.
_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_WRONLY


class WriteError(OSError):
    """A file of a run could not be written; its previous version, if any, is intact."""


@contextlib.contextmanager
def replacing(path, suffix=""):
    """Yields the path of a new temporary file beside `path` (ending in `suffix`, for
    writers that insist on one) for the block to write; then it replaces `path`."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    try:
        temporary = unique_path(directory, f".{name}.", f".tmp{suffix}",
                                lambda new: os.close(os.open(new, _NEW_FILE, 0o666)))
    except OSError as error:
        raise write_error(path, error) from None
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_error(path, error) from None
        raise


def unique_path(directory, prefix, suffix, make):
    """A new path `directory/PREFIX<random>SUFFIX`, made by `make(path)` (which must fail
    with `FileExistsError` if the path exists), e.g. an empty file or a folder with the
    user's permissions (`tempfile`'s are private)."""
    while True:
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            make(path)
            return path
        except FileExistsError:
            continue


def remove_temporaries(*directories):
    """Removes the temporaries that a killed writer left in `directories` (files of
    `replacing`, folders of checkpoints): call it while holding them (`lock`)."""
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if _TEMPORARY.match(name) and os.path.isfile(path):
                os.remove(path)
            elif name.startswith(".tmp-") and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically."""
    write_text(path, json.dumps(value, indent=1))


def write_csv(path, columns, rows):
    """Writes `rows` (dicts) under the header `columns` to `path` atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def save_model(model, path):
    """Saves `model` as a `.keras` file at `path` atomically."""
    ensure_space(path, saved_size(model))
    with replacing(path, ".keras") as temporary:
        model.save(temporary)


def saved_size(model):
    """An upper estimate of the bytes that saving `model`'s weights (and its optimizer's
    state) takes on disk: the values plus HDF5's overhead per variable, and room for the
    configuration."""
    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    values = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(1.05 * values) + 4096 * len(variables) + (1 << 16)


def ensure_space(path, size):
    """Raises a `WriteError` naming `path` unless its disk has `size` bytes free. Checked
    before the model writers start: HDF5 that meets a full disk half-way through a file
    fails in its finalizers and can crash the interpreter (a segmentation fault)."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        free = shutil.disk_usage(directory).free
    except OSError as error:
        raise write_error(path, error) from None
    if free < size:
        raise write_error(path, OSError(
            errno.ENOSPC, f"{free:,} bytes free on its disk, about {size:,} needed"))


class DamagedFile(ValueError):
    """A file of a run that is not what the package wrote (cut short, edited, or not JSON)."""


def read_json(path, numbers=()):
    """The JSON object in `path`, whose keys `numbers` hold finite numbers (or null); a file
    that is not such an object (or not a regular file: a pipe would block) raises
    `DamagedFile` naming it."""
    if not os.path.isfile(path):
        raise DamagedFile(f"{os.fspath(path)!r} is damaged: it is not a regular file.")
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise DamagedFile(f"{os.fspath(path)!r} is damaged: it is not the JSON the package "
                          f"wrote ({error}).") from None
    if not isinstance(value, dict):
        raise DamagedFile(f"{os.fspath(path)!r} is damaged: it holds no JSON object.")
    for key in numbers:
        figure = value.get(key)
        if figure is not None and (isinstance(figure, bool)
                                   or not isinstance(figure, (int, float))
                                   or not math.isfinite(figure)):
            raise DamagedFile(f"{os.fspath(path)!r} is damaged: its {key!r} is {figure!r}, "
                              f"not a number.")
    return value


def write_error(path, error):
    """A `WriteError` naming `path`, what went wrong and what to do."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "Free space on that disk (or give another directory) and run again"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "Give a directory you can write to"
    elif error.errno == errno.ENAMETOOLONG:
        advice = "Give a shorter path"
    else:
        advice = "Check the directory and run again"
    failure = WriteError(f"Could not write {path!r}: {reason}. {advice}; the previous "
                         f"version of the file, if any, is kept.")
    failure.errno = error.errno
    return failure
