"""`keras_mulrnn.lm.interruption` as the programs start: a Ctrl-C before a program records
its interruptions stops it quietly, and every program says so first thing."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ["examples/compare_sharing.py", "examples/evaluate.py", "examples/generate.py",
            "examples/quickstart.py", "examples/train_enwik8.py", "examples/train_ptb.py",
            "examples/train_text.py", "tuning/report.py", "tuning/search.py",
            "keras_mulrnn/__main__.py"]


@pytest.mark.parametrize("before,after", [("signal.default_int_handler", "signal.SIG_DFL"),
                                          ("signal.SIG_IGN", "signal.SIG_IGN")])
def test_a_ctrl_c_while_starting_stops_quietly_unless_sigint_is_handled(before, after):
    code = (f"import signal; signal.signal(signal.SIGINT, {before}); "
            f"from keras_mulrnn.lm import interruption; "
            f"interruption.stop_quietly_while_starting(); "
            f"print(signal.getsignal(signal.SIGINT) is {after})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_stops_quietly_while_starting_first_thing(program):
    body = ast.parse(open(os.path.join(ROOT, program), encoding="utf-8").read()).body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    first, second = ast.unparse(body[0]), ast.unparse(body[1])
    assert (first, second) == ("from keras_mulrnn.lm import interruption",
                               "interruption.stop_quietly_while_starting()"), program


def test_every_program_is_listed():
    found = {os.path.relpath(os.path.join(folder, name), ROOT)
             for folder in (os.path.join(ROOT, "examples"), os.path.join(ROOT, "tuning"))
             for name in os.listdir(folder)
             if name.endswith(".py") and name != "__init__.py"
             and "__main__" in open(os.path.join(folder, name)).read()}
    assert found | {"keras_mulrnn/__main__.py"} == set(PROGRAMS)
