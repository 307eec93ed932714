"""One run per output directory.

A run holds an exclusive `flock` on `DIRECTORY/.run.lock` for as long as it writes there. The
kernel releases the lock when the process ends, however it ends (a crash, SIGKILL, a reboot),
so a dead run never leaves the directory stuck, and a process id reused by another program
cannot pass for the holder. The file also names the holder (host, process id, command, start
time) for the message that a second run gets. It stays in place between runs: deleting it
while a run holds it would let another run lock a new file.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

LOCK_FILE = ".run.lock"


class DirectoryInUse(RuntimeError):
    """Another live process holds the directory."""


@contextlib.contextmanager
def hold_directory(directory, what="run", wait=False):
    """Holds `directory` (which must exist) for this process while the block runs.

    Raises `DirectoryInUse`, naming the holder, if another process holds it; with `wait`,
    waits for it instead (for short critical sections, such as writing a summary).
    """
    path = os.path.join(os.fspath(directory), LOCK_FILE)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DirectoryInUse(
                f"{os.fspath(directory)!r} is in use by another {what} "
                f"({_describe(_read_holder(path))}). Wait for it to finish, stop it, or "
                f"choose another directory."
            ) from None
        handle.seek(0)
        handle.truncate()
        json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                   "command": " ".join(sys.argv),
                   "started": datetime.datetime.now().isoformat(timespec="seconds")}, handle)
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def clear_held_directory(directory):
    """Deletes everything in `directory` but its lock file; call it while holding the
    directory (`hold_directory`), so that no other run's files are deleted."""
    import shutil

    for name in os.listdir(directory):
        if name == LOCK_FILE:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def held_elsewhere(directory):
    """Whether another process holds `directory` now (a hint: it may change at once)."""
    path = os.path.join(os.fspath(directory), LOCK_FILE)
    if not os.path.exists(path):
        return False
    try:
        with hold_directory(directory):
            return False
    except DirectoryInUse:
        return True


def _read_holder(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _describe(holder):
    if not holder:
        return "a process that has not yet said who it is"
    return (f"process {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}: {holder.get('command')}")
