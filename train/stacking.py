"""Choosing how the ensemble combines its members, on validation files only.

The rules are `core.ensemble`'s: `mean`, `max` and `logistic` (a stacked ensemble). The logistic rule's weights are
fitted here: a weighted logistic regression on each member's logit P(fake), weights bounded at zero (a model may
be ignored, never counted backwards), a small L2 penalty, and sample weights that give every family of files
(validation videos, GAN faces, face-swap crops, other images) the same total weight, split evenly between its reals
and fakes, so that 400 crops do not drown 15 videos. Its score for the selection is measured out of fold (grouped
folds: a group's files are never fitted and scored together), so that it does not beat the fixed rules merely by
having seen the files it is scored on.

    >>> x = np.array([[-2.0, 0.0], [2.0, 0.0], [-1.5, 0.1], [1.5, -0.1]]); y = np.array([0, 1, 0, 1])
    >>> w, b = fit_logistic(x, y, np.ones(4)); bool(w[0] > 1.0 and w[1] < 0.1)
    True
"""

from __future__ import annotations

import hashlib

import numpy as np

from core.ensemble import COMBINERS, combine_probabilities, logit

__all__ = ["fit_logistic", "family_weights", "fold_of", "combined", "out_of_fold"]

L2 = 0.01


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """(weights >= 0, bias) minimising the w-weighted mean log loss of sigmoid(bias + x @ weights) plus l2 * |weights|^2."""
    from scipy.optimize import minimize

    x, y, w = np.asarray(x, float), np.asarray(y, float), np.asarray(w, float)
    w = w / w.sum()

    def loss(theta):
        z = x @ theta[1:] + theta[0]
        # log(1 + e^z) - y z, computed stably; its gradient is (sigmoid(z) - y)
        ll = np.logaddexp(0, z) - y * z
        g = (1 / (1 + np.exp(-z)) - y) * w
        grad = np.r_[g.sum(), x.T @ g + 2 * l2 * theta[1:]]
        return float((w * ll).sum() + l2 * (theta[1:] ** 2).sum()), grad

    k = x.shape[1]
    res = minimize(loss, np.r_[0.0, np.full(k, 1.0 / k)], jac=True, method="L-BFGS-B",
                   bounds=[(None, None)] + [(0.0, None)] * k)
    return np.maximum(res.x[1:], 0.0), float(res.x[0])


def family_weights(families: list[str], y: np.ndarray) -> np.ndarray:
    """Sample weights: each family the same total, half to its reals and half to its fakes (all to one class
    where the family has only one)."""
    y = np.asarray(y, int)
    fams = np.asarray(families)
    w = np.zeros(len(y))
    for fam in set(families):
        in_fam = fams == fam
        classes = [c for c in (0, 1) if (in_fam & (y == c)).any()]
        for c in classes:
            sel = in_fam & (y == c)
            w[sel] = 1.0 / len(classes) / sel.sum()
    return w


def fold_of(group: str, k: int) -> int:
    return int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) % k


def combined(probs: np.ndarray, members: list[str], cards: dict, spec: dict) -> np.ndarray:
    """The combined P(fake) of each row of `probs` (one column per member) under the rule `spec`."""
    return np.array([combine_probabilities(dict(zip(members, row)), cards, spec) for row in probs])


def out_of_fold(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, groups: list[str], members: list[str],
                cards: dict, rule: str, k: int = 5) -> tuple[np.ndarray, dict]:
    """(P(fake) of every row, the rule's spec fitted on all rows). For `logistic` each row's P(fake) comes from
    a fit on the other folds; `mean` and `max` have nothing to fit."""
    if rule not in COMBINERS:
        raise ValueError(f"unknown rule {rule}")
    if rule != "logistic":
        spec = {"type": rule}
        return combined(probs, members, cards, spec), spec
    x = logit(probs)
    folds = np.array([fold_of(g, k) for g in groups])
    out = np.full(len(y), np.nan)
    for f in range(k):
        test, train = folds == f, folds != f
        if not test.any():
            continue
        if len(set(y[train])) < 2:
            raise ValueError("a fold's training rows hold one class only")
        wt, b = fit_logistic(x[train], y[train], weights[train])
        out[test] = 1 / (1 + np.exp(-(x[test] @ wt + b)))
    wt, b = fit_logistic(x, y, weights)
    return out, {"type": "logistic", "weights": {m: round(float(v), 4) for m, v in zip(members, wt)},
                 "bias": round(b, 4), "features": "logit of each member's calibrated P(fake)",
                 "l2": L2, "folds": k}
