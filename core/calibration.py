"""Calibration of P(fake): temperature scaling (or Platt scaling) fitted on validation scores, the expected
calibration error and the reliability table behind a reliability diagram.

A card's `calibration` {"method": "temperature", "temperature": T} makes `Detector` report sigmoid(z / T) for a
fake logit z; T > 1 softens an over-confident model, T < 1 sharpens a timid one. {"method": "platt",
"temperature": T, "bias": b} reports sigmoid(z / T + b): the bias also moves a model whose scores lean to one
class, which a temperature cannot. Ranking (AUC) never changes (T > 0).

>>> t = fit_temperature(p_val, y_val)            # P(fake) and labels of the validation split
>>> p_cal = apply_temperature(p_test, t)
>>> expected_calibration_error(p_cal, y_test)
"""

from __future__ import annotations

import numpy as np

__all__ = ["logit", "apply_temperature", "fit_temperature", "fit_platt", "fit_calibration", "apply_calibration",
           "expected_calibration_error", "reliability_table"]

METHODS = ("temperature", "platt")

_EPS = 1e-6


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(p, temperature: float) -> np.ndarray:
    return apply_calibration(p, {"method": "temperature", "temperature": temperature})


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


def fit_platt(p, y, iters: int = 100) -> tuple[float, float]:
    """(T, b) of sigmoid(z / T + b) that minimise the negative log-likelihood of the labels (Newton's method on the
    logistic regression of the labels on the fake logit z). Needs both classes and scores that rank fakes above
    reals (T > 0): a model that ranks them the wrong way is not calibrated by flipping it."""
    y = np.asarray(y, float)
    if not 0 < y.sum() < len(y):
        raise ValueError("Platt scaling needs validation scores of both classes")
    x = np.stack([logit(p), np.ones(len(y))], axis=1)
    w = np.zeros(2)
    for _ in range(iters):
        q = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (q - y)
        hess = (x * (q * (1 - q))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    if not np.all(np.isfinite(w)) or w[0] <= 1 / 100:
        raise ValueError("Platt scaling found no positive slope: these scores do not rank fakes above reals")
    return round(float(1.0 / w[0]), 4), round(float(w[1]), 4)


def fit_calibration(p, y, method: str = "temperature") -> dict:
    """The card's `calibration` entries {method, temperature[, bias]} fitted on validation scores."""
    if method == "temperature":
        return {"method": "temperature", "temperature": fit_temperature(p, y)}
    if method == "platt":
        t, b = fit_platt(p, y)
        return {"method": "platt", "temperature": t, "bias": b}
    raise ValueError(f"unknown calibration method {method!r} (one of: {', '.join(METHODS)})")


def apply_calibration(p, calibration: dict) -> np.ndarray:
    """P(fake) as a card with this `calibration` reports it (empty: unchanged)."""
    if not calibration:
        return np.asarray(p, dtype=np.float64)
    z = logit(p) / float(calibration["temperature"]) + float(calibration.get("bias", 0.0))
    return 1.0 / (1.0 + np.exp(-z))


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
