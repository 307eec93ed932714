"""Text generation: a compiled sampling loop (one `fori_loop` per chunk of symbols, not one
Python call per symbol), reproducible with a seed, streamed chunk by chunk."""

import numbers

from keras import ops

from keras_mulrnn import backend
from keras_mulrnn.lm import interruption
from keras_mulrnn.validation import (
    check_count,
    check_positive_int,
    check_positive_number,
    check_seed,
)

# Symbols sampled per compiled call: long enough to amortize the call, short enough that a
# long text streams out steadily.
CHUNK = 256


def generate(model, prompt, length=200, temperature=1.0, top_k=None, seed=0, batch_size=1,
             on_chunk=None):
    """Samples `length` symbols after `prompt` from a `CharLanguageModel`.

    Args:
        model: a trained `CharLanguageModel` (its vocabulary encodes the prompt).
        prompt: the text to continue (at least one symbol, all in the vocabulary).
        length: the number of symbols to sample (0: none).
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: sample only among the `top_k` most likely symbols (None: all).
        seed: the same seed gives the same text (on the same backend).
        batch_size: the number of independent samples.
        on_chunk: called with the list of `batch_size` texts of every chunk of up to
            `CHUNK` symbols as soon as it is sampled (to stream a long text).

    Returns:
        The sampled continuation (without the prompt): a str, or a list of `batch_size` str.
    """
    return generate_after(model, check_prompt(model, prompt), length, temperature, top_k, seed,
                          batch_size, on_chunk)


def generate_after(model, prompt_ids, length=200, temperature=1.0, top_k=None, seed=0,
                   batch_size=1, on_chunk=None):
    """`generate` after a prompt given as symbol ids (e.g. a piece of a split, which may not
    survive a trip through text: a byte corpus cut mid-character)."""
    check_generation_arguments(length, temperature, top_k, seed, len(model.vocabulary))
    check_positive_int("batch_size", batch_size)
    return sample(model, prompt_ids, length, temperature, top_k, seed, batch_size, on_chunk)


def check_prompt(model, prompt):
    """The ids of a text `prompt`, refused if it is empty or has a symbol that `model`'s
    vocabulary lacks."""
    if not prompt:
        raise ValueError("The prompt is empty: give at least one symbol to start from.")
    return model.vocabulary.encode(prompt, what="The prompt")


def sample(model, prompt_ids, length, temperature, top_k, seed, batch_size=1, on_chunk=None):
    """`generate_after` for arguments already checked (`check_generation_arguments`), as a
    program or a training run checks them before it starts."""
    vocabulary = model.vocabulary
    prompt_ids = ops.convert_to_tensor(prompt_ids, "int32")
    prompts = ops.tile(prompt_ids[None], (batch_size, 1))
    top_k = int(top_k or len(vocabulary))
    # A float32 temperature under 1e-30 would be flushed to zero (a division by zero); any
    # temperature that small already samples greedily.
    divisor = max(float(temperature), 1e-30)
    logits, states = backend.compile_function(model, "prime", lambda: _prime(model))(prompts)
    # Streamed text is decoded incrementally: a byte model's UTF-8 character may straddle
    # two chunks.
    decoders = [vocabulary.incremental_decoder() for _ in range(batch_size)]
    texts = [""] * batch_size
    offset = 0
    while offset < length:
        interruption.check()  # a Ctrl-C whose exception a library swallowed
        size = min(CHUNK, length - offset)
        sampler = backend.compile_function(
            model, ("sample", size, divisor, top_k),
            lambda size=size: _sampler(model, size, divisor, top_k))
        samples, logits, states = sampler(logits, states, ops.convert_to_tensor(seed, "int32"),
                                          ops.convert_to_tensor(offset, "int32"))
        offset += size
        chunk = [decoder(row, final=offset >= length)
                 for decoder, row in zip(decoders, ops.convert_to_numpy(samples))]
        texts = [text + piece for text, piece in zip(texts, chunk)]
        if on_chunk is not None:
            on_chunk(chunk)
    return texts[0] if batch_size == 1 else texts


def check_generation_arguments(length, temperature, top_k, seed, vocabulary_size):
    """Checks the sampling settings (also before a training run, which samples at its end)."""
    check_count("length", length)
    check_positive_number("temperature", temperature)
    check_seed("seed", seed)
    if top_k is not None and not (
            isinstance(top_k, numbers.Integral) and not isinstance(top_k, bool)
            and 1 <= top_k <= vocabulary_size):
        raise ValueError(
            f"Invalid value for argument `top_k`: received top_k={top_k!r}. Allowed: None or "
            f"an integer in [1, {vocabulary_size}]."
        )


def _prime(model):
    def prime(prompts):
        logits, states = model.forward(prompts, model.zero_states(ops.shape(prompts)[0]))
        return logits[:, -1], states

    return prime


def _sampler(model, size, temperature, top_k):
    vocabulary_size = len(model.vocabulary)

    def sample(logits, states, seed, offset):
        positions = ops.arange(size)[None, :]

        def body(step, carried):
            logits, states, samples = carried
            # Shifted so that the largest is 0 first: a tiny temperature then gives -inf
            # for the others (greedy), never inf - inf.
            scaled = (logits - ops.max(logits, axis=-1, keepdims=True)) / temperature
            if top_k < vocabulary_size:
                kth_best = ops.top_k(scaled, top_k)[0][:, -1:]
                scaled = ops.where(scaled < kth_best, -1e30, scaled)
            chosen = backend.categorical(scaled, seed, offset + step)
            logits, states = model.forward(chosen[:, None], states)
            samples = ops.where(positions == step, chosen[:, None], samples)
            return logits[:, -1], states, samples

        samples = ops.zeros((ops.shape(logits)[0], size), "int32")
        logits, states, samples = ops.fori_loop(0, size, body, (logits, states, samples))
        return samples, logits, states

    return sample
