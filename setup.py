from setuptools import find_packages, setup

setup(
    name="keras_mulrnn",
    version="0.1.0",
    description=(
        "Multiplicative recurrent cells (mRNN, mLSTM, mGRU) for Keras 3, with character "
        "language modelling, benchmarks and hyperparameter search."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_mulrnn", "keras_mulrnn.*"]),
    python_requires=">=3.10",
    # Lower bounds are the versions the test suite ran on. Keras is capped below 4 because
    # the cells use two of its private modules (the dropout-mask mixin and the RNN loop).
    install_requires=[
        "keras>=3.15,<4",
        "tensorflow>=2.21",
        "numpy>=1.26",
        "tensorboard>=2.21",
        "scipy>=1.11",  # the study's confidence intervals
    ],
    extras_require={
        # The tests exercise every optional part: tuning, the plots, TFDS, the JAX backend.
        "tests": ["pytest>=8.0", "keras-tuner>=1.4.8", "matplotlib>=3.8",
                  "tensorflow-datasets>=4.9", "jax>=0.10"],
        "jax": ["jax>=0.10"],
        "tuning": ["keras-tuner>=1.4.8", "matplotlib>=3.8"],
        "tfds": ["tensorflow-datasets>=4.9"],
        "plot": ["matplotlib>=3.8"],
    },
)
