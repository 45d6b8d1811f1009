"""Evaluate the shipped detectors on every labelled file of ../shared/data that no model trained or was selected
on, side by side with MesoNet, and write the results where the app reads them:

- weights/ensemble_val_files.csv: the ensemble's validation files: the earlier fixed list (the gan-face validation
  split plus a third of the labelled files no model trained on, whole groups) plus face-swap crops of the fixed
  `val` split of weights/face_crop_splits.csv; the default ensemble (which models, and its verdict thresholds) is
  chosen on these only and written to weights/ensemble.json (with a one-sentence scope for the Home page);
- weights/eval_files.csv: the evaluation list: the earlier fixed list plus crops of the fixed `test` split, which
  no training or model selection ever touches;
- weights/benchmarks.json: `core evaluate` results for every shipped model, the default ensemble and MesoNet, AUC
  per family (DFDC crops, FF++ crops, face-swap videos, GAN faces, ...) with 95 % bootstrap intervals, the
  real-face false-positive rates by source, the JPEG q50 robustness check, calibration (ECE and reliability
  tables), the ensemble candidates and the detectors issue's targets (`--targets-only` recomputes that table);
- each shipped card's `metrics.evaluation` and `ensemble`.

The written lists are kept (they were made when the earlier models' manifests existed; recomputing them needs
every such manifest, `--resplit`).

    python -m train.evaluate_defaults --data ../shared/data --faces .cache/faces --weights weights
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.analyze import Analyzer
from core.evaluate import evaluate_csv, read_labels, robustness_csv
from core.models.checkpoint import ModelCard, discover_models

OTHER_REAL_SOURCES = {  # real faces from sources no model trained on, for the false-positive target
    "CelebA-HQ": "CelebA-HQ",
    "press photos": "deepface unit-test photos",
    "phone clips": "LivePortrait driving-video",
    "real videos (all)": "",  # every real video of the evaluation list (media video)
}
TRAINED_REAL_SOURCES = {  # reals of sources some model trained on (their held-out split): reported, not a target
    "DFDC real crops (test split)": "DFDC (face crops",
    "FF++ real crops (test split)": "FaceForensics++ (face crops",
}


def training_groups(faces: Path) -> set[str]:
    used = set()
    for m in faces.glob("*/manifest.csv"):
        with open(m, newline="") as f:
            for r in csv.DictReader(f):
                if r["split"] in ("train", "val"):
                    used.add(r["group"])
    return used


def manifest_groups(faces: Path, split: str, include: str = "") -> set[str]:
    out = set()
    for m in faces.glob("*/manifest.csv"):
        with open(m, newline="") as f:
            out |= {r["group"] for r in csv.DictReader(f) if r["split"] == split and include in r["source"]}
    return out


def _group(r: dict) -> str:
    return r.get("group") or r["path"]


def split_files(data: Path, faces: Path) -> tuple[list[str], list[dict], list[dict]]:
    """(fields, ensemble validation rows, evaluation rows) of LABELS.csv. Validation: the gan-face validation split
    and every third group (by SHA-1 of its name) of each media/label/dataset stratum of the files no model trained
    or was validated on; the held-out split of ffhq_vs_stylegan2 stays whole in the evaluation (its own target)."""
    used = training_groups(faces)
    gan_val = manifest_groups(faces, "val", "ffhq_vs_stylegan2/")
    with open(data / "LABELS.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if r["label"] in ("real", "fake")]
    pool = [r for r in rows if _group(r) not in used]
    strata: dict[tuple, list[str]] = {}
    seen: set[str] = set()  # a group joins the stratum of its first row only
    for r in pool:
        if r["path"].startswith("ffhq_vs_stylegan2/") or _group(r) in seen:
            continue
        seen.add(_group(r))
        strata.setdefault((r["media"], r["label"], r["dataset"]), []).append(_group(r))
    val_groups = {g for groups in strata.values()
                  for i, g in enumerate(sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest())) if i % 3 == 1}
    val = [r for r in rows if _group(r) in gan_val or _group(r) in val_groups]
    test = [r for r in pool if _group(r) not in val_groups]
    return fields, val, test


CROP_SETS = {  # the pre-cropped face-swap sets and where their fixed group splits live
    "DFDC crops": "i-Shreyansh__DeepFake-Detection/faces_224/",
    "FF++ crops": "MCS1-FYP__MesoNet-Website/",
}
SPLIT_FILE = "face_crop_splits.csv"
FACE_SWAP_VIDEO = ("DFDC train_sample_videos", "GHOST", "FWA paper")  # dataset names of face-swap fake videos


def family(f: dict) -> str:
    """The family a labelled file is reported in."""
    path, ds = f["path"], f.get("dataset", "")
    for name, prefix in CROP_SETS.items():
        if prefix in path:
            return name
    if "ffhq_vs_stylegan2" in path:
        return "GAN faces (FFHQ vs StyleGAN2)"
    if f.get("media") == "video":
        if f["label"] == "real":
            return "real videos"
        return "face-swap videos" if any(k in ds for k in FACE_SWAP_VIDEO) else "talking-head / synthetic videos"
    if "DFDC train_sample_videos face crops" in ds:
        return "DFDC sample crops (other source)"
    return "other real images"


FAMILY_TARGETS = {  # family (its fakes against the reals named) -> (reals it is ranked against, target AUC)
    "DFDC crops": (("DFDC crops",), 0.90),
    "FF++ crops": (("FF++ crops",), 0.95),
    "face-swap videos": (("real videos",), 0.85),
    "GAN faces (FFHQ vs StyleGAN2)": (("GAN faces (FFHQ vs StyleGAN2)",), 0.95),
    "talking-head / synthetic videos": (("real videos",), None),
    "DFDC sample crops (other source)": (("DFDC sample crops (other source)",), None),
}


def family_files(files: list[dict], fam: str) -> list[dict]:
    """The fakes of `fam` with the reals they are ranked against."""
    reals, _ = FAMILY_TARGETS[fam]
    return [f for f in files if (f["label"] == "fake" and family(f) == fam) or
            (f["label"] == "real" and family(f) in reals)]


def crop_rows(data: Path, weights: Path, split: str, per_set: int = 0) -> list[dict]:
    """LABELS.csv rows of the pre-cropped sets whose group `weights/face_crop_splits.csv` puts in `split`;
    `per_set` keeps at most that many of each set (evenly spaced, half real and half fake; 0 = all)."""
    with open(weights / SPLIT_FILE, newline="") as f:
        splits = {r["group"]: r["split"] for r in csv.DictReader(f)}
    with open(data / "LABELS.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in ("real", "fake")
                and any(p in r["path"] for p in CROP_SETS.values()) and splits.get(r["group"]) == split]
    if not per_set:
        return rows
    out = []
    for prefix in CROP_SETS.values():
        for label in ("real", "fake"):
            sel = [r for r in rows if prefix in r["path"] and r["label"] == label]
            k = min(len(sel), per_set // 2)
            out += [sel[i] for i in np.linspace(0, len(sel) - 1, k).round().astype(int)] if k else []
    return out


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_rows(fields: list[str], rows: list[dict], dest: Path, data: Path | None = None) -> Path:
    """Write LABELS.csv rows; with `data`, paths become absolute (for `core evaluate` from anywhere)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, path=str((data / r["path"]).resolve())) if data else r)
    return dest


RULE_TEXT = {
    "mean": "weighted mean P(fake)",
    "max": "highest member P(fake)",
    "logistic": "stacked P(fake): sigmoid(bias + sum of weight x logit P(fake)), weights >= 0 fitted on validation files",
}
RULE_TEXT = {k: v + " with verdict bands chosen on validation data and a majority vote; a vote against the band "
             "gives uncertain" for k, v in RULE_TEXT.items()}

SELECTION_FAMILIES = ("video", "GAN faces (FFHQ vs StyleGAN2)", "face-swap crops")


def _selection_subset(files: list[dict], name: str) -> list[dict]:
    if name == "video":
        return [f for f in files if f["media"] == "video"]
    if name == "face-swap crops":
        return [f for f in files if family(f) in CROP_SETS]
    return [f for f in files if family(f) == name]


def selection_family(f: dict) -> str:
    """The selection family a validation file counts in (the rest: "other images")."""
    return next((fam for fam in SELECTION_FAMILIES if f in _selection_subset([f], fam)), "other images")


RULE_ORDER = ("mean", "max", "logistic")  # ties go to the simpler rule


def real_from(f: dict, needle: str) -> bool:
    """A real file of the source `needle` names in OTHER_REAL_SOURCES / TRAINED_REAL_SOURCES ("" = any video)."""
    return f["label"] == "real" and needle in f.get("dataset", "") and (bool(needle) or f["media"] == "video")


def is_other_source_real(f: dict) -> bool:
    """A real face from a source no model trained on (CelebA-HQ, press photos, phone clips, any real video): the
    issue's false-positive target, counted in the selection score too."""
    return any(real_from(f, needle) for needle in OTHER_REAL_SOURCES.values())


def choose_ensemble(files: list[dict], models: list[str], groups: list[str] | None = None,
                    cards: dict | None = None) -> tuple[list[str], dict, dict, list[dict]]:
    """The default ensemble from validation files only: of every non-empty subset of `models` and every rule of
    core.ensemble (mean, max, logistic stacking; train.stacking), the one whose combined P(fake) has the best score:
    the mean of its AUC on each selection family (validation videos, GAN-face images, face-swap crops) and of the
    share of other-source real faces (`is_other_source_real`) it scores below its own decision threshold (the
    false-positive target; that term is left out when the files hold none) and of the share of each family's fakes
    its verdict calls fake (its bands from these files and its members' votes, as core gives the verdict:
    `called_fake`; since 2026-12-07, so that an ensemble whose verdict leaves the fakes one specialist recognises
    `uncertain` cannot win on rankings alone). The logistic rule is scored out of fold; ties: fewer models, then
    the simpler rule. Returns (models, combiner, thresholds, table); the thresholds
    come from the same files (out-of-fold scores for the logistic rule)."""
    from itertools import combinations

    from train.common import choose_thresholds
    from train.stacking import family_weights

    keep = [i for i, f in enumerate(files) if all((f.get("models") or {}).get(m) is not None for m in models)]
    files = [files[i] for i in keep]
    groups = [groups[i] if groups else f["path"] for i, f in zip(keep, files)]
    cards = cards or {}
    y = np.array([f["label"] == "fake" for f in files], int)
    fams = [selection_family(f) for f in files]
    weights = family_weights(fams, y)
    fam_idx = {fam: [i for i, x in enumerate(fams) if x == fam] for fam in SELECTION_FAMILIES}
    others = np.array([is_other_source_real(f) for f in files], bool)
    table, scored_by = [], {}
    for k in range(1, len(models) + 1):
        for subset in combinations(models, k):
            probs = np.array([[f["models"][m] for m in subset] for f in files])
            for rule in RULE_ORDER if k > 1 else ("mean",):  # one model: every rule ranks as the model itself
                p, spec, called = candidate_scores(probs, y, weights, groups, list(subset), cards, rule)
                row = {"models": list(subset), "rule": rule}
                fam_auc, flagged, share, row["score"] = selection_terms(p, y, fam_idx, others, called=called)
                row["fakes called fake"] = share
                for fam, (auc, n, n_fake) in fam_auc.items():
                    row[f"{fam} AUC"], row[f"{fam} n"], row[f"{fam} fake"] = auc, n, n_fake
                if flagged is not None:
                    row["other-source reals n"], row["other-source reals flagged"] = int(others.sum()), flagged
                if rule == "logistic":
                    row["fitted"] = spec
                table.append(row)
                scored_by[(subset, rule)] = (p, spec, called)
    ranked = sorted((r for r in table if r["score"] is not None),
                    key=lambda r: (r["score"], -len(r["models"]), -RULE_ORDER.index(r["rule"])), reverse=True)
    best = ranked[0]
    p, spec, called = scored_by[(tuple(best["models"]), best["rule"])]
    if len(ranked) > 1:  # how firmly the validation files prefer the winner to the runner-up
        second = ranked[1]
        p2, _, called2 = scored_by[(tuple(second["models"]), second["rule"])]
        best["runner-up"] = {"models": second["models"], "rule": second["rule"], "score": second["score"]}
        best["beats runner-up (bootstrap)"] = paired_bootstrap_share(p, p2, y, fams, others, called_a=called,
                                                                     called_b=called2)
    return best["models"], spec, choose_thresholds(y, p), table


def candidate_scores(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, groups: list[str], members: list[str],
                     cards: dict, rule: str) -> tuple[np.ndarray, dict, np.ndarray]:
    """How the selection scores one candidate (members, rule) on the validation files: its P(fake) (out of fold
    for the logistic rule), the rule's spec, and each file's flag of a fake verdict (`called_fake`, with the
    candidate's own bands from these files and its members' votes; 0.5 for a member without a card)."""
    from core.ensemble import decision_of
    from train.common import choose_thresholds
    from train.stacking import out_of_fold

    p, spec = out_of_fold(probs, y, weights, groups, members, cards, rule)
    decisions = [decision_of(cards[m]) if m in cards else 0.5 for m in members]
    return p, spec, called_fake(p, probs, decisions, choose_thresholds(y, p))


def called_fake(p: np.ndarray, probs: np.ndarray, decisions: list[float], th: dict) -> np.ndarray:
    """Whether the verdict core gives (core.ensemble.voted_band: the band of the combined P(fake) `p` under the
    thresholds `th`, uncertain where most members vote against it) is "fake", file by file; `probs` holds one
    column per member."""
    from core.ensemble import voted_band

    fake_votes = (np.asarray(probs, float) >= np.asarray(decisions, float)[None, :]).sum(axis=1)
    n = np.asarray(probs).shape[1]
    return np.array([voted_band(float(q), th, int(f), n - int(f)) == "fake" for q, f in zip(p, fake_votes)], bool)


def selection_terms(p: np.ndarray, y: np.ndarray, fam_idx: dict, others: np.ndarray, decision: float | None = None,
                    ndigits: int | None = 4, called: np.ndarray | None = None) -> tuple:
    """How choose_ensemble scores one candidate's P(fake) `p` on (a resample of) the validation files: per
    selection family (AUC or None where it lacks a class, n, n fake); the share of other-source reals at or above
    the decision threshold (`decision`, default: the candidate's own on these files; None where the files hold
    none or no family has both classes); the share of fakes the verdict calls fake (`called`: one flag per file,
    `called_fake`), averaged over the selection families that hold fakes (None without `called`); and the score,
    the mean of the AUCs, of 1 - the flagged share and of the called share. Returns (families, flagged, called
    share, score); AUCs, shares and score are rounded to `ndigits` (None: not rounded)."""
    from sklearn.metrics import roc_auc_score

    from train.common import choose_thresholds

    def rnd(x):
        return round(float(x), ndigits) if ndigits is not None else float(x)

    fams = {}
    for fam, idx in fam_idx.items():
        n_fake = int(y[idx].sum())
        fams[fam] = (rnd(roc_auc_score(y[idx], p[idx])) if 0 < n_fake < len(idx) else None, len(idx), n_fake)
    terms = [auc for auc, _, _ in fams.values() if auc is not None]
    flagged = share = None
    if others.any() and terms:
        d = choose_thresholds(y, p)["decision"] if decision is None else decision
        flagged = float(np.mean(p[others] >= d))
        terms.append(1.0 - flagged)
    if called is not None and terms:
        per = [float(np.mean(called[idx][y[idx] == 1])) for idx in map(np.asarray, fam_idx.values())
               if len(idx) and y[idx].any()]
        if per:
            share = rnd(np.mean(per))
            terms.append(share)
    return fams, flagged, share, rnd(np.mean(terms)) if terms else None


def term_values(fams: dict, flagged: float | None, share: float | None = None) -> list[float | None]:
    """selection_terms' result as the score's terms, in order: each selection family's AUC, the share of
    other-source reals kept below the decision threshold, and the share of fakes the verdict calls fake (None
    where a term is undefined)."""
    return [auc for auc, _, _ in fams.values()] + [None if flagged is None else 1.0 - flagged, share]


def term_names() -> list[str]:
    return [f"{fam} AUC" for fam in SELECTION_FAMILIES] + ["other-source reals kept", "fakes called fake"]


def paired_bootstrap_terms(pa: np.ndarray, pb: np.ndarray, y: np.ndarray, fams: list[str], others: np.ndarray,
                           n_boot: int = 1000, seed: int = 0, called_a: np.ndarray | None = None,
                           called_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paired bootstrap resamples of the validation files (with replacement within each stratum of selection
    family, label and other-source-real flag; seeded): for each resample, candidate A's and B's score terms
    (`term_names()` then the score; NaN where undefined), as two (n_boot, terms + 1) arrays. Each keeps its own
    decision threshold from all the files. Files are resampled one by one, not by group: a reading of how much a
    comparison rests on a few files, not an exact interval. `called_a` / `called_b`: each file's verdict flag
    (`called_fake`, from all the files' bands), resampled with the files."""
    from train.common import choose_thresholds

    da, db = choose_thresholds(y, pa)["decision"], choose_thresholds(y, pb)["decision"]
    strata: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(fams, y.tolist(), others.tolist())):
        strata.setdefault(key, []).append(i)
    fam_arr = np.array(fams)
    rng = np.random.default_rng(seed)
    out_a, out_b = [], []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(ix, size=len(ix), replace=True) for ix in strata.values()])
        yy, oo, ff = y[idx], others[idx], fam_arr[idx]
        fam_idx = {fam: np.flatnonzero(ff == fam) for fam in SELECTION_FAMILIES}
        for p, d, c, out in ((pa, da, called_a, out_a), (pb, db, called_b, out_b)):
            fam_auc, flagged, share, score = selection_terms(p[idx], yy, fam_idx, oo, d, ndigits=None,
                                                             called=None if c is None else c[idx])
            out.append([np.nan if v is None else v for v in term_values(fam_auc, flagged, share) + [score]])
    return np.array(out_a, float), np.array(out_b, float)


def paired_bootstrap_share(pa: np.ndarray, pb: np.ndarray, y: np.ndarray, fams: list[str], others: np.ndarray,
                           n_boot: int = 1000, seed: int = 0, called_a: np.ndarray | None = None,
                           called_b: np.ndarray | None = None) -> float:
    """The share of paired bootstrap resamples (`paired_bootstrap_terms`) in which candidate A's selection score
    is above B's (ties count half)."""
    a, b = paired_bootstrap_terms(pa, pb, y, fams, others, n_boot, seed, called_a, called_b)
    sa, sb = a[:, -1], b[:, -1]
    return round(float(np.mean(np.where(sa > sb, 1.0, np.where(sa == sb, 0.5, 0.0)))), 3)


def write_val_scores(dest: Path, res_val: dict, group_of: dict, weights: Path) -> None:
    """The validation files' per-model P(fake), their groups, the weights folder and the ensemble in force."""
    policy = json.loads((weights / "ensemble.json").read_text()) if (weights / "ensemble.json").exists() else {}
    files = [{k: f[k] for k in ("path", "label", "media", "dataset", "models")} | {"group": group_of.get(f["path"], f["path"])}
             for f in res_val["files"]]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"weights": str(weights.resolve()), "model_versions": res_val["model_versions"],
                                "ensemble": {"models": policy.get("models"), "combiner": policy.get("combiner")},
                                "files": files}, indent=1) + "\n")


def fp_rates(files: list[dict], models: list[str], cards: dict, ens_decision: float) -> dict:
    out = {}
    for label, needle in {**OTHER_REAL_SOURCES, **TRAINED_REAL_SOURCES}.items():
        sel = [f for f in files if real_from(f, needle) and f["fake_probability"] is not None]
        row = {"n": len(sel)}
        for m in models:
            ps = [f["models"][m] for f in sel if f["models"].get(m) is not None]
            row[m] = round(float(np.mean([p >= cards[m].thresholds["decision"] for p in ps])), 4) if ps else None
        row["ensemble_verdict_fake"] = round(float(np.mean([f["verdict"] == "fake" for f in sel])), 4) if sel else None
        row["ensemble_p_at_decision"] = round(float(np.mean([f["fake_probability"] >= ens_decision for f in sel])),
                                              4) if sel else None
        out[label] = row
    return out


def _pairs(files: list[dict], model: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(f["label"] == "fake", f["fake_probability"] if model == "ensemble" else (f.get("models") or {}).get(model))
             for f in files]
    pairs = [(y, p) for y, p in pairs if p is not None]
    return np.array([a for a, _ in pairs], int), np.array([b for _, b in pairs], float)


def _auc(files: list[dict], model: str) -> tuple[float | None, int, int]:
    from sklearn.metrics import roc_auc_score

    y, p = _pairs(files, model)
    n_fake = int(y.sum())
    if not n_fake or n_fake == len(y):
        return None, len(y), n_fake
    return round(float(roc_auc_score(y, p)), 4), len(y), n_fake


def auc_ci95(files: list[dict], model: str, n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap 95 % interval of the AUC, resampling reals and fakes separately (seeded)."""
    from sklearn.metrics import roc_auc_score

    y, p = _pairs(files, model)
    real, fake = p[y == 0], p[y == 1]
    if len(real) < 2 or len(fake) < 2:
        return None
    rng = np.random.default_rng(seed)
    yy = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    aucs = [roc_auc_score(yy, np.r_[rng.choice(real, len(real)), rng.choice(fake, len(fake))]) for _ in range(n_boot)]
    return [round(float(q), 3) for q in np.percentile(aucs, [2.5, 97.5])]


def family_table(runs: dict) -> dict:
    """family -> run -> model (and "ensemble") -> AUC, n, fakes and 95 % bootstrap interval, each family's fakes
    against the reals named in FAMILY_TARGETS (computed once: the targets and the cards read it)."""
    out = {}
    for fam in FAMILY_TARGETS:
        for run_name, res in runs.items():
            files = family_files([f for f in res["files"] if f["label"] in ("real", "fake")], fam)
            for m in list(res["models"]) + ["ensemble"]:
                auc, n, n_fake = _auc(files, m)
                out.setdefault(fam, {}).setdefault(run_name, {})[m] = {"auc": auc, "n": n, "fake": n_fake,
                                                                       "ci95": auc_ci95(files, m)}
    return out


def targets(runs: dict, fp: dict, rob: dict, fams: dict) -> list[dict]:
    """The detectors issue's targets, each measured on its own family of the evaluation files (`family_table`),
    for every model and run, with 95 % bootstrap intervals."""
    rows = []
    for fam, (reals, goal) in FAMILY_TARGETS.items():
        for run_name, by_model in fams[fam].items():
            for m, v in by_model.items():
                rows.append({"target": f"{fam} AUC" + (f" >= {goal}" if goal else " (reported)"),
                             "data": f"{fam} fakes vs {' + '.join(reals)} reals (evaluation files)", "run": run_name,
                             "model": m, "n": v["n"], "fake": v["fake"], "value": v["auc"], "ci95": v["ci95"],
                             "met": None if goal is None or v["auc"] is None else v["auc"] >= goal})
    for run_name, res in runs.items():
        files = [f for f in res["files"] if f["label"] in ("real", "fake")]
        for m in list(res["models"]) + ["ensemble"]:
            auc, n, n_fake = _auc(files, m)
            rows.append({"target": "file AUC (all media), for reference", "data": "every evaluation file",
                         "run": run_name, "model": m, "n": n, "fake": n_fake, "value": auc,
                         "ci95": auc_ci95(files, m), "met": None})
    for src, row in fp.items():
        if src not in OTHER_REAL_SOURCES:
            continue
        v = row.get("ensemble_verdict_fake")
        rows.append({"target": "real faces called fake <= 5 %", "data": f"{src} (ensemble verdict)", "run": "ours",
                     "model": "ensemble", "n": row["n"], "fake": 0, "value": v, "met": None if v is None else v <= 0.05})
    clean, jpeg = rob["clean"]["video"], rob["perturbations"]["jpeg"][0]["video"]
    for m in clean:
        a, b = clean[m].get("auc"), (jpeg.get(m) or {}).get("auc")
        drop = None if a is None or b is None else round(a - b, 4)
        rows.append({"target": "AUC drop under JPEG q50 <= 0.05", "data": rob.get("data", "robustness files, file AUC"),
                     "run": "ours", "model": m, "n": clean[m].get("n"), "fake": clean[m].get("n_fake"),
                     "value": drop, "met": None if drop is None else drop <= 0.05})
    return rows


def scope_sentence(families: dict, chosen: list[str]) -> str:
    """One sentence, from the measured family AUCs of the default ensemble, of what it can and cannot catch."""
    good, weak = [], []
    for fam, by_run in families.items():
        v = by_run.get("ours", {}).get("ensemble", {})
        if v.get("auc") is None or not v.get("fake"):
            continue
        (good if v["auc"] >= 0.8 else weak).append(f"{fam} (AUC {v['auc']:.2f}, {v['fake']} fakes)")
    s = f"Measured on held-out files, the default ensemble ({', '.join(chosen)}) "
    s += ("ranks these fakes above their reals: " + "; ".join(good)) if good else "separates no family reliably"
    s += (", and does not reliably catch: " + "; ".join(weak)) if weak else ""
    return s + ". Lip-sync, audio and whole-scene edits are not analysed."


def calibration_report(files: list[dict], models: list[str]) -> dict:
    """Expected calibration error and reliability table of each model's (calibrated) P(fake) on the evaluation
    files: all of them, the face-swap crops alone, and the GAN faces alone (a specialist is judged on its own kind
    of fake too: on all files, the other kind's fakes count against it)."""
    from core.calibration import expected_calibration_error, reliability_table

    out = {}
    for subset, sel in (("all evaluation files", files),
                        ("face-swap crops (DFDC + FF++ test split)", [f for f in files if family(f) in CROP_SETS]),
                        ("GAN faces (FFHQ vs StyleGAN2 test files)", family_files(files, "GAN faces (FFHQ vs StyleGAN2)"))):
        for m in models + ["ensemble"]:
            y, p = _pairs(sel, m)
            if len(y) and 0 < y.sum() < len(y):
                out.setdefault(subset, {})[m] = {"n": int(len(y)), "ece": expected_calibration_error(p, y),
                                                 "reliability": reliability_table(p, y)}
    return out


def print_targets(rows: list[dict]) -> None:
    for t in rows:
        print(f"{t['target']:<38} {t['run']:<8} {t['model']:<18} n={str(t['n']):<4} fake={str(t['fake']):<4} "
              f"value={t['value']} ci95={t.get('ci95')} met={t['met']}", file=sys.stderr)


def strip(res: dict) -> dict:
    """Keep what the Benchmarks page needs (per-file faces dropped)."""
    r = dict(res)
    r["files"] = [{k: v for k, v in f.items() if k != "faces"} for f in res["files"]]
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--faces", default=".cache/faces")
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--mesonet", default="../shared/reference/mesonet", help="local MesoNet .h5 copies")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--crop-val", type=int, default=300,
                    help="at most N crops of each set (DFDC, FF++) of the fixed val split join the ensemble "
                         "validation files (evenly spaced, half real)")
    ap.add_argument("--crop-test", type=int, default=800,
                    help="at most N crops of each set of the fixed test split are evaluated (evenly spaced, half "
                         "real; 0 = all)")
    ap.add_argument("--robustness-limit", type=int, default=600,
                    help="the JPEG q50 check runs on an evenly spaced sample of this many evaluation files")
    ap.add_argument("--resplit", action="store_true",
                    help="recompute the earlier validation/evaluation lists from the manifests in --faces (only with "
                         "every manifest the shipped models were trained on present); default: keep the written lists")
    ap.add_argument("--selection-only", action="store_true",
                    help="stop after the ensemble selection on the validation files (a candidate's test files are "
                         "read only if it wins there); prints the best candidates")
    ap.add_argument("--val-scores", help="also write every model's P(fake) on each validation file (with its group "
                    "and the ensemble in force) to this JSON file, for train.compare_versions")
    ap.add_argument("--targets-only", action="store_true",
                    help="recompute the targets table of an existing weights/benchmarks.json (no model is run)")
    args = ap.parse_args(argv)
    data, weights = Path(args.data), Path(args.weights)
    if args.targets_only:
        bench = json.loads((weights / "benchmarks.json").read_text())
        rob = {"clean": bench["robustness_jpeg50"]["clean"],
               "perturbations": {"jpeg": [bench["robustness_jpeg50"]["jpeg50"]]},
               "data": bench["robustness_jpeg50"].get("data", "robustness files, file AUC")}
        bench["families"] = family_table(bench["runs"])
        bench["targets"] = targets(bench["runs"], bench["real_face_false_positive_rate"], rob, bench["families"])
        (weights / "benchmarks.json").write_text(json.dumps(bench, indent=1, default=float) + "\n")
        print_targets(bench["targets"])
        return 0
    t0 = time.time()
    if args.resplit or not (weights / "eval_files.csv").exists():
        fields, val_rows, test_rows = split_files(data, Path(args.faces))
    else:  # the fixed lists: no model trained or was selected on them, whatever manifests are on this machine
        fields, val_rows = read_rows(weights / "ensemble_val_files.csv")
        _, test_rows = read_rows(weights / "eval_files.csv")
        crops = tuple(CROP_SETS.values())
        val_rows = [r for r in val_rows if not any(c in r["path"] for c in crops)]
        test_rows = [r for r in test_rows if not any(c in r["path"] for c in crops)]
    val_rows += crop_rows(data, weights, "val", args.crop_val)
    test_rows += crop_rows(data, weights, "test", args.crop_test)
    if args.limit:
        val_rows, test_rows = val_rows[: args.limit], test_rows[: args.limit]
    write_rows(fields, val_rows, weights / "ensemble_val_files.csv")
    write_rows(fields, test_rows, weights / "eval_files.csv")
    cards = {n: c for n, c in discover_models([weights]).items() if isinstance(c, ModelCard)}
    ours = [n for n in cards if not n.startswith("meso")]
    with tempfile.TemporaryDirectory() as tmp:
        val_csv = write_rows(fields, val_rows, Path(tmp) / "val.csv", data)
        csv_path = write_rows(fields, test_rows, Path(tmp) / "eval.csv", data)
        label_rows = read_labels(csv_path)
        print(f"{len(val_rows)} ensemble validation files, {len(label_rows)} evaluation files "
              f"({sum(r['label'] == 'fake' for r in label_rows)} fake)", file=sys.stderr)
        # 1. The default ensemble and its thresholds, from the validation files only.
        an = Analyzer(models=ours, dirs=[weights])
        res_val = evaluate_csv(val_csv, an, frames=args.frames, desc="validation")
        group_of = {str((data / r["path"]).resolve()): _group(r) for r in val_rows}
        if args.val_scores:
            write_val_scores(Path(args.val_scores), res_val, group_of, weights)
        chosen, combiner, thresholds, table = choose_ensemble(
            res_val["files"], ours, [group_of.get(f["path"], f["path"]) for f in res_val["files"]], an.cards)
        policy_path = weights / "ensemble.json"
        policy = json.loads(policy_path.read_text()) if policy_path.exists() else {}
        policy.update({"models": chosen, "combiner": combiner, "rule": RULE_TEXT[combiner["type"]], **thresholds,
                       "chosen_on": {
            "files": "weights/ensemble_val_files.csv", "n": len(res_val["files"]),
            "rule": "every non-empty subset of the shipped models with every combination rule (mean, max, logistic "
                    "stacking with non-negative weights fitted on these files, scored out of 5 grouped folds); best "
                    "score: the mean of the AUCs on validation videos, GAN faces and face-swap crops and of the share "
                    "of real faces from other sources (CelebA-HQ, press photos, real videos) below the candidate's "
                    "decision threshold and of the share of each family's fakes its verdict (bands and member votes) "
                    "calls fake (ties: fewer models, then the simpler rule); thresholds on the same files "
                    "(out-of-fold scores for the logistic rule): "
                    "decision maximises balanced accuracy, fake_above keeps real-as-fake <= 5 %, real_below keeps "
                    "fake-as-real <= 5 %",
            "candidates": table, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
        policy_path.write_text(json.dumps(policy, indent=1) + "\n")
        print(f"default ensemble: {chosen} {combiner} {thresholds}", file=sys.stderr)
        if args.selection_only:
            for c in sorted(table, key=lambda c: -c["score"])[:8]:
                print(json.dumps(c))
            return 0
        # 2. Every model on the evaluation files; the verdict from the chosen ensemble with its thresholds.
        an = Analyzer(models=ours, dirs=[weights])
        res_ours = evaluate_csv(csv_path, an, frames=args.frames, rows=label_rows, desc="ours", ensemble_models=chosen)
        meso_dir = Path(tmp) / "meso"
        res_meso = None
        if (Path(args.mesonet) / "Meso4_DF.h5").exists():
            from core.models.mesonet import convert_mesonet

            for f in ("Meso4_DF.h5", "MesoInception_DF.h5"):
                convert_mesonet(Path(args.mesonet) / f, meso_dir)
            an_meso = Analyzer(dirs=[meso_dir])
            res_meso = evaluate_csv(csv_path, an_meso, frames=args.frames, rows=label_rows, desc="mesonet")
        # JPEG q50 robustness of our models and ensemble on the same files.
        step = max(1, len(test_rows) // args.robustness_limit) if args.robustness_limit else 1
        rob_csv = write_rows(fields, test_rows[::step], Path(tmp) / "robustness.csv", data)
        rob = robustness_csv(rob_csv, an, [("jpeg", [50.0])], frames=args.frames, ensemble_models=chosen)
        rob["data"] = (f"{len(test_rows[::step])} evaluation files (every {step}), file AUC" if step > 1 else
                       f"all {len(test_rows)} evaluation files, file AUC")
    ens_decision = thresholds["decision"]
    runs = {"ours": res_ours, **({"mesonet": res_meso} if res_meso else {})}
    fams = family_table(runs)
    bench = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "what": "measured here: `core evaluate` on every labelled file of ../shared/data that no model trained or "
                "was validated on (weights/eval_files.csv: the earlier evaluation list plus the fixed test split of "
                "the DFDC and FF++ face crops, weights/face_crop_splits.csv)",
        "n_files": len(label_rows), "frames": args.frames, "ensemble": chosen,
        "ensemble_validation": {"n_files": len(res_val["files"]), "candidates": table, "thresholds": thresholds,
                                "combiner": combiner},
        "runs": {"ours": strip(res_ours), **({"mesonet": strip(res_meso)} if res_meso else {})},
        "real_face_false_positive_rate": fp_rates(res_ours["files"], ours, an.cards, ens_decision),
        "robustness_jpeg50": {"clean": rob["clean"], "jpeg50": rob["perturbations"]["jpeg"][0], "data": rob["data"]},
        "calibration": calibration_report(res_ours["files"], ours),
        "families": fams,
        "targets": targets(runs, fp_rates(res_ours["files"], ours, an.cards, ens_decision), rob, fams),
        "minutes": round((time.time() - t0) / 60, 1),
    }
    (weights / "benchmarks.json").write_text(json.dumps(bench, indent=1, default=float) + "\n")
    policy = json.loads(policy_path.read_text())
    policy["scope"] = scope_sentence(bench["families"], chosen)
    policy_path.write_text(json.dumps(policy, indent=1) + "\n")
    # Evaluation figures into each card (the tensors are untouched, so the SHA-256 stays valid).
    for n in ours:
        p = weights / f"{n}.json"
        card = json.loads(p.read_text())
        ev = {}
        for lvl in ("video", "frame"):
            m = res_ours[lvl][n]
            ev[lvl] = {k: m.get(k) for k in ("auc", "accuracy", "n", "n_fake", "n_real", "confusion_matrix")}
        by_media = res_ours["breakdown"].get("media", {})
        ev["by_media"] = {k: {x: v[n].get(x) for x in ("auc", "accuracy", "n")} for k, v in by_media.items()}
        ev["real_face_false_positive_rate"] = {k: v.get(n) for k, v in bench["real_face_false_positive_rate"].items()}
        ev["jpeg50_video_auc"] = rob["perturbations"]["jpeg"][0]["video"][n]["auc"]
        ev["families"] = {fam: {k: v for k, v in bench["families"][fam]["ours"][n].items()}
                          for fam in FAMILY_TARGETS}
        cal = bench["calibration"].get("all evaluation files", {}).get(n)
        if cal:
            ev["ece"] = cal["ece"]
        ev["data"] = "weights/eval_files.csv (files no model trained or was validated on), measured " + bench["created"]
        card.setdefault("metrics", {})["evaluation"] = ev
        card["ensemble"] = {"default": n in chosen, "weight": 1.0,
                            "chosen_on": "weights/ensemble_val_files.csv (see weights/ensemble.json)",
                            **({"ensemble_models": chosen, "ensemble_thresholds": thresholds} if n in chosen else {})}
        p.write_text(json.dumps(card, indent=2) + "\n")
    summary = {"ours": {k: res_ours["video"][k].get("auc") for k in res_ours["video"]}}
    if res_meso:
        summary["mesonet"] = {k: res_meso["video"][k].get("auc") for k in res_meso["video"]}
    print_targets(bench["targets"])
    print(json.dumps({"file_auc": summary, "fp": bench["real_face_false_positive_rate"],
                      "jpeg50": {k: v["auc"] for k, v in bench["robustness_jpeg50"]["jpeg50"]["video"].items()},
                      "minutes": bench["minutes"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
