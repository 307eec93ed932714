"""What a result was computed with: the package's version and, from a git checkout of its
own repository, the commit."""

import os
import subprocess


def code_version():
    """The package version and, when the package runs from a git checkout of its own
    repository, its commit and whether files differ from it: what a result was computed
    with. An installed package has no commit of its own (a virtual environment inside
    another project's repository must not record that project's commit)."""
    from keras_mulrnn import __version__

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(package)
    version = {"version": __version__, "commit": None, "modified": None}

    def git(*arguments):
        return subprocess.run(["git", *arguments], cwd=checkout, capture_output=True,
                              text=True, timeout=10)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or not _same_directory(top.stdout.strip(), checkout):
            return version
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return version
    if commit.returncode == 0:
        version.update(commit=commit.stdout.strip(), modified=bool(status.stdout.strip()))
    return version


def _same_directory(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
