"""Aggregation and the ensemble verdict: small pure functions, policy as data.

Per model: per-face P(fake); per track the mean over the track's faces (a sequence model scores the whole track
at once). Across models: one combined probability and a majority vote. The combination is the policy's `combiner`
when the members are exactly the policy's models (it was chosen and fitted on validation data for them):

- `mean`: the weighted mean P(fake) (weights in the cards); also the rule for any other set of models;
- `max`: the highest member P(fake) (a specialist is not averaged away by a model blind to its fakes);
- `logistic`: sigmoid(bias + sum of w_m * logit P_m(fake)), non-negative weights fitted on validation files
  (a stacked ensemble: each model counts as much as it earned there).

The verdict band comes from the combined probability and the ensemble thresholds (weighted mean of the members'
card thresholds unless the policy sets them); when the majority vote contradicts the band, the verdict is
`uncertain`. A failed model is reported and left out; it never contributes a made-up score, and the ensemble then
falls back to the mean of the others, which its reason says.

>>> combine({"a": 0.9, "b": 0.8}, {"a": CARD_A, "b": CARD_B})["verdict"]
'fake'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VERDICTS", "COMBINERS", "threshold_text", "bands_text", "why", "band", "vote", "aggregate_track",
           "ensemble_thresholds", "combiner_for", "check_combiner", "combine_probabilities", "combine",
           "EnsembleResult"]

VERDICTS = ("real", "uncertain", "fake", "no_face", "error")
COMBINERS = ("mean", "max", "logistic")
_EPS = 1e-6


def threshold_text(x: float | None) -> str:
    """A threshold with the precision it has (up to 4 decimals, trailing zeros dropped): 0.001, 0.9987, 0.25."""
    if x is None:
        return "-"
    return f"{float(x):.4f}".rstrip("0").rstrip(".") or "0"


def bands_text(th: dict) -> str:
    """The verdict bands in one line, thresholds at their own precision."""
    if not th:
        return ""
    return (f"real below {threshold_text(th.get('real_below'))}, fake at or above "
            f"{threshold_text(th.get('fake_above'))}, uncertain between")


def why(ens: dict, models: dict) -> str:
    """One line on why the verdict is what it is: which band the ensemble's P(fake) fell in, and each member's
    vote against its own decision threshold (the ones that disagree with the verdict named first)."""
    verdict, p, th = ens.get("verdict"), ens.get("fake_probability"), ens.get("thresholds") or {}
    if verdict == "no_face":
        return "No face was found in any sampled frame, so nothing was scored."
    if verdict == "error" or p is None:
        return "Every model failed on this input, so there is no verdict; see the per-model errors."
    rb, fa = threshold_text(th.get("real_below")), threshold_text(th.get("fake_above"))
    in_band = band(p, th.get("real_below", 0.35), th.get("fake_above", 0.65))
    where = {"real": f"below real_below {rb}", "fake": f"at or above fake_above {fa}",
             "uncertain": f"between real_below {rb} and fake_above {fa}"}[in_band]
    rule = {"mean": "mean", "max": "highest", "logistic": "stacked"}.get(ens.get("combiner", "mean"), "mean")
    votes = []
    for m in ens.get("members") or []:
        mo = models.get(m) or {}
        if mo.get("fake_probability") is None or mo.get("vote") is None:
            continue
        sign = ">=" if mo["vote"] == "fake" else "<"
        votes.append((mo["vote"], f"{m} votes {mo['vote']} ({mo['fake_probability']:.3f} {sign} "
                                  f"{threshold_text(mo.get('threshold'))})"))
    against = [t for v, t in votes if in_band in ("real", "fake") and v != in_band]
    line = f"The {rule} P(fake) {p:.3f} is {where}: the {in_band} band"
    if verdict == "uncertain" and in_band != "uncertain":
        line += ", but the majority votes against it, so uncertain"
    elif verdict == "uncertain":
        line += ", so uncertain"
    ordered = against + [t for v, t in votes if t not in against]
    return line + ("; " + "; ".join(ordered) if ordered else "") + "."


def band(p: float, real_below: float, fake_above: float) -> str:
    if p < real_below:
        return "real"
    if p >= fake_above:
        return "fake"
    return "uncertain"


def vote(p: float, decision: float) -> str:
    return "fake" if p >= decision else "real"


def decision_of(card) -> float:
    """A model's own decision threshold (its vote): its card's, 0.5 where the card sets none."""
    return float(card.thresholds.get("decision", 0.5))


def voted_band(p: float, th: dict, fake_votes: int, real_votes: int) -> str:
    """The verdict: the band of `p`, made "uncertain" where most members vote against that band."""
    verdict = band(p, th["real_below"], th["fake_above"])
    if (verdict == "fake" and real_votes > fake_votes) or (verdict == "real" and fake_votes > real_votes):
        return "uncertain"
    return verdict


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


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def check_combiner(spec: dict, models: list[str]) -> dict:
    """A policy's combiner, validated: {"type": "mean" | "max"} or {"type": "logistic", "weights": {model: w >= 0},
    "bias": b} with a weight for each of `models`. Raises ValueError with a one-line reason."""
    if not isinstance(spec, dict) or spec.get("type") not in COMBINERS:
        raise ValueError(f"ensemble combiner must be one of {', '.join(COMBINERS)} (got {spec!r:.80})")
    if spec["type"] == "logistic":
        w = spec.get("weights")
        if not isinstance(w, dict) or set(w) != set(models):
            raise ValueError(f"logistic combiner needs one weight per ensemble model ({', '.join(models)})")
        if not all(isinstance(v, (int, float)) and np.isfinite(v) and v >= 0 for v in w.values()) or \
                not isinstance(spec.get("bias"), (int, float)) or not np.isfinite(spec["bias"]):
            raise ValueError("logistic combiner weights must be finite and >= 0 and its bias finite")
    return spec


def combiner_for(members: list[str], policy: dict | None = None) -> dict:
    """The combiner that applies to these members: the policy's when they are exactly its models, else the mean."""
    policy = policy or {}
    spec = policy.get("combiner")
    if spec and set(policy.get("models") or []) == set(members):
        return check_combiner(spec, list(policy["models"]))
    return {"type": "mean"}


def combine_probabilities(probs: dict[str, float], cards: dict, spec: dict) -> float:
    """One P(fake) from the members' P(fake) by the combiner `spec` (see the module text)."""
    members = list(probs)
    p = np.array([probs[m] for m in members], dtype=float)
    if spec["type"] == "max":
        return float(p.max())
    if spec["type"] == "logistic":
        z = float(spec["bias"]) + float(sum(float(spec["weights"][m]) * logit(probs[m]) for m in members))
        return float(1 / (1 + np.exp(-z)))
    w = np.array([_weight(cards[m]) if m in cards else 1.0 for m in members], dtype=float)
    return float((p * w).sum() / w.sum())


@dataclass
class EnsembleResult:
    fake_probability: float | None
    verdict: str
    votes: dict
    thresholds: dict
    members: list[str]
    reason: str
    combiner: str = "mean"

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
    spec = combiner_for(members, policy)
    p = combine_probabilities({m: float(model_probs[m]) for m in members}, cards, spec)
    what = {"mean": "mean P(fake)", "max": "highest P(fake)", "logistic": "stacked P(fake)"}[spec["type"]]
    fake_votes = sum(1 for m in members if vote(model_probs[m], decision_of(cards[m])) == "fake")
    real_votes = len(members) - fake_votes
    banded, verdict = band(p, th["real_below"], th["fake_above"]), voted_band(p, th, fake_votes, real_votes)
    reason = f"{what} {p:.2f} is in the {verdict} band"
    if verdict != banded:
        against, side = (real_votes, "real") if banded == "fake" else (fake_votes, "fake")
        reason = f"{what} {p:.2f} says {banded} but {against} of {len(members)} models vote {side}"
    missing = [m for m in (policy or {}).get("models") or [] if m in model_probs and m not in members]
    if missing and (policy or {}).get("combiner", {}).get("type", "mean") != "mean":
        reason += f" ({', '.join(missing)} failed: mean of the others instead of the {policy['combiner']['type']} rule)"
    return EnsembleResult(round(p, 6), verdict, {"fake": fake_votes, "real": real_votes}, th, members,
                          reason, spec["type"]).to_dict()
