"""The mapping between symbols and integer ids, saved with every model.

A vocabulary is either *byte* (symbols are byte values, the text is read as raw bytes, as for
enwik8) or *char* (symbols are single Unicode characters, as in text files and in Penn
Treebank's space-separated character files). Ids are
assigned in sorted symbol order. A symbol outside the vocabulary is an error that names it:
never a silent wrong index.
"""

import codecs

import numpy as np

KINDS = ("byte", "char")


class Vocabulary:
    """Symbols ↔ ids.

    Args:
        symbols: the distinct symbols (ints 0..255 for `kind="byte"`, one-character strings
            for "char").
        kind: `"byte"` or `"char"`.
    """

    def __init__(self, symbols, kind="char"):
        if kind not in KINDS:
            raise ValueError(
                f"Invalid value for argument `kind`: received kind={kind!r}. Allowed: {KINDS}."
            )
        symbols = set(symbols)
        if not symbols:
            raise ValueError("A vocabulary needs at least one symbol; the data was empty.")
        if kind == "byte" and not all(isinstance(s, int) and not isinstance(s, bool)
                                      and 0 <= s < 256 for s in symbols):
            raise ValueError("A byte vocabulary holds integers in [0, 255].")
        if kind == "char":
            wrong = sorted((s for s in symbols if not (isinstance(s, str) and len(s) == 1)),
                           key=repr)
            if wrong:
                raise ValueError(f"A char vocabulary holds single characters, not "
                                 f"{wrong[0]!r}.")
        symbols = sorted(symbols)
        self.kind = kind
        self.symbols = symbols
        self._ids = {symbol: index for index, symbol in enumerate(symbols)}
        if kind == "byte":
            # Byte ids come from one table gather over the whole corpus, straight into the
            # compact id type (no int32 intermediate: enwik8 would need 400 MB for it).
            self._known = np.zeros(256, dtype=bool)
            self._known[symbols] = True
            self._table = np.zeros(256, dtype=self.dtype)
            self._table[symbols] = np.arange(len(symbols))

    def __len__(self):
        return len(self.symbols)

    def __eq__(self, other):
        return (
            isinstance(other, Vocabulary)
            and self.kind == other.kind
            and self.symbols == other.symbols
        )

    @classmethod
    def from_data(cls, data, kind):
        """The vocabulary of `data`: bytes (or a uint8 array) for "byte", str or tokens for
        "char"."""
        if kind == "byte":
            present = np.nonzero(_byte_counts(np.frombuffer(data, dtype=np.uint8)))[0]
            return cls([int(b) for b in present], "byte")
        return cls(set(data), kind)

    @property
    def dtype(self):
        """The smallest unsigned integer type that holds every id (the corpus is stored so)."""
        return np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.int32

    def encode(self, data, what="the data"):
        """Ids of `data` (bytes for "byte"; str or sequence of tokens for "char")."""
        if self.kind == "byte":
            if isinstance(data, str):
                # A command line holds undecodable bytes as lone surrogates (PEP 383).
                data = data.encode("utf-8", "surrogateescape")
            raw = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data,
                                dtype=np.uint8)
            present = _byte_counts(raw) > 0
            unknown = np.nonzero(present & ~self._known)[0]
            if unknown.size:
                position = int(np.flatnonzero(np.isin(raw, unknown))[0])
                raise ValueError(
                    f"{what} holds byte {int(raw[position])} (at position {position}) that "
                    f"the vocabulary never saw ({len(self)} known bytes). Use text made of "
                    f"known symbols, or build the vocabulary from data that includes it."
                )
            return self._table[raw]
        try:
            return np.fromiter((self._ids[s] for s in data), dtype=self.dtype, count=len(data))
        except KeyError as error:
            symbol = error.args[0]
            raise ValueError(
                f"{what} holds the symbol {symbol!r} that the vocabulary never saw "
                f"({len(self)} known symbols). Use text made of known symbols, or build the "
                f"vocabulary from data that includes it."
            ) from None

    def decode(self, ids):
        """The text of `ids`: str (bytes decoded as UTF-8, invalid sequences replaced)."""
        if self.kind == "byte":
            return bytes(self.symbols[int(i)] for i in ids).decode("utf-8", errors="replace")
        return "".join(self.symbols[int(i)] for i in ids)

    def incremental_decoder(self):
        """`decode(ids, final=False)` for a text that arrives in pieces: bytes of a UTF-8
        character split between two pieces are held back until the character is whole."""
        if self.kind != "byte":
            return lambda ids, final=False: self.decode(ids)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda ids, final=False: decoder.decode(
            bytes(self.symbols[int(i)] for i in ids), final=final)

    def get_config(self):
        return {"kind": self.kind, "symbols": list(self.symbols)}

    @classmethod
    def from_config(cls, config):
        return cls(config["symbols"], config["kind"])


def _byte_counts(raw, chunk=1 << 24):
    """How often each byte value occurs, counted in chunks: `np.bincount` converts its input
    to int64, which for enwik8 would take 800 MB at once."""
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(raw), chunk):
        counts += np.bincount(raw[start : start + chunk], minlength=256)
    return counts
