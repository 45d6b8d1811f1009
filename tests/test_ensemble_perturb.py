"""Ensemble verdict rules and perturbations."""

from __future__ import annotations

import numpy as np
import pytest

from core import ensemble
from core.models import ModelCard
from core.perturb import PERTURBATIONS, apply, parse_spec


def _card(name, decision=0.5, real_below=0.3, fake_above=0.7, weight=1.0):
    return ModelCard(name=name, architecture="meso4", config={}, input_size=256, mean=[0] * 3, std=[1] * 3,
                     classes=["fake", "real"], output="sigmoid", file=f"{name}.safetensors",
                     thresholds={"decision": decision, "real_below": real_below, "fake_above": fake_above},
                     ensemble={"default": True, "weight": weight})


CARDS = {n: _card(n) for n in "abc"}


@pytest.mark.parametrize("probs,verdict", [
    ({"a": 0.9, "b": 0.8, "c": 0.95}, "fake"),
    ({"a": 0.1, "b": 0.2, "c": 0.05}, "real"),
    ({"a": 0.5, "b": 0.45, "c": 0.55}, "uncertain"),
])
def test_bands(probs, verdict):
    r = ensemble.combine(probs, CARDS)
    assert r["verdict"] == verdict
    assert r["fake_probability"] == pytest.approx(np.mean(list(probs.values())), abs=1e-5)


def test_vote_contradicting_the_band_makes_it_uncertain():
    # mean 0.70 is in the fake band, but two of three models vote real
    r = ensemble.combine({"a": 0.45, "b": 0.46, "c": 1.0}, dict(CARDS))
    assert r["fake_probability"] == pytest.approx(0.636666, abs=1e-4)
    r = ensemble.combine({"a": 0.49, "b": 0.49, "c": 1.0}, {n: _card(n, fake_above=0.6) for n in "abc"})
    assert r["votes"] == {"fake": 1, "real": 2}
    assert r["verdict"] == "uncertain" and "vote real" in r["reason"]


def test_failed_model_left_out_never_half():
    r = ensemble.combine({"a": 0.9, "b": None, "c": 0.8}, CARDS)
    assert r["members"] == ["a", "c"]
    assert r["fake_probability"] == pytest.approx(0.85)  # a made-up 0.5 for b would give 0.733
    r = ensemble.combine({"a": None, "b": None}, CARDS)
    assert r["verdict"] == "error" and r["fake_probability"] is None


def test_weights_and_thresholds_from_cards():
    cards = {"a": _card("a", weight=3.0, real_below=0.2, fake_above=0.6), "b": _card("b", weight=1.0)}
    r = ensemble.combine({"a": 0.8, "b": 0.4}, cards)
    assert r["fake_probability"] == pytest.approx((0.8 * 3 + 0.4) / 4)
    assert r["thresholds"]["fake_above"] == pytest.approx((0.6 * 3 + 0.7) / 4)
    r = ensemble.combine({"a": 0.8, "b": 0.4}, cards, {"real_below": 0.1, "decision": 0.5, "fake_above": 0.9})
    assert r["verdict"] == "uncertain" and r["thresholds"]["fake_above"] == 0.9


def test_policy_thresholds_apply_only_to_the_ensemble_they_were_chosen_for():
    policy = {"models": ["a", "b"], "real_below": 0.1, "decision": 0.5, "fake_above": 0.9}
    assert ensemble.combine({"a": 0.8, "b": 0.8}, CARDS, policy)["thresholds"]["fake_above"] == 0.9
    # another set of models (a user's choice, or a member that failed): the members' card thresholds
    other = ensemble.combine({"a": 0.8, "b": 0.8, "c": 0.8}, CARDS, policy)
    assert other["thresholds"]["fake_above"] == pytest.approx(0.7) and other["verdict"] == "fake"
    assert ensemble.combine({"a": 0.8, "b": None}, CARDS, policy)["thresholds"]["fake_above"] == pytest.approx(0.7)


def test_max_and_logistic_combiners_apply_to_their_own_ensemble_only():
    pol = {"models": ["a", "b"], "combiner": {"type": "max"}}
    r = ensemble.combine({"a": 0.9, "b": 0.1}, CARDS, pol)
    assert r["fake_probability"] == pytest.approx(0.9) and r["combiner"] == "max" and "highest" in r["reason"]
    # another set of models: the weighted mean, whatever the policy says
    r = ensemble.combine({"a": 0.9, "b": 0.1, "c": 0.2}, CARDS, pol)
    assert r["combiner"] == "mean" and r["fake_probability"] == pytest.approx(0.4)
    pol = {"models": ["a", "b"], "combiner": {"type": "logistic", "weights": {"a": 2.0, "b": 0.0}, "bias": 0.5}}
    r = ensemble.combine({"a": 0.8, "b": 0.01}, CARDS, pol)
    z = 0.5 + 2.0 * np.log(0.8 / 0.2)
    assert r["fake_probability"] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-6) and "stacked" in r["reason"]
    # b's weight 0: b cannot move the score; a failed member: the other alone, and the reason says so
    assert ensemble.combine({"a": 0.8, "b": 0.99}, CARDS, pol)["fake_probability"] == pytest.approx(r["fake_probability"])
    r = ensemble.combine({"a": 0.8, "b": None}, CARDS, pol)
    assert r["fake_probability"] == pytest.approx(0.8) and "b failed" in r["reason"] and r["combiner"] == "mean"


@pytest.mark.parametrize("spec", [{"type": "median"}, {"type": "logistic", "weights": {"a": 1.0}, "bias": 0.0},
                                  {"type": "logistic", "weights": {"a": -1.0, "b": 1.0}, "bias": 0.0},
                                  {"type": "logistic", "weights": {"a": 1.0, "b": 1.0}}, "max"])
def test_bad_combiner_is_refused_with_a_reason(spec, tmp_path):
    import json

    from core.analyze import load_policy
    from core.models import CardError

    with pytest.raises(ValueError):
        ensemble.check_combiner(spec, ["a", "b"])
    (tmp_path / "ensemble.json").write_text(json.dumps({"models": ["a", "b"], "combiner": spec}))
    with pytest.raises(CardError, match="ensemble.json: .*combiner"):
        load_policy([tmp_path])


# ------------------------------------------------------------------------------------------- perturbations


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    base = np.zeros((96, 128, 3), np.uint8)
    base[20:70, 30:90] = rng.integers(0, 255, (50, 60, 3))
    return [np.roll(base, i * 3, axis=1) for i in range(5)]


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_changes_frames_deterministically(frames, name):
    strengths = PERTURBATIONS[name][2]
    a = apply(name, strengths[-1], frames, seed=3)
    b = apply(name, strengths[-1], frames, seed=3)
    assert len(a) == len(frames) and all(x.shape == y.shape and x.dtype == np.uint8 for x, y in zip(a, frames))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    diff = np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, frames)])
    assert diff > 0.5, name


def test_strength_orders_damage(frames):
    def err(name, s):
        out = apply(name, s, frames)
        return np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(out, frames)])

    assert err("jpeg", 30) > err("jpeg", 90)
    assert err("blur", 4) > err("blur", 1)
    assert err("noise", 20) > err("noise", 5)
    assert err("h264", 45) > err("h264", 18)
    assert not np.array_equal(apply("noise", 10, frames, seed=1)[0], apply("noise", 10, frames, seed=2)[0])


def test_parse_spec():
    assert parse_spec("jpeg:90,70,50") == ("jpeg", [90.0, 70.0, 50.0])
    assert parse_spec("blur")[1] == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="unknown perturbation"):
        parse_spec("sepia:1")
    with pytest.raises(ValueError, match="bad strengths"):
        parse_spec("jpeg:high")
