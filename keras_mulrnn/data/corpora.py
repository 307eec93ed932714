"""Corpora for character language modelling, all loaded into one interface: `Corpus`.

Each split is one compact integer array of symbol ids (uint8 for up to 256 symbols), never a
Python string, so enwik8's 100M bytes take 100 MB. Sources (docs/DESIGN.md, "Data"): enwik8
(downloaded or a local file), Penn Treebank characters, any text or byte file, TFDS text
datasets, and the small corpus embedded in the package (`load_embedded`), which needs no
file and no network.
"""

import dataclasses
import errno
import hashlib
import logging
import os
import socket
import stat
import warnings
import zipfile

import numpy as np

from keras_mulrnn import memory
from keras_mulrnn.data.vocabulary import Vocabulary

ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"
ENWIK8_SIZE = 100_000_000
ENWIK8_SPLIT = (90_000_000, 5_000_000, 5_000_000)
DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)
PTB_FILES = {split: f"ptb.char.{split}.txt" for split in ("train", "valid", "test")}
# Tiny Shakespeare (40,000 lines of Shakespeare's plays, 1.1 MB; public domain; the corpus of
# Karpathy's char-rnn, 2015), shipped in the package for runs with no data at hand.
EMBEDDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embedded",
                        "tinyshakespeare.txt")
KINDS = tuple(memory.BYTES_PER_FILE_BYTE)  # char, byte, ptb


@dataclasses.dataclass
class Corpus:
    """Three splits of symbol ids and the vocabulary that maps them."""

    name: str
    vocabulary: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def split(self, name):
        if name not in ("train", "valid", "test"):
            raise ValueError(
                f"Invalid split {name!r}. Allowed: 'train', 'valid', 'test'."
            )
        return getattr(self, name)

    def fingerprint(self):
        """A digest of the vocabulary and of every split: equal exactly when the data is."""
        digests = {"vocabulary": hashlib.sha256(
            repr(self.vocabulary.get_config()).encode()).hexdigest()}
        for split in ("train", "valid", "test"):
            ids = np.ascontiguousarray(getattr(self, split))
            digests[split] = hashlib.sha256(ids.tobytes()).hexdigest() + f":{len(ids)}"
        return digests


def file_mode(path, what):
    """`os.stat(path).st_mode`, or an error about the `what` at `path` that says why it
    cannot be followed (missing, a dangling link, a loop of links, ...)."""
    try:
        return os.stat(path).st_mode
    except OSError as error:
        raise _cannot_open(path, what, error) from None


def _cannot_open(path, what, error):
    """The error for a `path` that `os.stat` could not follow, saying why."""
    if error.errno == errno.ENOENT and os.path.islink(path):
        return FileNotFoundError(f"The {what} {path!r} is a symbolic link to "
                                 f"{os.readlink(path)!r}, which does not exist. Check the link.")
    if error.errno == errno.ENOENT:
        return FileNotFoundError(f"The {what} {path!r} does not exist. Check the path.")
    if error.errno == errno.ELOOP:
        return OSError(f"The {what} {path!r} is a loop of symbolic links that leads to no "
                       f"file. Check the links.")
    return OSError(f"The {what} {path!r} cannot be opened: {error.strerror}. Check the path.")


def check_file(path, what="data file", kind=None, holds="text"):
    """Raises a clear error unless `path` is a readable, non-empty regular file (and, given
    the `kind` of corpus it holds, one that fits in memory once read); `holds` says what an
    empty one should have held."""
    path = os.fspath(path)
    mode = file_mode(path, what)
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(
            f"The {what} {path!r} is a directory; a file is expected here."
        )
    if not stat.S_ISREG(mode):
        what_it_is = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket"
                      if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode)
                      or stat.S_ISBLK(mode) else "not a regular file")
        raise ValueError(
            f"The {what} {path!r} is {what_it_is}; it must be a regular file whose size is "
            f"known before reading. Save the data to a file first."
        )
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"The {what} {path!r} is empty. Give a file with {holds} in it.")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"The {what} {path!r} cannot be read (permission denied).")
    if kind in KINDS:
        memory.check_corpus_file(path, what, size, kind)
    return path


def split_by_fractions(ids, fractions=DEFAULT_FRACTIONS):
    """Contiguous train/valid/test slices of `ids` in the given fractions (views, no copy)."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"Invalid value for argument `fractions`: received {fractions!r}. Allowed: three "
            f"positive fractions (train, valid, test) that sum to 1."
        )
    n_train = int(round(len(ids) * fractions[0]))
    n_valid = int(round(len(ids) * fractions[1]))
    return ids[:n_train], ids[n_train : n_train + n_valid], ids[n_train + n_valid :]


def corpus_from_bytes(name, data, fractions=DEFAULT_FRACTIONS):
    """A byte-level corpus from raw bytes."""
    vocabulary = Vocabulary.from_data(data, "byte")
    ids = vocabulary.encode(data, what=name)
    return Corpus(name, vocabulary, *split_by_fractions(ids, fractions))


def corpus_from_text(name, text, fractions=DEFAULT_FRACTIONS):
    """A character-level corpus from a str."""
    vocabulary = Vocabulary.from_data(text, "char")
    ids = vocabulary.encode(text, what=name)
    return Corpus(name, vocabulary, *split_by_fractions(ids, fractions))


def load_text(path, kind="char", fractions=DEFAULT_FRACTIONS):
    """Any text (`kind="char"`, UTF-8; a leading byte-order mark is not a symbol), byte
    (`kind="byte"`) or Penn Treebank character-format (`kind="ptb"`: space-separated
    symbols, one symbol per line break) file, split by fractions."""
    if kind not in KINDS:
        raise ValueError(
            f"Invalid value for argument `kind`: received kind={kind!r}. Allowed: {KINDS}."
        )
    path = check_file(path, kind=kind)
    if kind == "ptb":
        tokens = read_ptb_tokens(path)
        vocabulary = Vocabulary.from_data(tokens, "char")
        ids = vocabulary.encode(tokens, what=os.path.basename(path))
        return Corpus(os.path.basename(path), vocabulary, *split_by_fractions(ids, fractions))
    with open(path, "rb") as handle:
        data = handle.read()
    name = os.path.basename(path)
    if kind == "byte":
        return corpus_from_bytes(name, data, fractions)
    try:
        text = data.decode("utf-8-sig")
        if not text:
            raise ValueError(f"{path!r} holds no text (only a byte-order mark). Give a file "
                             f"with text in it.")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path!r} is not valid UTF-8 (byte {error.start}: {error.reason}). Read it as "
            f"bytes instead (kind='byte', or --kind byte in the scripts)."
        ) from None
    return corpus_from_text(name, text, fractions)


def load_embedded(fractions=DEFAULT_FRACTIONS):
    """The corpus embedded in the package (`EMBEDDED`: Tiny Shakespeare, public domain),
    read as characters and split by fractions."""
    corpus = load_text(EMBEDDED, "char", fractions)
    corpus.name = "tinyshakespeare (embedded)"
    return corpus


def load_enwik8(path=None, cache_dir=None):
    """enwik8: 100,000,000 bytes, byte vocabulary, 90M / 5M / 5M (docs/DESIGN.md, "Data").

    Args:
        path: a local `enwik8` or `enwik8.zip`; any other byte file is accepted with a warning
            and split 90% / 5% / 5%. Without it the zip is downloaded once into the Keras cache.
        cache_dir: where to cache the download (default `~/.keras`).
    """
    if path is None:
        path = _download_enwik8(cache_dir)
    path = check_file(path, kind="byte")
    data = _read_maybe_zipped(path)
    if len(data) != ENWIK8_SIZE:
        warnings.warn(
            f"{path!r} holds {len(data):,} bytes, not enwik8's {ENWIK8_SIZE:,}: it is not "
            f"enwik8, so it is split {DEFAULT_FRACTIONS} by fraction and the results are not "
            f"comparable to published enwik8 figures.",
            stacklevel=2,
        )
        return corpus_from_bytes(os.path.basename(path), data, DEFAULT_FRACTIONS)
    vocabulary = Vocabulary.from_data(data, "byte")
    ids = vocabulary.encode(data, what="enwik8")
    n_train, n_valid, _ = ENWIK8_SPLIT
    return Corpus(
        "enwik8", vocabulary, ids[:n_train], ids[n_train : n_train + n_valid],
        ids[n_train + n_valid :],
    )


def _read_maybe_zipped(path):
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            return handle.read()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise ValueError(
                    f"{path!r} holds {len(members)} files; an enwik8.zip holds one. Pass the "
                    f"unzipped file instead."
                )
            return archive.read(members[0])  # checks the CRC: a corrupt member raises
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path!r} is a damaged zip file ({error}).") from None


def _download_enwik8(cache_dir):
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # offline, fail in seconds rather than hang
    try:
        path = keras.utils.get_file(
            "enwik8.zip", origin=ENWIK8_URL, cache_dir=cache_dir, cache_subdir="datasets"
        )
    except Exception as error:
        raise ConnectionError(
            f"Could not download enwik8 from {ENWIK8_URL} ({type(error).__name__}: {error}). "
            f"Without a network, download enwik8.zip elsewhere and pass it with "
            f"--data PATH/enwik8.zip (or load_enwik8(path=...))."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    # A partial or corrupt download must never pass for the real file: check it, and remove
    # it from the cache if it is wrong so that the next run downloads it again.
    try:
        size = _zip_member_size(path)
    except (zipfile.BadZipFile, ValueError):
        size = None
    if size != ENWIK8_SIZE:
        os.remove(path)
        raise ValueError(
            f"The downloaded {path!r} is incomplete or corrupt (unzipped size {size}, "
            f"expected {ENWIK8_SIZE:,}); it was removed. Run again to download it anew."
        )
    return path


def _zip_member_size(path):
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) != 1:
            raise ValueError("not a single-file zip")
        return members[0].file_size


def read_ptb_tokens(path):
    """The symbols of a Mikolov-format PTB character file: space-separated tokens (`_` is a
    word boundary) and one `"\\n"` symbol per line break."""
    path = check_file(path, "Penn Treebank file")
    tokens = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line in handle:
                tokens.extend(line.split())
                tokens.append("\n")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path!r} is not valid UTF-8 (byte {error.start}: {error.reason}), so it is not "
            f"a Penn Treebank character file (space-separated symbols, one sentence a line)."
        ) from None
    word = next((token for token in tokens if len(token) > 1), None)
    if word is not None:
        raise ValueError(
            f"{path!r} holds {word!r}, more than one character between spaces, so it is not a "
            f"Penn Treebank character file (one character per symbol: 'a e r _ b a n k'). "
            f"Read a plain text file with --corpus text.")
    return tokens


def load_ptb(directory):
    """Penn Treebank characters from `directory/ptb.char.{train,valid,test}.txt`."""
    directory = os.fspath(directory)
    try:
        mode = os.stat(directory).st_mode
    except OSError as error:
        if error.errno == errno.ENOENT and not os.path.islink(directory):
            raise FileNotFoundError(
                f"The Penn Treebank directory {directory!r} does not exist. Pass the "
                f"directory that holds {', '.join(PTB_FILES.values())}."
            ) from None
        raise _cannot_open(directory, "Penn Treebank directory", error) from None
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(
            f"{directory!r} is not a directory. Pass the directory that holds "
            f"{', '.join(PTB_FILES.values())}."
        )
    splits = {}
    for split, filename in PTB_FILES.items():
        path = os.path.join(directory, filename)
        if not os.path.lexists(path):  # (a link that leads nowhere: `check_file` says so)
            raise FileNotFoundError(
                f"{path!r} is missing: the Penn Treebank character corpus needs "
                f"{', '.join(PTB_FILES.values())} in {directory!r}."
            )
        splits[split] = read_ptb_tokens(path)
    vocabulary = Vocabulary.from_data(
        [token for tokens in splits.values() for token in tokens], "char"
    )
    return Corpus(
        "ptb_char", vocabulary,
        *(vocabulary.encode(splits[s], what=PTB_FILES[s]) for s in ("train", "valid", "test")),
    )


def load_tfds(name, kind="char", splits=("train", "validation", "test"), data_dir=None):
    """A TFDS text dataset (e.g. "tiny_shakespeare"): each split's texts joined by newlines."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "TFDS datasets need tensorflow-datasets: pip install -e '.[tfds]'."
        ) from None
    _check_tfds_reachable(tfds, name, data_dir)
    texts = []
    for split in splits:
        try:
            dataset = tfds.load(name, split=split, data_dir=data_dir)
        except Exception as error:
            if "connection" in type(error).__name__.lower():
                raise ConnectionError(
                    f"TFDS could not download {name!r}: preparing a TFDS dataset needs the "
                    f"network once ({_first_line(error)}). Run once where the network can be "
                    f"reached (TFDS keeps the prepared dataset in its data directory, "
                    f"~/tensorflow_datasets), or train on a local file with --data."
                ) from None
            raise ValueError(
                f"Could not load TFDS dataset {name!r}, split {split!r} "
                f"({type(error).__name__}: {_first_line(error)}). Offline, TFDS can only read "
                f"datasets already prepared in its data directory."
            ) from None
        parts = [example["text"].numpy() for example in dataset]
        texts.append(b"\n".join(parts))
    if kind == "byte":
        data = b"".join(texts)
        vocabulary = Vocabulary.from_data(data, "byte")
    else:
        texts = [text.decode("utf-8") for text in texts]
        vocabulary = Vocabulary.from_data("".join(texts), "char")
    return Corpus(name, vocabulary, *(vocabulary.encode(t, what=name) for t in texts))


def _check_tfds_reachable(tfds, name, data_dir):
    """Fails at once, rather than after TFDS's minutes of retries, when a dataset that is
    not prepared yet would have to be downloaded and the network cannot be reached."""
    quiet = logging.getLogger("absl")  # TFDS logs what it does not find, which is expected
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # an unknown name and the like: tfds.load says what is wrong
        return
    finally:
        quiet.setLevel(level)
    if prepared:
        return
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    try:
        # TFDS's own storage, where it looks first.
        socket.create_connection(("storage.googleapis.com", 443)).close()
    except OSError as error:
        raise ConnectionError(
            f"TFDS dataset {name!r} is not prepared here, and preparing it needs the network, "
            f"which cannot be reached ({error}). Run once where it can (TFDS keeps the "
            f"prepared dataset in its data directory, ~/tensorflow_datasets), or train on a "
            f"local file with --data."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _first_line(error):
    text = str(error).strip().splitlines()
    return (text[0][:300] if text else type(error).__name__)


CORPORA = ("text", "enwik8", "ptb", "tfds", "embedded")


def load_corpus(corpus, data=None, tfds_name=None, kind="char"):
    """One entry point for the command lines: `corpus` is "text" (a file at `data`, read as
    `kind`), "enwik8" (`data` or the download), "ptb" (the directory `data`), "tfds" (the
    dataset `tfds_name`) or "embedded" (the package's own small corpus)."""
    if corpus == "embedded":
        return load_embedded()
    if corpus == "tfds":
        if not tfds_name:
            raise ValueError("The TFDS corpus needs a dataset name (--tfds NAME).")
        return load_tfds(tfds_name, kind)
    if corpus == "enwik8":
        return load_enwik8(data)
    if corpus not in CORPORA:
        raise ValueError(f"Invalid corpus {corpus!r}. Allowed: {CORPORA}.")
    if not data:
        raise ValueError(f"The {corpus} corpus needs a path (--data PATH).")
    return load_ptb(data) if corpus == "ptb" else load_text(data, kind)
