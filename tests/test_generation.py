"""Text generation (`lm/generation.py`): reproducible, checked before any output, bounded,
streamed."""

import shutil
import subprocess

import numpy as np
import pytest

from keras_mulrnn.lm.generation import generate
from keras_mulrnn.lm.training import train

from helpers import (ENV, assert_one_clear_line, program, run_program, small_config, small_corpus,
                     tiny_model)


def test_generation_is_reproducible_and_checks_its_prompt():
    model = tiny_model()
    first = generate(model, "It is", length=60, seed=5, top_k=10, temperature=0.8)
    assert len(first) == 60 and set(first) <= set(model.vocabulary.symbols)
    assert generate(model, "It is", length=60, seed=5, top_k=10, temperature=0.8) == first
    assert generate(model, "It is", length=60, seed=6, top_k=10, temperature=0.8) != first
    batch = generate(model, "It is", length=30, seed=5, batch_size=4)
    assert len(batch) == 4 and len(set(batch)) > 1
    # top_k=1 is greedy decoding: the argmax continuation, whatever the seed.
    greedy = generate(model, "a", length=20, seed=1, top_k=1)
    assert generate(model, "a", length=20, seed=2, top_k=1) == greedy
    ids = list(model.vocabulary.encode("a"))
    for _ in range(20):
        logits = model.predict(np.array([ids], "int32"), verbose=0)[0, -1]
        ids.append(int(np.argmax(logits)))
    assert model.vocabulary.decode(ids[1:]) == greedy
    with pytest.raises(ValueError, match=r"prompt.*'Z'.*never saw"):
        generate(model, "Zebra", length=5)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, "It", temperature=0)


def test_a_huge_generation_is_bounded_and_a_long_one_streams(tmp_path):
    model = tmp_path / "model.keras"
    train(small_corpus(), small_config(steps=2), tmp_path / "run", verbose=0)
    shutil.copy(tmp_path / "run" / "model.keras", model)
    done = run_program(tmp_path, "generate.py", "--model", model, "--prompt", "It",
                       "--length", "100000000")
    assert_one_clear_line(done)
    assert "--length must be in [0, 10,000,000]" in done.stderr
    process = subprocess.Popen(program("generate.py", "--model", model, "--prompt", "It",
                                       "--length", "1000000"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.read(300)  # arrives while the rest is being sampled
        assert first.startswith("It") and len(first) == 300
        assert process.poll() is None
        assert "more minutes" in process.stderr.readline() + process.stderr.readline()
    finally:
        process.kill()
        process.wait()


def test_a_generated_prompt_is_checked_before_anything_is_printed_and_tiny_temperatures(
        tmp_path):
    train(small_corpus(), small_config(steps=2), tmp_path / "run", verbose=0)
    model = tmp_path / "run" / "model.keras"
    done = run_program(tmp_path, "generate.py", "--model", model, "--prompt", "It", "--seed",
                       str(2**32))
    assert_one_clear_line(done)
    assert "`seed`" in done.stderr and done.stdout == ""
    done = run_program(tmp_path, "generate.py", "--model", model, "--prompt", "€uro")
    assert_one_clear_line(done)
    assert done.stdout == ""
    greedy = run_program(tmp_path, "generate.py", "--model", model, "--prompt", "It",
                         "--length", "20", "--temperature", "1e-38")
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    assert len(greedy.stdout.rstrip("\n")) == 22
