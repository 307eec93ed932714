"""Bits per character (`lm/evaluation.py`): ids outside the vocabulary are refused."""

import numpy as np
import pytest

import keras_mulrnn as km

from helpers import tiny_model


def test_evaluation_refuses_ids_outside_the_vocabulary():
    model = tiny_model()
    for ids, message in ((np.array([1, 2, 500]), "outside the model's vocabulary"),
                         (np.array([1, -2, 3]), "outside the model's vocabulary"),
                         (np.array([1.0, 2.0]), "1-D array of integers")):
        with pytest.raises(ValueError, match=message):
            km.evaluate_bpc(model, ids)
