"""Aggregation and the ensemble verdict: small pure functions, policy as data.

Per model: per-face P(fake); per track the mean over the track's faces (a sequence model scores the whole track
at once). Across models: the weighted mean probability and a majority vote. The verdict band comes from the mean
and the ensemble thresholds (weighted mean of the members' card thresholds unless the policy sets them); when the
majority vote contradicts the band, the verdict is `uncertain`. A failed model is reported and left out; it
never contributes a made-up score.

>>> combine({"a": 0.9, "b": 0.8}, {"a": CARD_A, "b": CARD_B})["verdict"]
'fake'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VERDICTS", "band", "vote", "aggregate_track", "ensemble_thresholds", "combine", "EnsembleResult"]

VERDICTS = ("real", "uncertain", "fake", "no_face", "error")


def band(p: float, real_below: float, fake_above: float) -> str:
    if p < real_below:
        return "real"
    if p >= fake_above:
        return "fake"
    return "uncertain"


def vote(p: float, decision: float) -> str:
    return "fake" if p >= decision else "real"


def aggregate_track(face_probs: list[float]) -> float:
    """A frame model's score for a track: the mean of its per-face probabilities."""
    return float(np.mean(face_probs))


def ensemble_thresholds(cards: dict, members: list[str], policy: dict | None = None) -> dict:
    """Thresholds of the ensemble: from the policy if it sets them for exactly these members (they were chosen on
    validation data for that ensemble), else the weight-averaged card thresholds of the members."""
    policy = policy or {}
    same = set(policy.get("models") or members) == set(members)
    if same and all(k in policy for k in ("real_below", "fake_above", "decision")):
        return {k: float(policy[k]) for k in ("real_below", "decision", "fake_above")}
    w = np.array([_weight(cards[m]) for m in members], dtype=float)
    out = {}
    for k, default in (("real_below", 0.35), ("decision", 0.5), ("fake_above", 0.65)):
        vals = np.array([cards[m].thresholds.get(k, default) for m in members], dtype=float)
        out[k] = float((vals * w).sum() / w.sum()) if len(members) and w.sum() > 0 else default
    return out


def _weight(card) -> float:
    return float((card.ensemble or {}).get("weight", 1.0))


@dataclass
class EnsembleResult:
    fake_probability: float | None
    verdict: str
    votes: dict
    thresholds: dict
    members: list[str]
    reason: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def combine(model_probs: dict[str, float | None], cards: dict, policy: dict | None = None) -> dict:
    """Ensemble of per-model probabilities (None = that model failed). Returns fake_probability, verdict, votes
    {fake, real}, thresholds, members and a one-line reason."""
    members = [m for m, p in model_probs.items() if p is not None and np.isfinite(p)]
    if not members:
        return EnsembleResult(None, "error", {"fake": 0, "real": 0}, {}, [],
                              "every model failed on this input").to_dict()
    th = ensemble_thresholds(cards, members, policy)
    w = np.array([_weight(cards[m]) for m in members], dtype=float)
    p = np.array([model_probs[m] for m in members], dtype=float)
    mean = float((p * w).sum() / w.sum())
    fake_votes = sum(1 for m in members if vote(model_probs[m], cards[m].thresholds.get("decision", 0.5)) == "fake")
    real_votes = len(members) - fake_votes
    verdict = band(mean, th["real_below"], th["fake_above"])
    reason = f"mean P(fake) {mean:.2f} is in the {verdict} band"
    if verdict == "fake" and real_votes > fake_votes:
        verdict, reason = "uncertain", f"mean P(fake) {mean:.2f} says fake but {real_votes} of {len(members)} models vote real"
    elif verdict == "real" and fake_votes > real_votes:
        verdict, reason = "uncertain", f"mean P(fake) {mean:.2f} says real but {fake_votes} of {len(members)} models vote fake"
    return EnsembleResult(round(mean, 6), verdict, {"fake": fake_votes, "real": real_votes}, th, members,
                          reason).to_dict()
