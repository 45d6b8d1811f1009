"""Calibration of P(fake): temperature scaling fitted on validation scores, the expected calibration error and the
reliability table behind a reliability diagram.

A card's `calibration` {"method": "temperature", "temperature": T} makes `Detector` report sigmoid(z / T) for a
fake logit z; T > 1 softens an over-confident model, T < 1 sharpens a timid one. Ranking (AUC) never changes.

>>> t = fit_temperature(p_val, y_val)            # P(fake) and labels of the validation split
>>> p_cal = apply_temperature(p_test, t)
>>> expected_calibration_error(p_cal, y_test)
"""

from __future__ import annotations

import numpy as np

__all__ = ["logit", "apply_temperature", "fit_temperature", "expected_calibration_error", "reliability_table"]

_EPS = 1e-6


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(p, temperature: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logit(p) / float(temperature)))


def _nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    s = z / t
    # log(1 + exp(-s)) for fakes, log(1 + exp(s)) for reals, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -s, s))))


def fit_temperature(p, y, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature that minimises the negative log-likelihood of the labels (golden-section search on log T,
    which is unimodal for this one-parameter family). Needs both classes."""
    y = np.asarray(y, int)
    if not 0 < y.sum() < len(y):
        raise ValueError("temperature scaling needs validation scores of both classes")
    z = logit(p)
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(z, y, np.exp(c)), _nll(z, y, np.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(z, y, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(z, y, np.exp(d))
    return round(float(np.exp((a + b) / 2)), 4)


def reliability_table(p, y, bins: int = 10) -> list[dict]:
    """Equal-width bins of P(fake): for each non-empty bin its range, count, mean predicted P(fake) and the
    observed fraction of fakes (the points of a reliability diagram)."""
    p = np.asarray(p, float)
    y = np.asarray(y, int)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"lo": round(float(edges[b]), 2), "hi": round(float(edges[b + 1]), 2), "n": int(m.sum()),
                         "mean_p": round(float(p[m].mean()), 4), "frac_fake": round(float(y[m].mean()), 4)})
    return rows


def expected_calibration_error(p, y, bins: int = 10) -> float:
    """Sum over equal-width bins of (bin share) x |mean P(fake) - fraction of fakes|."""
    n = len(np.asarray(p))
    if n == 0:
        raise ValueError("no scores")
    return round(float(sum(r["n"] / n * abs(r["mean_p"] - r["frac_fake"]) for r in reliability_table(p, y, bins))),
                 4)
