"""Evaluate the shipped detectors on every labelled file of ../shared/data that no model trained on, side by side
with MesoNet, and write the results where the app reads them:

- weights/ensemble_val_files.csv: the ensemble's validation files: the gan-face validation split plus a third of the
  labelled files no model trained on (whole groups, stratified by media, label and dataset); the default ensemble
  (which models, and its verdict thresholds) is chosen on these only and written to weights/ensemble.json;
- weights/eval_files.csv: the evaluation list (the other labelled files no model trained or was validated on);
- weights/benchmarks.json: `core evaluate` results for every shipped model, the default ensemble and MesoNet, the
  real-face false-positive rates by source, the JPEG q50 robustness check, the ensemble candidates and a table of
  the detectors issue's targets with 95 % bootstrap intervals (`--targets-only` recomputes that table);
- each shipped card's `metrics.evaluation` and `ensemble`.

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


def write_rows(fields: list[str], rows: list[dict], dest: Path, data: Path | None = None) -> Path:
    """Write LABELS.csv rows; with `data`, paths become absolute (for `core evaluate` from anywhere)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, path=str((data / r["path"]).resolve())) if data else r)
    return dest


def choose_ensemble(files: list[dict], models: list[str]) -> tuple[list[str], dict, list[dict]]:
    """The default ensemble from validation files only: of every non-empty subset of `models`, the one whose mean
    P(fake) has the best mean of video AUC and image AUC (ties: fewer models); thresholds from the same files."""
    from itertools import combinations

    from train.common import choose_thresholds

    files = [f for f in files if all((f.get("models") or {}).get(m) is not None for m in models)]
    table = []
    for k in range(1, len(models) + 1):
        for subset in combinations(models, k):
            row = {"models": list(subset)}
            for media in ("video", "image"):
                sel = [f for f in files if f["media"] == media]
                scored = [dict(f, fake_probability=float(np.mean([f["models"][m] for m in subset]))) for f in sel]
                row[f"{media}_auc"], row[f"{media}_n"], row[f"{media}_fake"] = _auc(scored, "ensemble")
            aucs = [row[f"{m}_auc"] for m in ("video", "image") if row[f"{m}_auc"] is not None]
            row["score"] = round(float(np.mean(aucs)), 4) if aucs else None
            table.append(row)
    best = max((r for r in table if r["score"] is not None), key=lambda r: (r["score"], -len(r["models"])))
    y = np.array([f["label"] == "fake" for f in files], int)
    p = np.array([np.mean([f["models"][m] for m in best["models"]]) for f in files])
    return best["models"], choose_thresholds(y, p), table


def fp_rates(files: list[dict], models: list[str], cards: dict, ens_decision: float) -> dict:
    out = {}
    for label, needle in OTHER_REAL_SOURCES.items():
        sel = [f for f in files if f["label"] == "real" and needle in f["dataset"] and f["fake_probability"] is not None]
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


def targets(runs: dict, fp: dict, rob: dict) -> list[dict]:
    """The issue's targets, each measured on its own subset of the evaluation files, for every model and run."""
    subsets = {
        "GAN-face image AUC >= 0.98": ("images of ffhq_vs_stylegan2 (held-out split)",
                                        lambda f: f["media"] == "image" and "ffhq_vs_stylegan2" in f["path"], 0.98),
        "video AUC >= 0.90": ("labelled videos", lambda f: f["media"] == "video", 0.90),
        "file AUC (all media), for reference": ("every evaluation file", lambda f: True, None),
    }
    rows = []
    for target, (data, keep, goal) in subsets.items():
        for run_name, res in runs.items():
            files = [f for f in res["files"] if keep(f) and f["label"] in ("real", "fake")]
            for m in list(res["models"]) + ["ensemble"]:
                auc, n, n_fake = _auc(files, m)
                rows.append({"target": target, "data": data, "run": run_name, "model": m, "n": n, "fake": n_fake,
                             "value": auc, "ci95": auc_ci95(files, m),
                             "met": None if goal is None or auc is None else auc >= goal})
    for src, row in fp.items():
        v = row.get("ensemble_verdict_fake")
        rows.append({"target": "real faces called fake <= 5 %", "data": f"{src} (ensemble verdict)", "run": "ours",
                     "model": "ensemble", "n": row["n"], "fake": 0, "value": v, "met": None if v is None else v <= 0.05})
    clean, jpeg = rob["clean"]["video"], rob["perturbations"]["jpeg"][0]["video"]
    for m in clean:
        a, b = clean[m].get("auc"), (jpeg.get(m) or {}).get("auc")
        drop = None if a is None or b is None else round(a - b, 4)
        rows.append({"target": "AUC drop under JPEG q50 <= 0.05", "data": "every evaluation file, file AUC",
                     "run": "ours", "model": m, "n": clean[m].get("n"), "fake": clean[m].get("n_fake"),
                     "value": drop, "met": None if drop is None else drop <= 0.05})
    return rows


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
    ap.add_argument("--targets-only", action="store_true",
                    help="recompute the targets table of an existing weights/benchmarks.json (no model is run)")
    args = ap.parse_args(argv)
    data, weights = Path(args.data), Path(args.weights)
    if args.targets_only:
        bench = json.loads((weights / "benchmarks.json").read_text())
        rob = {"clean": bench["robustness_jpeg50"]["clean"],
               "perturbations": {"jpeg": [bench["robustness_jpeg50"]["jpeg50"]]}}
        bench["targets"] = targets(bench["runs"], bench["real_face_false_positive_rate"], rob)
        (weights / "benchmarks.json").write_text(json.dumps(bench, indent=1, default=float) + "\n")
        print_targets(bench["targets"])
        return 0
    t0 = time.time()
    fields, val_rows, test_rows = split_files(data, Path(args.faces))
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
        chosen, thresholds, table = choose_ensemble(res_val["files"], ours)
        policy_path = weights / "ensemble.json"
        policy = json.loads(policy_path.read_text()) if policy_path.exists() else {}
        policy.update({"models": chosen, **thresholds, "chosen_on": {
            "files": "weights/ensemble_val_files.csv", "n": len(res_val["files"]),
            "rule": "every non-empty subset of the shipped models; best mean of video AUC and image AUC of the "
                    "mean P(fake) on the validation files (ties: fewer models); thresholds on the same files: "
                    "decision maximises balanced accuracy, fake_above keeps real-as-fake <= 5 %, real_below keeps "
                    "fake-as-real <= 5 %",
            "candidates": table, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
        policy_path.write_text(json.dumps(policy, indent=1) + "\n")
        print(f"default ensemble: {chosen} {thresholds}", file=sys.stderr)
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
        rob = robustness_csv(csv_path, an, [("jpeg", [50.0])], frames=args.frames, ensemble_models=chosen)
    ens_decision = thresholds["decision"]
    bench = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "what": "measured here: `core evaluate` on every labelled file of ../shared/data that no model trained or "
                "was validated on (weights/eval_files.csv)",
        "n_files": len(label_rows), "frames": args.frames, "ensemble": chosen,
        "ensemble_validation": {"n_files": len(res_val["files"]), "candidates": table, "thresholds": thresholds},
        "runs": {"ours": strip(res_ours), **({"mesonet": strip(res_meso)} if res_meso else {})},
        "real_face_false_positive_rate": fp_rates(res_ours["files"], ours, an.cards, ens_decision),
        "robustness_jpeg50": {"clean": rob["clean"], "jpeg50": rob["perturbations"]["jpeg"][0]},
        "targets": targets({"ours": res_ours, **({"mesonet": res_meso} if res_meso else {})},
                           fp_rates(res_ours["files"], ours, an.cards, ens_decision), rob),
        "minutes": round((time.time() - t0) / 60, 1),
    }
    (weights / "benchmarks.json").write_text(json.dumps(bench, indent=1, default=float) + "\n")
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
