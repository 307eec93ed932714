"""Text generation: a compiled sampling loop (one `tf.while_loop`, not one Python call per
symbol), reproducible with a seed."""

import tensorflow as tf

from keras_mulrnn.compiled import cached_function
from keras_mulrnn.randomness import preserved_random_state
from keras_mulrnn.validation import check_positive_int, require_tensorflow


def generate(model, prompt, length=200, temperature=1.0, top_k=None, seed=0, batch_size=1):
    """Samples `length` symbols after `prompt` from a `CharLanguageModel`.

    Args:
        model: a trained `CharLanguageModel` (its vocabulary encodes the prompt).
        prompt: the text to continue (at least one symbol, all in the vocabulary).
        length: the number of symbols to sample.
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: sample only among the `top_k` most likely symbols (None: all).
        seed: the same seed gives the same text.
        batch_size: the number of independent samples.

    Returns:
        The sampled continuation (without the prompt): a str, or a list of `batch_size` str.
    """
    require_tensorflow("generate()")
    vocabulary = model.vocabulary
    if not prompt:
        raise ValueError("The prompt is empty: give at least one symbol to start from.")
    check_positive_int("length", length)
    check_positive_int("batch_size", batch_size)
    if not temperature > 0:
        raise ValueError(
            f"Invalid value for argument `temperature`: received temperature={temperature!r}. "
            f"Allowed: a number > 0."
        )
    if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k <= len(vocabulary)):
        raise ValueError(
            f"Invalid value for argument `top_k`: received top_k={top_k!r}. Allowed: None or "
            f"an integer in [1, {len(vocabulary)}]."
        )
    prompt_ids = vocabulary.encode(prompt, what="The prompt").astype("int32")
    prompts = tf.tile(tf.constant(prompt_ids)[None], (batch_size, 1))
    sampler = _sampler(model, length, float(temperature), top_k or len(vocabulary))
    with preserved_random_state(model):
        sampled = sampler(prompts, tf.constant([seed, 0], tf.int64)).numpy()
    texts = [vocabulary.decode(row) for row in sampled]
    return texts[0] if batch_size == 1 else texts


def _sampler(model, length, temperature, top_k):
    return cached_function(
        model, ("sample", length, temperature, top_k),
        lambda: _build_sampler(model, length, temperature, top_k),
    )


def _build_sampler(model, length, temperature, top_k):
    @tf.function(reduce_retracing=True)
    def sample(prompts, seed):
        batch = tf.shape(prompts)[0]
        logits, states = model.forward(prompts, model.zero_states(batch))
        samples = tf.TensorArray(tf.int32, size=length)

        def body(step, last_logits, states, samples):
            scaled = last_logits / temperature
            kth_best = tf.math.top_k(scaled, k=top_k).values[:, -1:]
            scaled = tf.where(scaled < kth_best, tf.fill(tf.shape(scaled), -1e30), scaled)
            step_seed = tf.stack([seed[0], tf.cast(step, tf.int64)])
            chosen = tf.random.stateless_categorical(scaled, 1, seed=step_seed, dtype=tf.int32)
            logits, states = model.forward(chosen, states)
            return step + 1, logits[:, -1], states, samples.write(step, chosen[:, 0])

        _, _, _, samples = tf.while_loop(
            lambda step, *_: step < length, body, (0, logits[:, -1], states, samples)
        )
        return tf.transpose(samples.stack())

    return sample
