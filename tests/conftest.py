import os
import sys

# The `tuning/` scripts are importable as a package from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the default float32 policy."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def pytest_configure(config):
    # On several workers (pytest-xdist), tests are handed out a few at a time: by default
    # each worker first gets a consecutive quarter of its share, and every slow test
    # (sorted first, below) would go to the first worker, one after another.
    if getattr(config.option, "maxschedchunk", False) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(items):
    """The slow tests first: on several workers they then run side by side from the start,
    and the short ones fill in around them instead of one long test running alone at the
    end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()}"
