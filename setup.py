import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def requirements(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def version():
    """The package's version, written once, in `keras_mulrnn/__init__.py` (read, not imported:
    the package's dependencies are not installed yet)."""
    with open(os.path.join(HERE, "keras_mulrnn", "__init__.py"), encoding="utf-8") as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.MULTILINE).group(1)


# The needs of every backend, from the file that installs the package without TensorFlow.
# Lower bounds are the versions the test suite ran on. Keras is capped below 4 because the
# cells use two of its private modules (the dropout-mask mixin and the RNN loop).
CORE = [r for r in requirements("requirements-jax.txt") if not r.startswith("jax")]
JAX = [r for r in requirements("requirements-jax.txt") if r.startswith("jax")]
TFDS = ["tensorflow-datasets>=4.9",
        # TFDS imports it when it prepares a dataset, and etils no longer brings it.
        "importlib_resources>=6.0"]
PLOT = ["matplotlib>=3.8"]
TUNING = ["keras-tuner>=1.4.8"] + PLOT

setup(
    name="keras_mulrnn",
    version=version(),
    description=(
        "Multiplicative recurrent cells (mRNN, mLSTM, mGRU) for Keras 3, with character "
        "language modelling, benchmarks and hyperparameter search."
    ),
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author="The keras_mulrnn authors",
    url="https://github.com/keras-mulrnn/keras_mulrnn",
    license="Apache-2.0",
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: Apache Software License",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    keywords="keras recurrent neural network mlstm multiplicative lstm language model",
    packages=find_packages(include=["keras_mulrnn", "keras_mulrnn.*"]),
    # The corpus the quick run trains on when no data is given.
    package_data={"keras_mulrnn.data": ["embedded/*.txt"]},
    python_requires=">=3.10",
    install_requires=CORE + ["tensorflow>=2.21", "tensorboard>=2.21"],
    extras_require={
        # The tests exercise every optional part: tuning, the plots, TFDS, the JAX backend;
        # pytest-xdist runs them on every core (`-n auto`).
        # `build` makes the sdist and the wheel that the tests install, offline, with this
        # environment's setuptools and wheel (pyproject.toml's build requirements).
        "tests": ["pytest>=8.0", "pytest-xdist>=3.2", "build>=1.0", "setuptools>=61",
                  "wheel"] + TUNING + TFDS + JAX,
        "jax": JAX,
        "tuning": TUNING,
        "tfds": TFDS,
        "plot": PLOT,
    },
    entry_points={"console_scripts": ["keras-mulrnn=keras_mulrnn.__main__:main"]},
)
