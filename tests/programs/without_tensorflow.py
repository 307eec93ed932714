"""Runs a Python script in a process where TensorFlow cannot be imported, as on a machine
without it (an import of `tensorflow` or any of its modules raises `ImportError`).

    python tests/programs/without_tensorflow.py SCRIPT [ARGUMENTS...]
"""

import importlib.abc
import runpy
import sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked: this process runs without TensorFlow")


if __name__ == "__main__":
    sys.meta_path.insert(0, _NoTensorFlow())
    script, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
