"""The shipped default detectors: cards validated against their checkpoint files, sizes, the ensemble policy and
the evaluation results the Benchmarks page reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from core.analyze import default_model_names, load_policy
from core.ensemble import check_combiner
from core.models import ModelCard, load_detector
from core.models.checkpoint import REPO_WEIGHTS, discover_models

SHIPPED = ["face-swap", "swap-sbi", "swap-mesoinception4", "gan-face", "sbi-frame", "sbi-temporal"]
PADDED = ["face-swap", "swap-sbi", "swap-mesoinception4"]  # cut with the padded crop; the earlier three in shift mode, as trained
MIRRORED = ["face-swap", "swap-sbi", "gan-face"]  # scored with their mirror image too (chosen on validation)
MULTI_SCALE = {"face-swap": [176]}  # also scored at these input sizes (chosen on validation, 2026-12-07)
PLATT = {"face-swap": "platt"}  # a temperature and a bias: its scores lean to fake (README, 2026-12-07)


@pytest.fixture(scope="module")
def cards():
    return {n: c for n, c in discover_models([REPO_WEIGHTS]).items()}


@pytest.mark.parametrize("name", SHIPPED)
def test_card_matches_checkpoint(cards, name):
    card = cards[name]
    assert isinstance(card, ModelCard), card
    st = REPO_WEIGHTS / card.file
    assert st.stat().st_size <= 25 * 1024 * 1024
    assert hashlib.sha256(st.read_bytes()).hexdigest() == card.sha256
    det = load_detector(card.path)  # strict load: every tensor fits the architecture in the card
    assert sum(p.numel() for p in det.net.parameters()) == card.parameters
    t = card.thresholds
    assert 0 < t["real_below"] <= t["decision"] <= t["fake_above"] < 1
    assert card.training.get("data") and card.training.get("terms") and card.training.get("recipe")
    assert card.metrics.get("validation", {}).get("auc") is not None
    ev = card.metrics.get("evaluation")
    assert ev and ev["video"]["n"] > 0 and "eval_files.csv" in ev["data"]
    cal = card.calibration  # every shipped model is calibrated on its validation split
    assert cal["method"] == PLATT.get(name, "temperature") and 0.05 <= cal["temperature"] <= 20
    assert "validation" in cal["fitted_on"] and (cal["method"] == "temperature" or abs(cal["bias"]) < 5)
    assert cal["ece_test"] is not None and cal["reliability_test"]
    if name in PADDED:
        assert card.crop["mode"] == "pad"
    else:
        assert card.crop["mode"] == "shift"  # cut before padding existed, and still cut that way
    # a model scored with its mirror image has its temperature fitted on those scores, and the card keeps the
    # single view's validation AUC that a later refit checks the split with
    assert card.tta == (["hflip"] if name in MIRRORED else [])
    if card.tta:
        assert "hflip" in card.calibration["tta"] and card.calibration["validation_auc_single_view"] > 0.5
    assert card.tta_sizes == MULTI_SCALE.get(name, [])
    for size in card.tta_sizes:  # the calibration was fitted on the scores of every size
        assert f"{size} px" in card.calibration["tta"] and f"{size} px" in card.scoring
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(2)]
    p = det.predict(crops) if card.kind == "frame" else det.predict_sequences([crops])
    assert np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_trained_within_the_budget(cards, name):
    """Issue #10: each shipped model trains in at most 90 minutes on the 2-core CPU, all its stages together."""
    from train.common import TRAINING_BUDGET_MINUTES, lineage_of, total_minutes

    minutes = total_minutes(lineage_of(cards[name], cards.values()))  # a parent unrecorded and not shipped: None
    assert minutes is not None and minutes <= TRAINING_BUDGET_MINUTES, (name, minutes)
    if "minutes_total" in cards[name].training:
        assert cards[name].training["minutes_total"] == minutes


def test_budget_counts_every_stage():
    """A second stage's minutes count with its first stage's; a card with an unrecorded parent cannot pass, and a
    run started from it records an unknown total rather than its own minutes."""
    from train.common import lineage_of, merged_lineage, total_minutes

    def card(name, sha, minutes, **training):
        return ModelCard(name=name, architecture="image_classifier", config={}, input_size=160, mean=[0.5] * 3,
                         std=[0.5] * 3, interpolation="bicubic", classes=["real", "fake"], sha256=sha,
                         training={"minutes": minutes, **training})

    first = card("a", "1" * 64, 60.0, init="ImageNet")
    second = card("a", "2" * 64, 40.0, init=f"all weights from a (SHA-256 {'1' * 16}...)")
    assert total_minutes(lineage_of(second, [first, second])) == 100.0
    assert total_minutes(lineage_of(second, [second])) is None
    assert total_minutes(merged_lineage([second])) is None  # what a run started from it would record
    lineage = merged_lineage([first, second, first], [first])  # a weight average of a model and its fine-tune
    assert [s["minutes"] for s in lineage] == [60.0, 40.0]
    second.training.update(lineage=lineage[:1], minutes_total=100.0)
    assert total_minutes(lineage_of(second)) == 100.0


def test_default_ensemble_was_chosen_on_validation_files():
    policy = load_policy([REPO_WEIGHTS])
    assert policy["models"] and set(policy["models"]) <= set(SHIPPED)
    cards = {n: c for n, c in discover_models([REPO_WEIGHTS]).items()}
    assert default_model_names(cards, policy) == policy["models"]
    assert 0 < policy["real_below"] <= policy["decision"] <= policy["fake_above"] < 1
    chosen = policy["chosen_on"]
    n = len(SHIPPED)  # every non-empty subset was scored: one rule for a single model, three for the others
    assert len(chosen["candidates"]) == n + 3 * (2 ** n - 1 - n)
    order = ("mean", "max", "logistic")
    best = max(chosen["candidates"], key=lambda c: (c["score"], -len(c["models"]), -order.index(c["rule"])))
    assert best["models"] == policy["models"] and best["rule"] == policy["combiner"]["type"]
    if best["rule"] == "logistic":
        assert policy["combiner"]["weights"] == best["fitted"]["weights"]
    check_combiner(policy["combiner"], policy["models"])  # what core will apply
    val = {line.split(",")[0] for line in (REPO_WEIGHTS / "ensemble_val_files.csv").read_text().splitlines()[1:]}
    test = {line.split(",")[0] for line in (REPO_WEIGHTS / "eval_files.csv").read_text().splitlines()[1:]}
    assert len(val) - 5 <= chosen["n"] <= len(val)  # every validation file analysed (a few may have no face)
    assert not val & test


def test_benchmarks_file_is_measured_and_complete():
    b = json.loads((REPO_WEIGHTS / "benchmarks.json").read_text())
    assert "measured here" in b["what"]
    ours = b["runs"]["ours"]
    assert set(SHIPPED) | {"ensemble"} <= set(ours["video"])
    assert ours["video"]["ensemble"]["n"] == ours["n_scored"]
    assert "mesonet" in b["runs"]
    listed = (REPO_WEIGHTS / "eval_files.csv").read_text().splitlines()
    assert len(listed) - 1 == b["n_files"]
    train_sources = set()
    for n in SHIPPED:
        train_sources |= set(json.loads((REPO_WEIGHTS / f"{n}.json").read_text())["training"].get("sources", []))
    eval_paths = {line.split(",")[0] for line in listed[1:]}
    assert not {Path(s).name for s in train_sources} & {Path(p).name for p in eval_paths if p.endswith(".mp4")}
    assert not train_sources & eval_paths  # no file a shipped model trained on is scored as held out


def test_cards_benchmarks_and_readme_agree():
    """Every family AUC of the shipped models in weights/benchmarks.json is the one in each card, and the README
    quotes the default ensemble's and face-swap's family figures and the targets' verdicts as measured."""
    b = json.loads((REPO_WEIGHTS / "benchmarks.json").read_text())
    readme = (REPO_WEIGHTS.parent / "README.md").read_text()
    fams = b["families"]
    for n in SHIPPED:
        ev = json.loads((REPO_WEIGHTS / f"{n}.json").read_text())["metrics"]["evaluation"]
        for fam, v in ev["families"].items():
            assert v["auc"] == fams[fam]["ours"][n]["auc"], (n, fam)
    for fam, by_run in fams.items():
        for m in ("ensemble", "face-swap"):
            auc = by_run["ours"][m]["auc"]
            if auc is not None:
                assert f"{auc:.3f}" in readme, (fam, m, auc)
    for t in b["targets"]:
        if t["run"] == "ours" and t["model"] == "ensemble" and t["met"] is not None and "AUC >=" in t["target"]:
            assert f"{t['value']:.3f}" in readme, t
    policy = load_policy([REPO_WEIGHTS])
    assert policy["scope"] and all(m in policy["scope"] for m in policy["models"])


@pytest.mark.parametrize("name", SHIPPED)
def test_card_text_is_what_the_cards_say(cards, name):
    """train.card_text writes each card's description and limitations: a card edited by hand, or a text changed
    without rewriting the cards, would say something that a rebuild does not."""
    from train.card_text import text

    desc, limitations = text[name]
    assert cards[name].description == desc
    assert cards[name].limitations == limitations
