"""What users install is what is tested: the sdist and the wheel hold every module and data
file of the package, the version is written once, and the wheel installed into a fresh
virtual environment runs the README's installed commands from outside the clone.

The distributions are built once per test process, from a copy of the source tree (`python
-m build` without isolation: offline, with this environment's setuptools).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
from test_docs import INSTALLED_SECTION, TRAIN_CUT, _bash_blocks

import keras_mulrnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_mulrnn")
# What the source tree holds that is not the package's to ship.
BUILD_LEFTOVERS = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                         "*.pyc", "runs", ".pytest_cache")


def source_files():
    """Every file of the package in the source tree, relative to the tree's root."""
    found = []
    for folder, folders, files in os.walk(PACKAGE):
        folders[:] = [f for f in folders if f != "__pycache__"]
        found += [os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")
                  for name in files if not name.endswith(".pyc")]
    return sorted(found)


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    """`(sdist, wheel)` built from a copy of the source tree."""
    tree = tmp_path_factory.mktemp("source") / "keras_mulrnn"
    shutil.copytree(ROOT, tree, ignore=BUILD_LEFTOVERS, symlinks=True)
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(tree / "dist"), str(tree)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = sorted(os.listdir(tree / "dist"))
    sdist = next(tree / "dist" / name for name in built if name.endswith(".tar.gz"))
    wheel = next(tree / "dist" / name for name in built if name.endswith(".whl"))
    return sdist, wheel


def test_the_wheel_holds_every_file_of_the_package(distributions):
    _, wheel = distributions
    inside = set(zipfile.ZipFile(wheel).namelist())
    missing = [path for path in source_files() if path not in inside]
    assert not missing, f"the wheel lacks {missing}"
    assert "keras_mulrnn/data/embedded/tinyshakespeare.txt" in inside  # the quick run's data


def test_the_sdist_holds_what_builds_the_package(distributions):
    sdist, _ = distributions
    with tarfile.open(sdist) as archive:
        inside = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = source_files() + ["setup.py", "pyproject.toml", "requirements-jax.txt",
                               "README.md", "LICENSE", "CITATION.cff"]
    missing = [path for path in needed if path not in inside]
    assert not missing, f"the sdist lacks {missing}"


def test_the_version_is_written_once(distributions):
    _, wheel = distributions
    assert re.search(r"-(\d[^-]*)-py3", wheel.name).group(1) == keras_mulrnn.__version__
    written = [name for name in ("setup.py", "CITATION.cff", "pyproject.toml")
               if re.search(r"^\s*version\s*[:=]\s*['\"]?\d", open(os.path.join(ROOT, name)).read(),
                            re.MULTILINE)]
    assert not written, f"a second copy of the version in {written}"


def _installed_commands():
    """The README's block of commands for a package installed without the clone."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split(INSTALLED_SECTION, 1)[1]
    return [c for c in re.sub(r"  #.*", "", _bash_blocks(section)[0]).splitlines() if c.strip()]


@pytest.mark.slow
def test_the_installed_wheel_runs_the_readme_commands_outside_the_clone(distributions,
                                                                         tmp_path):
    """A fresh virtual environment (it sees this environment's packages, where the clone is
    installed editable: the test asserts that the wheel's copy is the one imported), inside
    an unrelated git repository, running from there."""
    _, wheel = distributions
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    python, pip = str(venv / "bin" / "python"), str(venv / "bin" / "pip")
    work = tmp_path / "project"  # someone's project, with its own commit
    work.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git + ["init", "-q"], cwd=work, check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "theirs"], cwd=work,
                   check=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")

    def run(words, **extra):
        done = subprocess.run(words, cwd=work, env={**env, **extra}, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (words, done.stdout[-2000:], done.stderr[-3000:])
        assert "Traceback" not in done.stderr, (words, done.stderr[-3000:])
        return done.stdout

    commands = _installed_commands()
    assert commands[0].startswith("pip install") and ".whl" in commands[0]
    # The README's command, given the wheel just built and kept offline.
    run([pip, "install", "--no-index", str(wheel)])
    where = run([python, "-c", "import keras_mulrnn; print(keras_mulrnn.__file__)"]).strip()
    assert where.startswith(str(venv)), f"imported {where}, not the installed wheel"
    for command in commands[1:]:
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "keras_mulrnn"], command
        extra = TRAIN_CUT if words[3] == "train" else []
        out = run([python] + words[1:] + extra)
        if words[3] == "--version":
            assert out.strip() == f"keras_mulrnn {keras_mulrnn.__version__}"
    # The console command, and Keras's own loader after a plain import, on both backends.
    model = "runs/installed/model.keras"
    assert run([str(venv / "bin" / "keras-mulrnn"), "--version"]).strip() == (
        f"keras_mulrnn {keras_mulrnn.__version__}")
    load = f"import keras_mulrnn, keras; print(type(keras.saving.load_model({model!r})).__name__)"
    for backend in ("tensorflow", "jax"):
        assert run([python, "-c", load], KERAS_BACKEND=backend).strip() == "CharLanguageModel"
    # The run records the package's version, not the commit of the repository around it.
    results = json.load(open(work / "runs" / "installed" / "results.json"))
    assert results["code"] == {"version": keras_mulrnn.__version__, "commit": None,
                               "modified": None}
