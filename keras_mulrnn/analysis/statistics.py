"""Paired comparisons for the study: per-seed differences, their interval, a paired t-test,
Holm's correction over a family of tests, and an effect size.

Runs of two arms with the same seed share their data order and initialization scheme, so
they pair up: the test is on the per-seed differences `d_i = a_i − b_i` (negative favours
`a`), with `n − 1` degrees of freedom.
"""

import math

import numpy as np


def paired_test(differences):
    """Mean, 95% t-interval, t statistic, two-sided p-value and effect size `d_z` (the mean
    difference in standard deviations of the differences) of paired `differences`.

    With one difference, or differences that are all equal, only the mean is defined; the
    other values are None.
    """
    from scipy import stats

    d = np.asarray(differences, np.float64)
    n = len(d)
    result = {"n": n, "mean": float(d.mean()) if n else None, "ci95_low": None,
              "ci95_high": None, "t": None, "p": None, "effect_size": None}
    if n < 2:
        return result
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return result
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    t = result["mean"] / se
    result.update(ci95_low=result["mean"] - half, ci95_high=result["mean"] + half, t=t,
                  p=float(2 * stats.t.sf(abs(t), n - 1)), effect_size=result["mean"] / sd)
    return result


def holm(p_values):
    """Holm's step-down adjustment of a family of p-values (None entries are left out and
    stay None): the `i`-th smallest of `m` is multiplied by `m − i`, made monotone, capped
    at 1. A test is significant at level α when its adjusted p is ≤ α."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[index] = running
    return adjusted


def welch_test(a, b):
    """The difference of the means of two independent samples, `mean(b) − mean(a)`, with its
    95% interval, t statistic and two-sided p-value by Welch's test (unequal variances; the
    Welch–Satterthwaite degrees of freedom): for an effect measured at two scales, whose
    seeds do not pair across them. None where a sample has fewer than two values or both
    have no spread."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    result = {"difference": float(b.mean() - a.mean()) if len(a) and len(b) else None,
              "ci95_low": None, "ci95_high": None, "t": None, "df": None, "p": None}
    if len(a) < 2 or len(b) < 2:
        return result
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return result
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    t = result["difference"] / se
    result.update(ci95_low=result["difference"] - half, ci95_high=result["difference"] + half,
                  t=t, df=float(df), p=float(2 * stats.t.sf(abs(t), df)))
    return result
