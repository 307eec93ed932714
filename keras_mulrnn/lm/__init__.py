"""The character language-model toolkit: the model, training, checkpoints, evaluation,
generation and the command line. Its modules import Keras only when they are used, so that
the programs can parse their arguments before the backend loads."""
