"""The documentation stays true: every command of the README and of the scripts' docstrings
runs as written in a fresh clone (its size cut by flags where it is long), every flag of every
program has help text, and nothing points at files a user's clone does not have."""

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}

# Flags appended to cut a long command down to seconds (argparse: the last value wins).
TRAIN_CUT = ["--steps", "4", "--eval-every", "2", "--units", "16", "--embedding-dim", "8",
             "--batch-size", "4", "--seq-len", "20", "--valid-symbols", "200",
             "--eval-batch-size", "2", "--test-batch-size", "16", "--sample-length", "5",
             "--checkpoint-every", "none"]
# The main job (and the tuner, which has no such flag) runs compiled, as its users run it;
# train_text's and compare_sharing's models, at this size, run in half the time without XLA
# (XLA's own path is tested in test_training.py).
WITHOUT_XLA = ["--jit-compile", "false"]
CUTS = {
    "examples/train_enwik8.py": TRAIN_CUT,
    "examples/train_text.py": TRAIN_CUT + WITHOUT_XLA,
    "examples/compare_sharing.py": TRAIN_CUT + WITHOUT_XLA + [
        "--seeds", "1", "--family", "lstm", "--learning-rates", "0.005"],
    "examples/generate.py": ["--length", "20"],
    "examples/evaluate.py": ["--statistics-segments", "3"],
    "tuning/search.py": ["--max-trials", "1", "--steps-per-trial", "4", "--units", "16",
                         "--budget", "3000", "--batch-size", "4", "--seq-len", "20",
                         "--valid-symbols", "200", "--test-batch-size", "16",
                         "--embedding-dim", "8"],
}
# Placeholders the README uses for the reader's own files: made for the test.
PLACEHOLDERS = {"my.txt", "file.bin"}


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _commands(block):
    """The commands of a bash block: continuation lines joined, comments dropped, `&&`
    chains split, `pip install` steps left out (CI installs)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            part = part.strip()
            if part and not part.startswith("pip install"):
                commands.append(part)
    return commands


def _docstring_commands(path):
    """The usage lines of a script's docstring (indented `python ...` lines)."""
    text = open(path).read()
    docstring = re.match(r'\s*"""(.*?)"""', text, flags=re.S)
    if not docstring:
        return []
    return _commands(re.sub(r"^    ", "", docstring.group(1), flags=re.M).replace(
        "\\\\\n", "\\\n"))


# The README's section for a package installed without the clone: its commands run from an
# installed wheel, outside the clone, in test_distribution.py.
INSTALLED_SECTION = "## Install without the clone"


def documented_commands():
    commands = []
    readme = open(os.path.join(ROOT, "README.md")).read()
    before, _, after = readme.partition(INSTALLED_SECTION)
    after = after[after.find("\n## "):] if "\n## " in after else ""
    for block in _bash_blocks(before + after):
        commands += [("README.md", command) for command in _commands(block)]
    for folder in ("examples", "tuning"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                path = os.path.join(ROOT, folder, name)
                commands += [(f"{folder}/{name}", c) for c in _docstring_commands(path)
                             if c.startswith(("python", "KERAS_BACKEND"))]
    return commands


def why_not_run(words):
    """Why a documented command is not run here (None: it is run)."""
    script = next((w for w in words if w.endswith(".py") or w == "keras_mulrnn"), None)
    if words[0] == "export" or script is None:
        return "not a command of the package"
    if words[:3] == ["python", "-m", "pytest"]:
        return "the test command itself"
    if "--tfds" in words:
        return "needs the network (TFDS downloads the dataset)"
    if script.endswith("train_enwik8.py") and "--quick" not in words and "--data" not in words:
        return "needs the network (downloads enwik8)"
    if "--data" in words and words[words.index("--data") + 1] in ("enwik8.zip", "DIR"):
        return "needs data a fresh clone has not (enwik8, Penn Treebank)"
    if "train_ptb.py" in script:
        return "needs the Penn Treebank files, which are not distributed"
    if "multiworker" in words or "--chief" in words or "--worker" in words:
        return "needs several machines (tested on localhost in test_distribute, test_tuning)"
    if script.startswith("benchmarks/"):
        return "a benchmark: measured in BENCHMARKS.md, not run by the tests"
    return None


def _environment(words):
    """A command's leading `NAME=value` words as an environment, and the words after them."""
    env, words = dict(ENV), list(words)
    while words and re.fullmatch(r"[A-Z_]+=\S+", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def runnable_commands():
    """The documented commands the test runs, each once (the same command in two documents
    runs once: a second run into the same --output is refused, as it should be), grouped by
    the run directory they share (a training run and the commands that read it), in order."""
    groups, seen, skipped = {}, [], []
    for source, command in documented_commands():
        words = shlex.split(command)
        if words in seen:
            continue
        seen.append(words)
        reason = why_not_run(_environment(words)[1])
        if reason:
            skipped.append((source, command, reason))
            continue
        run_directory = re.search(r"runs/[\w.-]+", command)
        groups.setdefault(run_directory.group(0) if run_directory else command, []).append(
            (source, command))
    return groups, skipped


def _reads_a_run(command):
    """Whether a command reads what another one wrote (a model, a search's trials)."""
    return "--model" in command or "tuning/report.py" in command


def test_the_documented_commands_are_found():
    groups, skipped = runnable_commands()
    print("\n".join(f"not run: {c!r} ({s}): {r}" for s, c, r in skipped))
    assert sum(len(commands) for commands in groups.values()) >= 15, groups
    assert len(groups.get("runs/quick", [])) >= 5  # the main job's run, and what reads it
    # Each group starts in an empty directory: what a command reads, an earlier command of
    # its group wrote (a reader of a program's default --output would start a group alone).
    for key, commands in groups.items():
        assert not _reads_a_run(commands[0][1]), (key, commands)
    readme = [c for s, c in documented_commands() if s == "README.md"]
    assert "python examples/train_enwik8.py --quick" in readme  # the first set-up command


GROUPS = runnable_commands()[0]


@pytest.mark.slow
@pytest.mark.parametrize("commands", GROUPS.values(), ids=GROUPS.keys())
def test_every_documented_command_runs_as_written(commands, tmp_path):
    # A fresh clone's layout: the scripts beside their outputs, nothing else.
    for folder in ("examples", "tuning", "benchmarks"):
        os.symlink(os.path.join(ROOT, folder), tmp_path / folder)
    sample = open(os.path.join(ROOT, "keras_mulrnn", "data", "embedded",
                               "tinyshakespeare.txt")).read()[:60_000]
    for name in PLACEHOLDERS:
        (tmp_path / name).write_text(sample)
    for source, command in commands:
        env, words = _environment(shlex.split(command))
        script = next(w for w in words if w.endswith(".py") or w == "keras_mulrnn")
        words = [sys.executable] + words[1:] + CUTS.get(script, [])
        if script == "keras_mulrnn" and "train" in words:
            words += TRAIN_CUT
        done = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (source, command, done.stderr[-3000:])
        assert "Traceback" not in done.stderr, (source, command, done.stderr[-3000:])


PROGRAMS = [["examples/train_enwik8.py"], ["examples/train_text.py"],
            ["examples/train_ptb.py"], ["examples/compare_sharing.py"],
            ["examples/quickstart.py"],
            ["examples/evaluate.py"], ["examples/generate.py"], ["tuning/search.py"],
            ["tuning/report.py"], ["-m", "keras_mulrnn", "train"],
            ["-m", "keras_mulrnn", "evaluate"], ["-m", "keras_mulrnn", "generate"],
            ["-m", "keras_mulrnn", "study"]]


# Runs a program with `--help` in this process, then says whether Keras was loaded.
HELP_PROBE = """
import runpy, sys
program = sys.argv[1:]
sys.argv = [program[1] if program[0] == "-m" else program[0]] + program[2:] + ["--help"]
try:
    if program[0] == "-m":
        runpy.run_module(program[1], run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(program[0], run_name="__main__")
except SystemExit as exit:
    print("exit status:", exit.code or 0, file=sys.stderr)
print("keras loaded:", "keras" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("program", PROGRAMS, ids=[" ".join(p) for p in PROGRAMS])
def test_every_flag_has_help_and_help_loads_no_backend(program):
    done = subprocess.run([sys.executable, "-c", HELP_PROBE, *program], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert "exit status: 0" in done.stderr, done.stderr
    # One chunk per option: its flag line and the deeper-indented lines that continue it.
    options = re.findall(r"^  (-.*(?:\n {3,}\S.*)*)", done.stdout, re.MULTILINE)
    assert options, done.stdout
    for option in options:
        flag = option.split()[0]
        described = re.sub(r"^\s*-\S+(,\s*-\S+)?(\s+[A-Z_{}|,a-z.-]+)?\s*", "",
                           option.strip(), count=1)
        assert described.strip(), f"{flag} of {program} has no help text"
    # The arguments are parsed before Keras (and its backend) loads: --help is instant.
    assert "keras loaded: False" in done.stderr, done.stderr


def test_quick_help_says_what_it_sets():
    done = subprocess.run([sys.executable, "examples/train_enwik8.py", "--help"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=60)
    quick = re.search(r"^  --quick(.*(?:\n {3,}\S.*)*)", done.stdout, re.MULTILINE)
    quick = " ".join(quick.group(1).split())
    for flag in ("--units 128", "--steps 1000", "--learning-rate 0.005"):
        assert flag in quick


def test_no_document_points_at_files_a_clone_lacks():
    offenders = []
    for folder, _, files in os.walk(ROOT):
        if any(part in folder for part in (".git", "runs", "__pycache__", ".egg-info")):
            continue
        for name in files:
            if name.endswith((".py", ".md", ".cff", ".txt", ".cfg", ".ini")):
                path = os.path.join(folder, name)
                if ".." + "/shared" in open(path, errors="replace").read():
                    offenders.append(os.path.relpath(path, ROOT))
    assert not offenders, offenders
    for path in ("docs/DESIGN.md", "LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert os.path.exists(os.path.join(ROOT, path)), path
