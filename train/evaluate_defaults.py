"""Evaluate the shipped detectors on every labelled file of ../shared/data that no model trained on, side by side
with MesoNet, and write the results where the app reads them:

- weights/eval_files.csv: the evaluation list (LABELS.csv rows whose group no training or validation split used);
- weights/benchmarks.json: `core evaluate` results for the default ensemble and for MesoNet, plus the real-face
  false-positive rates by source and the JPEG q50 robustness check;
- each shipped card's `metrics.evaluation`.

    python -m train.evaluate_defaults --data ../shared/data --faces .cache/faces --weights weights
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.analyze import Analyzer, default_model_names, load_policy
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


def write_eval_csv(data: Path, used: set[str], dest: Path) -> list[dict]:
    with open(data / "LABELS.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = [r for r in reader if r["label"] in ("real", "fake") and (r.get("group") or r["path"]) not in used]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return rows


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
    args = ap.parse_args(argv)
    data, weights = Path(args.data), Path(args.weights)
    t0 = time.time()
    used = training_groups(Path(args.faces))
    write_eval_csv(data, used, weights / "eval_files.csv")
    eval_csv = weights / "eval_files.csv"
    # Paths in eval_files.csv are relative to ../shared/data; evaluate from a copy placed there virtually.
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "eval.csv"
        with open(eval_csv, newline="") as f, open(csv_path, "w", newline="") as g:
            reader = csv.DictReader(f)
            w = csv.DictWriter(g, fieldnames=reader.fieldnames)
            w.writeheader()
            for i, r in enumerate(reader):
                if args.limit and i >= args.limit:
                    break
                w.writerow(dict(r, path=str((data / r["path"]).resolve())))
        label_rows = read_labels(csv_path)
        print(f"{len(label_rows)} evaluation files ({sum(r['label'] == 'fake' for r in label_rows)} fake); "
              f"{len(used)} groups excluded as training/validation", file=sys.stderr)
        cards = {n: c for n, c in discover_models([weights]).items() if isinstance(c, ModelCard)}
        ours = default_model_names(cards, load_policy())
        ours = [n for n in ours if not n.startswith("meso")]
        an = Analyzer(models=ours, dirs=[weights])
        res_ours = evaluate_csv(csv_path, an, frames=args.frames, rows=label_rows, desc="ours")
        meso_dir = Path(tmp) / "meso"
        res_meso = None
        if (Path(args.mesonet) / "Meso4_DF.h5").exists():
            from core.models.mesonet import convert_mesonet

            for f in ("Meso4_DF.h5", "MesoInception_DF.h5"):
                convert_mesonet(Path(args.mesonet) / f, meso_dir)
            an_meso = Analyzer(dirs=[meso_dir])
            res_meso = evaluate_csv(csv_path, an_meso, frames=args.frames, rows=label_rows, desc="mesonet")
        # JPEG q50 robustness of our ensemble on the same files.
        rob = robustness_csv(csv_path, an, [("jpeg", [50.0])], frames=args.frames)
    ens_decision = float(np.mean([an.cards[n].thresholds["decision"] for n in ours]))
    bench = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "what": "measured here: `core evaluate` on every labelled file of ../shared/data that no model trained or "
                "was validated on (weights/eval_files.csv)",
        "n_files": len(label_rows), "frames": args.frames, "ensemble": ours,
        "runs": {"ours": strip(res_ours), **({"mesonet": strip(res_meso)} if res_meso else {})},
        "real_face_false_positive_rate": fp_rates(res_ours["files"], ours, an.cards, ens_decision),
        "robustness_jpeg50": {"clean": rob["clean"], "jpeg50": rob["perturbations"]["jpeg"][0]},
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
        p.write_text(json.dumps(card, indent=2) + "\n")
    summary = {"ours": {k: res_ours["video"][k].get("auc") for k in res_ours["video"]}}
    if res_meso:
        summary["mesonet"] = {k: res_meso["video"][k].get("auc") for k in res_meso["video"]}
    print(json.dumps({"video_auc": summary, "fp": bench["real_face_false_positive_rate"],
                      "jpeg50": {k: v["auc"] for k, v in bench["robustness_jpeg50"]["jpeg50"]["video"].items()},
                      "minutes": bench["minutes"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
