"""The command-line programs (`lm/cli.py`, `lm/commands.py`, `__main__.py`): flags, checks
before anything runs, one clear line for bad input."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ENV, ROOT, TEXT, assert_one_clear_line, data_file, run_program


def test_main_script_quick_end_to_end(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    output = tmp_path / "out"
    command = [sys.executable, os.path.join(ROOT, "examples", "train_enwik8.py"), "--quick",
               "--data", str(data), "--output", str(output), "--steps", "6",
               "--eval-every", "3", "--batch-size", "4", "--seq-len", "20"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not enwik8" in done.stderr
    assert "test BPC" in done.stdout
    results = json.loads((output / "results.json").read_text())
    for key in ("test_bpc", "valid_bpc", "params", "steps", "chars_per_sec"):
        assert key in results
    assert results["steps"] == 6 and results["config"]["units"] == 128  # the quick preset
    generated = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "generate.py"), "--model",
         str(output / "model.keras"), "--prompt", "It is", "--length", "30"],
        capture_output=True, text=True, timeout=300, env=env)
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert generated.stdout.startswith("It is") and len(generated.stdout.strip()) >= 30
    evaluated = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "evaluate.py"), "--model",
         str(output / "model.keras"), "--corpus", "enwik8", "--data", str(data), "--split", "test",
         "--batch-size", str(results["config"]["test_batch_size"]), "--seq-len", "20"],
        capture_output=True, text=True, timeout=300, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"test: {results['test_bpc']:.4f} bits per character" in evaluated.stdout


def test_quick_never_outwits_an_explicit_or_abbreviated_flag(tmp_path):
    data = data_file(tmp_path)
    done = run_program(tmp_path, "train_enwik8.py", "--quick", "--data", data, "--unit", "32")
    assert_one_clear_line(done)
    assert "unrecognized arguments: --unit 32" in done.stderr
    from keras_mulrnn.lm import cli

    parser = cli.parser("x", {}, "data")
    for argv in (["--quick", "--units=32"], ["--quick", "--units", "32"]):
        args = parser.parse_args(argv)
        assert cli.config_from(args, parser, argv).units == 32
    args = parser.parse_args(["--quick"])
    assert cli.config_from(args, parser, ["--quick"]).units == cli.QUICK["units"]


# Flags that a program would have ignored, or values it would have failed on late: each is
# now a usage error or one `error:` line, and nothing is written.
BAD_FLAGS = [
    ("train_text.py", ["--data", ""], "--data is empty"),
    ("train_text.py", ["--corpus", "embedded", "--data", "x.txt"], "reads no --data"),
    ("train_text.py", ["--corpus", "enwik8", "--kind", "char"], "--kind applies to"),
    ("train_text.py", ["--corpus", "text", "--tfds", "x"], "--tfds goes with --corpus tfds"),
    ("train_text.py", ["--threads", "100000000000"], "--threads must be"),
    ("evaluate.py", ["--model", "m.keras", "--dynamic-lr", "nan"], "--dynamic-lr must be"),
    ("evaluate.py", ["--model", "m.keras", "--statistics-segments", "0"],
     "--statistics-segments must be"),
    ("generate.py", ["--model", "missing.keras", "--prompt", "x"], "does not exist"),
]


@pytest.mark.parametrize("script,arguments,message", BAD_FLAGS,
                         ids=[" ".join(case[1]) for case in BAD_FLAGS])
def test_flags_that_would_be_ignored_or_fail_late(tmp_path, script, arguments, message):
    done = run_program(tmp_path, script, *arguments, "--output", tmp_path / "out") \
        if script.startswith("train") else run_program(tmp_path, script, *arguments)
    assert_one_clear_line(done)
    assert message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_the_module_entry_point_without_a_command_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "keras_mulrnn"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error: no command" in done.stderr
    assert subprocess.run([sys.executable, "-m", "keras_mulrnn", "--help"], env=ENV,
                          capture_output=True, text=True, timeout=60).returncode == 0
