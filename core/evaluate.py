"""Evaluation on a labelled CSV (at least `path,label`; paths relative to the CSV; label real/fake) and batch
robustness under perturbations. Video-level: one score per file (the model's score on the deciding track);
frame-level: one score per detected face. Results are plain JSON for the Benchmarks and Robustness pages.

>>> res = evaluate_csv("LABELS.csv", analyzer)
>>> res["video"]["ensemble"]["auc"]
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .analyze import Analyzer
from .ensemble import ensemble_thresholds
from .media import MediaError, open_media
from .models.checkpoint import REPO_WEIGHTS, weights_dirs
from .perturb import PERTURBATIONS, apply

__all__ = ["read_labels", "evaluate_csv", "robustness_csv", "metrics", "probe_perturbation", "result_files",
           "load_json", "published_tables"]

REPO = Path(__file__).resolve().parents[1]


def read_labels(csv_path: str | Path) -> list[dict]:
    """Rows with label real/fake; each gets `abs_path`. Raises ValueError with a one-line reason."""
    p = Path(csv_path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise ValueError(f"{p}: needs at least the columns path,label")
        rows = []
        for row in reader:
            label = (row.get("label") or "").strip().lower()
            if label not in ("real", "fake"):
                continue
            row["label"] = label
            row["abs_path"] = str((p.parent / row["path"]).resolve())
            rows.append(row)
    return rows


def metrics(y: list[int], p: list[float], decision: float = 0.5) -> dict:
    """AUC (when both classes are present), accuracy at `decision`, confusion matrix [[TN, FP], [FN, TP]]
    with rows = truth (real, fake), and sklearn's classification report."""
    from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score, roc_curve

    y_arr, p_arr = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    out: dict = {"n": int(len(y_arr)), "n_fake": int(y_arr.sum()), "n_real": int((1 - y_arr).sum()),
                 "decision": decision}
    if len(y_arr) == 0:
        return out
    pred = (p_arr >= decision).astype(int)
    out["accuracy"] = float((pred == y_arr).mean())
    out["confusion_matrix"] = confusion_matrix(y_arr, pred, labels=[0, 1]).tolist()
    out["report"] = classification_report(y_arr, pred, labels=[0, 1], target_names=["real", "fake"],
                                          output_dict=True, zero_division=0)
    out["mean_p_fake_on_real"] = float(p_arr[y_arr == 0].mean()) if (y_arr == 0).any() else None
    out["mean_p_fake_on_fake"] = float(p_arr[y_arr == 1].mean()) if (y_arr == 1).any() else None
    if 0 < y_arr.sum() < len(y_arr):
        out["auc"] = float(roc_auc_score(y_arr, p_arr))
        fpr, tpr, thr = roc_curve(y_arr, p_arr)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).round().astype(int))
        out["roc"] = {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}
    else:
        out["auc"] = None
    return out


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)


def evaluate_csv(csv_path: str | Path, analyzer: Analyzer, frames: int = 32, models: list[str] | None = None,
                 frame_transform: Callable | None = None, progress: bool = True, desc: str = "evaluate",
                 rows: list[dict] | None = None, ensemble_models: list[str] | None = None) -> dict:
    rows = rows if rows is not None else read_labels(csv_path)
    names = models or list(analyzer.detectors)
    members = [n for n in names if ensemble_models is None or n in ensemble_models]
    files, errors = [], []
    t0 = time.perf_counter()
    for row in _progress(rows, len(rows), desc, progress):
        try:
            a = analyzer.analyze(row["abs_path"], frames=frames, models=names, frame_transform=frame_transform,
                                 ensemble_models=members)
        except MediaError as e:
            errors.append({"path": row["path"], "error": str(e)})
            continue
        files.append({
            "path": row["path"], "label": row["label"], "media": row.get("media") or a.info.kind,
            "dataset": row.get("dataset") or "", "method": row.get("method") or "",
            "verdict": a.verdict, "fake_probability": a.fake_probability,
            "models": {n: a.models[n]["fake_probability"] for n in names},
            "model_errors": {n: a.models[n]["error"] for n in names if a.models[n]["error"]},
            "faces": [{n: f.probs.get(n) for n in names} for f in a.faces],
            "seconds": round(a.timings_s["total"], 3),
        })
    ens_decision = ensemble_thresholds(analyzer.cards, members, analyzer.policy)["decision"]
    result = {
        "csv": str(csv_path), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "frames": frames,
        "models": names, "ensemble_models": members, "model_versions": {n: analyzer.cards[n].sha256 for n in names},
        "n_rows": len(rows), "n_scored": sum(f["fake_probability"] is not None for f in files),
        "no_face": [f["path"] for f in files if f["verdict"] == "no_face"], "errors": errors,
        "seconds": round(time.perf_counter() - t0, 2),
        "video": _level_metrics(files, names, analyzer, ens_decision),
        "frame": _frame_metrics(files, names, analyzer),
        "breakdown": {},
        "files": files,
    }
    for col in ("dataset", "method", "media"):
        values = sorted({f[col] for f in files if f[col]})
        if len(values) > 1 or (values and col != "media"):
            result["breakdown"][col] = {
                v: _level_metrics([f for f in files if f[col] == v], names, analyzer, ens_decision) for v in values}
    return result


def _level_metrics(files: list[dict], names: list[str], analyzer: Analyzer, ens_decision: float) -> dict:
    out = {}
    for n in names:
        sel = [f for f in files if f["models"].get(n) is not None]
        out[n] = metrics([int(f["label"] == "fake") for f in sel], [f["models"][n] for f in sel],
                         analyzer.cards[n].thresholds.get("decision", 0.5))
    sel = [f for f in files if f["fake_probability"] is not None]
    out["ensemble"] = metrics([int(f["label"] == "fake") for f in sel], [f["fake_probability"] for f in sel],
                              ens_decision)
    out["ensemble"]["verdicts"] = {v: sum(f["verdict"] == v for f in files)
                                   for v in ("real", "uncertain", "fake", "no_face", "error")}
    return out


def _frame_metrics(files: list[dict], names: list[str], analyzer: Analyzer) -> dict:
    out = {}
    for n in names:
        y, p = [], []
        for f in files:
            for face in f["faces"]:
                if face.get(n) is not None:
                    y.append(int(f["label"] == "fake"))
                    p.append(face[n])
        out[n] = metrics(y, p, analyzer.cards[n].thresholds.get("decision", 0.5))
        out[n].pop("report", None)
    return out


def robustness_csv(csv_path: str | Path, analyzer: Analyzer, specs: list[tuple[str, list[float]]],
                   frames: int = 32, models: list[str] | None = None, seed: int = 0, progress: bool = True,
                   ensemble_models: list[str] | None = None) -> dict:
    """Metrics per perturbation and strength (plus the clean baseline). Faces are re-detected on perturbed frames,
    as they would be on a re-uploaded copy."""
    rows = read_labels(csv_path)
    names = models or list(analyzer.detectors)
    summary = lambda r: {lvl: {m: {k: r[lvl][m].get(k) for k in ("auc", "accuracy", "n", "mean_p_fake_on_real",
                                                                   "mean_p_fake_on_fake")}
                               for m in r[lvl]} for lvl in ("video", "frame")}
    base = evaluate_csv(csv_path, analyzer, frames, names, None, progress, "clean", rows, ensemble_models)
    out = {"csv": str(csv_path), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "frames": frames,
           "models": names, "seed": seed, "clean": summary(base), "perturbations": {}}
    for name, strengths in specs:
        out["perturbations"][name] = []
        for s in strengths:
            tf = lambda fr, _n=name, _s=s: apply(_n, _s, fr, seed=seed)
            r = evaluate_csv(csv_path, analyzer, frames, names, tf, progress, f"{name}:{s:g}", rows, ensemble_models)
            entry = {"strength": s, **summary(r)}
            out["perturbations"][name].append(entry)
    return out


# ----------------------------------------------------------------- one-file probes and result files

def probe_perturbation(analyzer: Analyzer, path: str | Path, family: str, strengths: list[float], frames: int = 8,
                       models: list[str] | None = None, seed: int = 0) -> dict:
    """How each model's score moves as one input is perturbed: the clean analysis, then one per strength
    (faces re-detected on the perturbed frames). Includes one example frame, original and perturbed."""
    if family not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {family!r}")
    points = []
    clean = analyzer.analyze(path, frames=frames, models=models)
    points.append({"strength": None, "probs": {m: v["fake_probability"] for m, v in clean.models.items()},
                   "ensemble": clean.fake_probability, "verdict": clean.verdict})
    example_pos = next((i for i, fr in enumerate(clean.frames) if fr["faces"]), 0)
    first = next(open_media(path).frames(frames), None)
    examples = []
    for s in strengths:
        tf = lambda fr, _s=s: apply(family, _s, fr, seed=seed)
        a = analyzer.analyze(path, frames=frames, models=models, frame_transform=tf)
        points.append({"strength": float(s), "probs": {m: v["fake_probability"] for m, v in a.models.items()},
                       "ensemble": a.fake_probability, "verdict": a.verdict})
        src = clean.frame_image(example_pos) if clean.images else (first.image if first else None)
        if src is not None:
            examples.append((float(s), apply(family, s, [src], seed=seed)[0]))
    return {"family": family, "param": PERTURBATIONS[family][1], "points": points,
            "models": list(clean.models), "original": clean.frame_image(example_pos) if clean.images else None,
            "examples": examples}


def load_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def result_files(kind: str) -> list[Path]:
    """Result JSON files the pages can show: kind 'evaluate' or 'robustness' (`core robustness` output, a
    benchmarks.json's JPEG check, or a `train.robust_crops` result). Looks in weights/ and results/."""
    out = []
    for d in [REPO_WEIGHTS, REPO / "results", *weights_dirs()]:
        if not Path(d).is_dir():
            continue
        for p in sorted(Path(d).glob("*.json")):
            try:
                head = json.loads(p.read_text())
            except (json.JSONDecodeError, OSError):
                continue
            if not isinstance(head, dict):
                continue
            is_rob = ("perturbations" in head and "clean" in head) or ("conditions" in head and "cards" in head)
            is_eval = ("video" in head and "frame" in head) or ("runs" in head and "n_files" in head)
            if (kind == "robustness" and (is_rob or "robustness_jpeg50" in head)) or (kind == "evaluate" and is_eval):
                if p not in out:
                    out.append(p)
    return out


def published_tables() -> list[dict]:
    return load_json(Path(__file__).parent / "data" / "published_results.json")["tables"]
