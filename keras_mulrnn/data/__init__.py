"""Corpora, vocabularies and truncated-BPTT batches for character language modelling."""

from keras_mulrnn.data.batches import ShuffledWindows, TBPTTBatches
from keras_mulrnn.data.corpora import (
    CORPORA,
    KINDS,
    Corpus,
    load_corpus,
    load_embedded,
    load_enwik8,
    load_ptb,
    load_text,
    load_tfds,
    split_by_fractions,
)
from keras_mulrnn.data.vocabulary import Vocabulary

__all__ = [
    "Corpus",
    "Vocabulary",
    "TBPTTBatches",
    "ShuffledWindows",
    "load_corpus",
    "load_embedded",
    "CORPORA",
    "KINDS",
    "load_enwik8",
    "load_ptb",
    "load_text",
    "load_tfds",
    "split_by_fractions",
]
