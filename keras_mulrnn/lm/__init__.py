"""The character language-model toolkit: the model, training, checkpoints, evaluation,
generation and the command line. The command line's modules (`cli`, `commands`, `config`,
`interruption`, `lock`, `files`) import no Keras, so that the programs parse their arguments
before the backend loads; the others import it."""
