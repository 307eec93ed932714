"""Corpora, vocabularies and the truncated-BPTT layout, on fixtures the tests make."""

import os
import time
import zipfile

import numpy as np
import pytest

from keras_mulrnn.data import (ShuffledWindows, TBPTTBatches, Vocabulary, corpora, load_enwik8,
                               load_ptb, load_text, load_tfds)
from keras_mulrnn.lm.training import train

from helpers import small_config, small_corpus


@pytest.fixture(scope="module")
def enwik8_like(tmp_path_factory):
    """A 100,000,000-byte file shaped like enwik8 (random bytes from 205 values), and its zip."""
    directory = tmp_path_factory.mktemp("enwik8")
    rng = np.random.default_rng(0)
    alphabet = np.arange(256, dtype=np.uint8)[rng.permutation(256)[:205]]
    data = alphabet[rng.integers(0, 205, corpora.ENWIK8_SIZE)].tobytes()
    raw = directory / "enwik8"
    raw.write_bytes(data)
    zipped = directory / "enwik8.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as archive:
        archive.write(raw, "enwik8")
    return raw, zipped, data


@pytest.mark.parametrize("which", ["raw", "zip"])
def test_enwik8_split_sizes_and_boundaries(enwik8_like, which):
    raw, zipped, data = enwik8_like
    corpus = load_enwik8(raw if which == "raw" else zipped)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (
        90_000_000, 5_000_000, 5_000_000)
    assert corpus.vocabulary.kind == "byte" and len(corpus.vocabulary) == 205
    decode = corpus.vocabulary.symbols
    for split, start in ((corpus.train, 0), (corpus.valid, 90_000_000),
                         (corpus.test, 95_000_000)):
        for offset in (0, len(split) - 1):
            assert decode[split[offset]] == data[start + offset]
    assert corpus.train.dtype == np.uint8  # one compact array, 1 byte per symbol


def test_other_byte_file_is_split_by_fraction_with_a_warning(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(bytes(range(200)) * 10)
    with pytest.warns(UserWarning, match="not enwik8"):
        corpus = load_enwik8(path)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (1800, 100, 100)


def test_offline_download_fails_fast_with_instructions(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr("keras.utils.get_file", offline)
    with pytest.raises(ConnectionError, match="--data"):
        load_enwik8(cache_dir=str(tmp_path))


def test_partial_download_is_never_taken_for_enwik8(monkeypatch, tmp_path):
    partial = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(partial, "w") as archive:
        archive.writestr("enwik8", b"x" * 1000)
    monkeypatch.setattr("keras.utils.get_file", lambda *a, **k: str(partial))
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        load_enwik8(cache_dir=str(tmp_path))
    assert not partial.exists()  # removed, so the next run downloads again


def test_damaged_zip_is_reported(tmp_path):
    path = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("enwik8", b"abcdefgh" * 1000)
    raw = bytearray(path.read_bytes())
    raw[60:70] = b"0123456789"  # corrupt the member's bytes: its CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises((ValueError, zipfile.BadZipFile)):
        load_enwik8(path)


PTB_FIXTURE = (
    " a e r _ b a n k n o t e _ b e r l i t z\n"
    " p i e r r e _ < u n k > _ N _ y e a r s _ o l d\n"
    " m r . _ < u n k > _ i s _ c h a i r m a n\n"
)


def _write_ptb(directory):
    for split, repeat in (("train", 3), ("valid", 1), ("test", 1)):
        (directory / f"ptb.char.{split}.txt").write_text(PTB_FIXTURE * repeat)


def test_ptb_reader_handles_the_real_format(tmp_path):
    _write_ptb(tmp_path)
    corpus = load_ptb(tmp_path)
    vocab = corpus.vocabulary
    assert "\n" in vocab.symbols and "_" in vocab.symbols and " " not in vocab.symbols
    # "<unk>" in the character files is spelled out as characters separated by spaces.
    assert "<" in vocab.symbols and "<unk>" not in vocab.symbols
    first_line = PTB_FIXTURE.splitlines()[0].split() + ["\n"]
    assert vocab.decode(corpus.valid[: len(first_line)]) == "".join(first_line)
    assert len(corpus.valid) == sum(len(line.split()) + 1 for line in PTB_FIXTURE.splitlines())
    assert len(corpus.train) == 3 * len(corpus.valid)


def test_ptb_missing_file_is_named(tmp_path):
    _write_ptb(tmp_path)
    os.remove(tmp_path / "ptb.char.train.txt")
    with pytest.raises(FileNotFoundError, match="ptb.char.train.txt"):
        load_ptb(tmp_path)


def test_vocabulary_round_trip_and_unknown_symbols():
    vocab = Vocabulary.from_data("hello world", "char")
    assert vocab.decode(vocab.encode("world hello")) == "world hello"
    assert Vocabulary.from_config(vocab.get_config()) == vocab
    with pytest.raises(ValueError, match=r"'z'.*never saw"):
        vocab.encode("hello z")
    bytes_vocab = Vocabulary.from_data("héllo".encode(), "byte")
    assert bytes_vocab.decode(bytes_vocab.encode("héllo")) == "héllo"
    with pytest.raises(ValueError, match="byte 122"):
        bytes_vocab.encode(b"z")


def test_text_files_and_bad_files(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("abcdefghij" * 100)
    corpus = load_text(path)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (900, 50, 50)
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1") * 10)
    with pytest.raises(ValueError, match="not valid UTF-8.*kind='byte'"):
        load_text(tmp_path / "latin1.txt")
    assert len(load_text(tmp_path / "latin1.txt", kind="byte").vocabulary) == 4
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_text(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_text(tmp_path)


def test_tfds_can_prepare_a_dataset_on_this_install():
    """TFDS imports more when it prepares a dataset than when it reads mock data (which the
    next test uses): the builder's code path reads `importlib_resources`, which a clean
    install of the `tfds` extra must bring."""
    import tensorflow_datasets as tfds

    assert tfds.builder_cls("tiny_shakespeare").code_path is not None


def test_tfds_text_dataset_offline_with_mock_data(monkeypatch):
    import socket

    import tensorflow_datasets as tfds

    # The mock prepares nothing, so the loader first checks that TFDS's storage answers
    # (test_tfds_offline_fails_at_once_with_the_reason covers the answer "no"); here it
    # does, and the mock serves the data.
    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    with tfds.testing.mock_data(num_examples=1):
        corpus = load_tfds("tiny_shakespeare")
    assert len(corpus.train) > 0 and len(corpus.valid) > 0 and len(corpus.test) > 0
    assert corpus.vocabulary.kind == "char"


@pytest.mark.parametrize("n,batch,seq_len", [(1001, 4, 10), (1000, 4, 10), (97, 3, 7),
                                             (50, 7, 100)])
def test_tbptt_layout(n, batch, seq_len):
    ids = np.arange(n) % 251  # position-coded stream (mod a prime to fit uint8)
    stream = np.arange(n)
    batches = TBPTTBatches(ids.astype(np.uint8), batch, seq_len)
    row_length = batches.row_length
    assert row_length == -(-(n - 1) // batch)  # the n - 1 targets in `batch` rows
    # A window never outruns a row: what would lie past it is only padding.
    seq_len = min(seq_len, row_length)
    assert batches.seq_len == seq_len
    scored = []
    for j in range(batches.batches_per_pass):
        inputs, targets, weights = batches.window(j)
        assert inputs.shape == targets.shape == weights.shape == (batch, seq_len)
        for r in range(batch):
            for t in range(seq_len):
                position = r * row_length + j * seq_len + t  # the input's place in the stream
                if weights[r, t]:
                    assert position + 1 < n and t + j * seq_len < row_length
                    assert inputs[r, t] == ids[position]
                    assert targets[r, t] == ids[position + 1]
                    scored.append(stream[position + 1])
    # Every symbol after the first is a target exactly once: nothing lost at the end.
    assert sorted(scored) == list(range(1, n))
    # A training batch is that window with a reset flag on the first batch of every pass.
    for step in range(2 * batches.batches_per_pass + 1):
        (ids_, reset), targets, weights = batches.batch(step)
        want = batches.window(step % batches.batches_per_pass)
        for got, expected in zip((ids_, targets, weights), want):
            np.testing.assert_array_equal(got, expected)
        assert reset.shape == (batch,)
        assert np.all(reset == float(step % batches.batches_per_pass == 0))


@pytest.mark.parametrize("kind", ["tbptt", "shuffled"])
@pytest.mark.parametrize("start", [0, 7, 23])
def test_tf_data_and_numpy_sources_serve_identical_batches(kind, start):
    """Both backends' pipelines serve exactly `batches.batch(step)`, from step 0 and from a
    resumed step, across pass boundaries (and reshuffles), and stop after `steps`."""
    from keras_mulrnn.backend.tensorflow.distribute import dataset
    from keras_mulrnn.data.sources import BatchSequence

    ids = (np.arange(1500) % 200).astype(np.uint8)
    batches = (TBPTTBatches(ids, 4, 25) if kind == "tbptt"
               else ShuffledWindows(ids, 4, 25, seed=5))
    steps = 3 * batches.batches_per_pass + 2
    want = [[np.asarray(a) for a in (b[0][0], b[0][1], b[1], b[2])]
            for b in (batches.batch(start + i) for i in range(steps))]
    from_numpy = [[np.asarray(a) for a in (b[0][0], b[0][1], b[1], b[2])]
                  for b in BatchSequence(batches, start, steps)]
    from_tf_data = [[a.numpy() for a in (b[0][0], b[0][1], b[1], b[2])]
                    for b in dataset(batches, start, steps)]
    assert len(from_numpy) == len(from_tf_data) == steps
    for got_numpy, got_tf, expected in zip(from_numpy, from_tf_data, want):
        for a, b, c in zip(got_numpy, got_tf, expected):
            assert a.dtype == b.dtype == c.dtype
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, c)


def test_tbptt_rejects_a_corpus_shorter_than_one_batch():
    with pytest.raises(ValueError, match="fewer than the 3201"):
        TBPTTBatches(np.zeros(100, np.uint8), 32, 100, min_batches=1, name="train")


def test_shuffled_windows_are_a_new_permutation_every_pass():
    ids = (np.arange(2000) % 200).astype(np.uint8)
    windows = ShuffledWindows(ids, batch_size=4, seq_len=10, seed=3)
    per_pass = windows.batches_per_pass  # 199 windows: 49 batches, 3 windows left over
    assert per_pass == 49
    for pass_index in range(2):
        order = windows.order(pass_index)
        assert sorted(order) == list(range(199))  # a permutation of all windows
        for position in range(per_pass):
            (x, reset), y, w = windows.batch(pass_index * per_pass + position)
            chosen = order[position * 4 : (position + 1) * 4]
            np.testing.assert_array_equal(x[:, 0], ids[chosen * 10])  # these windows
            np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # shifted by one
            assert np.all((x[:, 1:] - x[:, :-1]) % 200 == 1)  # contiguous windows
            assert np.all(reset == 1) and np.all(w == 1)
    assert list(windows.order(0)) != list(windows.order(1))
    # The same seed gives the same order; another seed another one.
    again = ShuffledWindows(ids, batch_size=4, seq_len=10, seed=3)
    other = ShuffledWindows(ids, batch_size=4, seq_len=10, seed=4)
    np.testing.assert_array_equal(again.batch(60)[0][0], windows.batch(60)[0][0])
    assert not np.array_equal(other.batch(60)[0][0], windows.batch(60)[0][0])


def test_a_byte_order_mark_is_not_a_symbol(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff".encode("utf-8") + "abc abc\n".encode("utf-8") * 50)
    corpus = load_text(path)
    assert "\ufeff" not in corpus.vocabulary.symbols
    assert len(corpus.vocabulary) == 5


def test_a_named_pipe_is_not_an_empty_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"named pipe \(FIFO\)"):
        load_text(fifo)


def test_a_one_symbol_corpus_gets_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="1 distinct symbol"):
        train(corpora.corpus_from_text("a", "a" * 5000), small_config(), tmp_path / "o",
              verbose=0)


def test_tfds_offline_fails_at_once_with_the_reason(tmp_path, monkeypatch):
    import socket

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="needs the network"):
        corpora.load_tfds("tiny_shakespeare", data_dir=str(tmp_path))
    assert time.monotonic() - started < 30


def test_odd_files_get_messages_that_name_them(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match="holds no text"):
        load_text(tmp_path / "bom.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 20)
    with pytest.raises(ValueError, match="not a Penn Treebank character file"):
        load_text(tmp_path / "latin.txt", kind="ptb")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpora.load_ptb(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="--output is empty"):
        train(small_corpus(), small_config(), "", verbose=0)


def test_a_split_too_short_for_its_rows_names_the_flag(tmp_path):
    with pytest.raises(ValueError, match=r"validation split has 3 symbols.*--eval-batch-size"):
        train(small_corpus(), small_config(valid_symbols=3, eval_batch_size=16),
              tmp_path / "o", verbose=0)
    with pytest.raises(ValueError, match=r"--test-batch-size"):
        train(small_corpus(), small_config(test_batch_size=100_000), tmp_path / "o",
              verbose=0)


def test_streamed_bytes_keep_characters_whole():
    from keras_mulrnn.data import Vocabulary

    vocabulary = Vocabulary.from_data("déjà".encode(), "byte")
    ids = vocabulary.encode("déjà".encode())
    decode = vocabulary.incremental_decoder()
    pieces = [decode(ids[:2]), decode(ids[2:4]), decode(ids[4:], final=True)]
    assert "".join(pieces) == "déjà" and "\ufffd" not in "".join(pieces)
