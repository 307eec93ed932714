"""keras-tuner searches over factorization rank and sharing: `search.py`, `report.py`."""

TUNERS = ("random", "bayesian", "hyperband")
