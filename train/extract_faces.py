"""Media + LABELS.csv -> face-crop dataset + manifest, with the SAME sampler, dual-stage MTCNN and crop function
as inference (core.media, core.faces). Splits keep every `group` on one side.

    python -m train.extract_faces ../shared/data/LABELS.csv --out .cache/faces --frames 16 \
        --include 'ffhq_vs_stylegan2/' --holdout-regex 'CelebA|deepface'

Pre-cropped faces (the DFDC and FF++ crop sets) go through the same detector, which searches a frame with no face
again inside a black border and then one that repeats its edge pixels (core.faces.pad_frame), and the same crop,
which pads where its window leaves the image (mode "pad"). A fixed split file (`--split-file
weights/face_crop_splits.csv`) pins every group's split: groups it lists keep their split; with
`--make-split-file` groups it lacks are assigned (stratified by dataset and the labels the group holds, whole
groups only) and written back, so the test split never moves.
`grids/<source>.png` shows sample crops of every dataset and label for a check by eye before training.

Manifest columns: crop, source, label, dataset, method, group, split, media, frame, time_s, track, box,
confidence, landmarks (5 MTCNN points in crop pixels), crop_size, crop_margin, crop_mode.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from core.faces import CROP_MARGIN, CROP_SIZE, PAD_MODES, FaceDetector, crop_box, crop_face, link_tracks
from core.media import MediaError, open_media

from .landmarks import SIDE_FILE

FIELDS = ["crop", "source", "label", "dataset", "method", "group", "split", "media", "frame", "time_s", "track",
          "box", "confidence", "landmarks", "crop_size", "crop_margin", "crop_mode"]
SPLIT_FIELDS = ["group", "dataset", "labels", "split"]


def split_of(group: str, fractions=(0.7, 0.15, 0.15), salt: str = "tbd") -> str:
    """Deterministic split from the group name, so every file of a group lands on the same side."""
    h = int(hashlib.sha256(f"{salt}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < fractions[0]:
        return "train"
    return "val" if h < fractions[0] + fractions[1] else "test"


def stratified_splits(rows: list[dict], fractions=(0.7, 0.15, 0.15), salt: str = "tbd") -> dict[str, str]:
    """group -> split for the groups of `rows`: within each stratum (dataset, labels the group holds) the groups
    are ordered by a salted hash and cut at the fractions, so every stratum is split in the same proportions and a
    group never straddles two splits."""
    strata: dict[tuple, set[str]] = {}
    labels: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for r in rows:
        g = r.get("group") or r["path"]
        labels.setdefault(g, set()).add(r["label"])
        first.setdefault(g, r.get("dataset", ""))
    for g, labs in labels.items():
        strata.setdefault((first[g], "+".join(sorted(labs))), set()).add(g)
    out = {}
    for groups in strata.values():
        order = sorted(groups, key=lambda g: hashlib.sha256(f"{salt}:{g}".encode()).hexdigest())
        n = len(order)
        n_train = int(round(n * fractions[0]))
        n_val = int(round(n * fractions[1]))
        if n >= 3:  # every split gets at least one group of a stratum that has three
            n_train, n_val = min(max(n_train, 1), n - 2), max(n_val, 1)
        for i, g in enumerate(order):
            out[g] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return out


def read_split_file(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {r["group"]: r for r in csv.DictReader(f)}


def fixed_splits(rows: list[dict], path: Path, fractions, extend: bool) -> dict[str, str]:
    """group -> split from the split file; with `extend`, groups it lacks are split (stratified) and appended,
    never changing a listed group. Without `extend`, a group missing from the file is an error."""
    known = read_split_file(path)
    new_rows = [r for r in rows if (r.get("group") or r["path"]) not in known]
    if new_rows and not extend:
        g = new_rows[0].get("group") or new_rows[0]["path"]
        raise ValueError(f"{len({(r.get('group') or r['path']) for r in new_rows})} groups are not in {path} "
                         f"(e.g. {g}); add them with --make-split-file")
    if new_rows:
        added = stratified_splits(new_rows, fractions)
        labels: dict[str, set[str]] = {}
        for r in new_rows:
            labels.setdefault(r.get("group") or r["path"], set()).add(r["label"])
        ds = {(r.get("group") or r["path"]): r.get("dataset", "") for r in new_rows}
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SPLIT_FIELDS)
            if fresh:
                w.writeheader()
            for g in sorted(added):
                w.writerow({"group": g, "dataset": ds[g], "labels": "+".join(sorted(labels[g])), "split": added[g]})
                known[g] = {"split": added[g]}
    return {g: r["split"] for g, r in known.items()}


def save_grids(manifest: list[dict], out: Path, per: int = 24, seed: int = 0) -> list[Path]:
    """One contact sheet per (dataset, label): up to `per` crops, for a check by eye before training."""
    import numpy as np

    by: dict[tuple, list[dict]] = {}
    for m in manifest:
        by.setdefault((m["dataset"], m["label"]), []).append(m)
    (out / "grids").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for (ds, label), items in sorted(by.items()):
        pick = [items[i] for i in sorted(rng.choice(len(items), min(per, len(items)), replace=False))]
        tile, cols = 128, 8
        rows_n = (len(pick) + cols - 1) // cols
        sheet = Image.new("RGB", (cols * tile, rows_n * tile), (255, 255, 255))
        for k, m in enumerate(pick):
            im = Image.open(out / m["crop"]).convert("RGB").resize((tile, tile))
            sheet.paste(im, ((k % cols) * tile, (k // cols) * tile))
        slug = re.sub(r"[^A-Za-z0-9]+", "-", ds).strip("-")[:60] or "unnamed"
        p = out / "grids" / f"{slug}__{label}.png"
        sheet.save(p)
        paths.append(p)
    return paths


def landmarks_in_crop(landmarks, box, width, height, size, margin, mode: str = "pad") -> list[list[float]]:
    l, t, r, b = crop_box(box, width, height, margin=margin, mode=mode)
    sx, sy = size / max(r - l, 1), size / max(b - t, 1)
    return [[round((x - l) * sx, 2), round((y - t) * sy, 2)] for x, y in landmarks]


def forget_landmarks68(out: Path, crops: set[str]) -> None:
    """Crops just (re)written lose any cached 68-point landmarks (train.landmarks recomputes them on next use)."""
    side = out / SIDE_FILE
    if not crops or not side.exists():
        return
    cache = json.loads(side.read_text())
    cache["points"] = {k: v for k, v in cache["points"].items() if k not in crops}
    cache["estimated"] = [k for k in cache["estimated"] if k not in crops]
    cache["missing"] = [k for k in cache["missing"] if k not in crops]
    side.write_text(json.dumps(cache))


def extract(rows: list[dict], root: Path, out: Path, frames: int, detector: FaceDetector, size: int, margin: float,
            holdout: re.Pattern | None, fractions, image_format: str = "png", quality: int = 95,
            splits: dict[str, str] | None = None, mode: str = "pad") -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(exist_ok=True)
    manifest: list[dict] = []
    for row in tqdm(rows, desc="faces", file=sys.stderr):
        src = root / row["path"]
        try:
            media = open_media(src)
            sampled = list(media.frames(frames if media.info.kind != "image" else 1))
        except MediaError as e:
            print(f"skip {row['path']}: {e}", file=sys.stderr)
            continue
        faces = detector.detect([f.image for f in sampled])
        link_tracks(faces)
        counts: dict[int, int] = {}
        for fl in faces:
            for f in fl:
                counts[f.track] = counts.get(f.track, 0) + 1
        if not counts:
            print(f"no face {row['path']}", file=sys.stderr)
            continue
        main = max(counts, key=lambda t: counts[t])  # the main person of the clip / photo
        group = row.get("group") or row["path"]
        if holdout is not None and holdout.search(f"{row['path']} {row.get('dataset', '')}"):
            split = "test"
        elif splits is not None:
            split = splits[group]
        else:
            split = split_of(group, fractions)
        stem = hashlib.sha1(row["path"].encode()).hexdigest()[:12]
        for fr, fl in zip(sampled, faces):
            for f in fl:
                if f.track != main:
                    continue
                crop = crop_face(fr.image, f.box, size=size, margin=margin, mode=mode)
                name = f"crops/{stem}_{fr.index:06d}.{image_format}"
                if image_format == "jpg":  # ~5x smaller: fits a GPU machine's 64 MiB transfer
                    Image.fromarray(crop).save(out / name, quality=quality)
                else:
                    Image.fromarray(crop).save(out / name, compress_level=1)
                h, w = fr.image.shape[:2]
                manifest.append({
                    "crop": name, "source": row["path"], "label": row["label"], "dataset": row.get("dataset", ""),
                    "method": row.get("method", ""), "group": group, "split": split, "media": media.info.kind,
                    "frame": fr.index, "time_s": fr.time_s, "track": f.track,
                    "box": json.dumps([round(v, 1) for v in f.box]), "confidence": f.confidence,
                    "landmarks": json.dumps(landmarks_in_crop(f.landmarks or [], f.box, w, h, size, margin, mode)),
                    "crop_size": size, "crop_margin": margin, "crop_mode": mode,
                })
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("labels", help="LABELS.csv (path,label[,dataset,method,group])")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=16, help="frames per video, uniform over the whole duration")
    ap.add_argument("--include", action="append", help="regex on path or dataset; rows must match one (repeatable)")
    ap.add_argument("--exclude", action="append", help="regex on path or dataset to drop (repeatable)")
    ap.add_argument("--labels-only", choices=["real", "fake"], help="keep only this label")
    ap.add_argument("--holdout-regex", help="rows matching go to the test split (never trained on)")
    ap.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test fractions by group")
    ap.add_argument("--face-threshold", type=float, default=0.9)
    ap.add_argument("--size", type=int, default=CROP_SIZE)
    ap.add_argument("--margin", type=float, default=CROP_MARGIN)
    ap.add_argument("--crop-mode", choices=PAD_MODES, default="pad",
                    help="pad (the convention) or shift: the crops of models trained before padding existed "
                         "(gan-face, sbi-frame, sbi-temporal), e.g. to calibrate them on their own validation split")
    ap.add_argument("--format", choices=["png", "jpg"], default="png",
                    help="crop files: lossless png, or jpg q95 (about 5x smaller, for carrying to a GPU machine)")
    ap.add_argument("--split-file", help="CSV group,dataset,labels,split that pins every group's split")
    ap.add_argument("--make-split-file", action="store_true",
                    help="add groups missing from --split-file (stratified by dataset and labels); listed ones stay")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)

    labels = Path(args.labels)
    with open(labels, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("label") in ("real", "fake")]
    key = lambda r: f"{r['path']} {r.get('dataset', '')}"
    if args.include:
        rows = [r for r in rows if any(re.search(p, key(r)) for p in args.include)]
    if args.exclude:
        rows = [r for r in rows if not any(re.search(p, key(r)) for p in args.exclude)]
    if args.labels_only:
        rows = [r for r in rows if r["label"] == args.labels_only]
    if args.limit:
        rows = rows[: args.limit]
    fractions = tuple(float(x) for x in args.fractions.split(","))
    splits = None
    if args.split_file:
        try:
            splits = fixed_splits(rows, Path(args.split_file), fractions, args.make_split_file)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    det = FaceDetector(threshold=args.face_threshold)
    out = Path(args.out)
    manifest = extract(rows, labels.parent, out, args.frames, det, args.size, args.margin,
                       re.compile(args.holdout_regex) if args.holdout_regex else None, fractions, args.format,
                       splits=splits, mode=args.crop_mode)
    path = out / "manifest.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerows(manifest)
    forget_landmarks68(out, {m["crop"] for m in manifest})
    grids = save_grids(manifest, out) if manifest else []
    counts = {}
    for m in manifest:
        counts[(m["split"], m["label"])] = counts.get((m["split"], m["label"]), 0) + 1
    print(f"{len(manifest)} crops from {len(rows)} files -> {path}; " +
          ", ".join(f"{s}/{lab}: {n}" for (s, lab), n in sorted(counts.items())) +
          (f"; {len(grids)} crop grids in {out / 'grids'}" if grids else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
