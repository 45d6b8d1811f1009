"""dlib's 68-point facial landmarks for the face crops of a manifest, for self-blend masks that follow the jaw line
and brows (SBI's own recipe) instead of an outline extrapolated from MTCNN's 5 points.

The points are computed once per manifest and cached next to it in `landmarks68.json` ({crop: [[x, y] * 68]}, in
crop pixels). dlib's shape predictor is placed on the face by dlib's HOG face detector on the crop; where HOG finds
no face, the box is estimated from the crop's 5 MTCNN points, and the cache records which crops that was
(`"estimated"`). Crops with neither get no entry (they are then never self-blended with 68 points).

Needs the training extras (`make train-setup`): `dlib-bin` and the model file of `face_recognition_models`, or
Debian's `libdlib-data` (`/usr/share/dlib/shape_predictor_68_face_landmarks.dat`).

    python -m train.landmarks .cache/faces/real/manifest.csv
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["predictor_path", "Landmarker68", "landmarks68_for", "SIDE_FILE", "LandmarkError", "LANDMARK_DESC"]

SIDE_FILE = "landmarks68.json"
MODEL_NAME = "shape_predictor_68_face_landmarks.dat"
DEBIAN_PATH = Path("/usr/share/dlib") / MODEL_NAME
LANDMARK_DESC = {"mtcnn5": "MTCNN's 5 points", "dlib68": "dlib's 68 points"}


class LandmarkError(RuntimeError):
    pass


def predictor_path() -> Path:
    """The 68-point model file: face_recognition_models' copy (found without importing the package, whose
    __init__ needs the removed pkg_resources), else Debian's libdlib-data."""
    spec = importlib.util.find_spec("face_recognition_models")
    for base in (spec.submodule_search_locations or []) if spec else []:
        p = Path(base) / "models" / MODEL_NAME
        if p.is_file():
            return p
    if DEBIAN_PATH.is_file():
        return DEBIAN_PATH
    raise LandmarkError(f"dlib's {MODEL_NAME} not found: install the training extras (make train-setup) "
                        "or Debian's libdlib-data")


def box_from_five(points) -> tuple[float, float, float, float]:
    """A dlib-detector-like face box from MTCNN's 5 points (eyes, nose, mouth corners): about 2.5 eye distances
    wide, from the brows to the chin (calibrated against HOG boxes on this project's crops)."""
    p = np.asarray(points, np.float64)
    eyes, mouth = p[:2].mean(0), p[3:5].mean(0)
    w = max(float(np.linalg.norm(p[1] - p[0])), 1.0) * 2.5
    d = max(float(np.linalg.norm(mouth - eyes)), 1.0)
    cx = (eyes[0] + mouth[0]) / 2
    top, bottom = eyes[1] - 0.75 * d, mouth[1] + 0.57 * d
    return cx - w / 2, top, cx + w / 2, bottom


class Landmarker68:
    def __init__(self, model: Path | None = None):
        try:
            import dlib
        except ImportError as e:
            raise LandmarkError("dlib is not installed: install the training extras (make train-setup)") from e
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(model or predictor_path()))

    def __call__(self, crop: np.ndarray, five=None) -> tuple[list[list[float]] | None, bool]:
        """(68 points in crop pixels, estimated box?) for the face nearest the crop centre; (None, False) if HOG
        finds no face and no 5 points were given."""
        h, w = crop.shape[:2]
        dets = list(self.detector(crop, 0))
        estimated = False
        if dets:
            rect = min(dets, key=lambda r: ((r.left() + r.right()) / 2 - w / 2) ** 2 + ((r.top() + r.bottom()) / 2 - h / 2) ** 2)
        elif five is not None and len(five) >= 5:
            l, t, r, b = box_from_five(five)
            rect, estimated = self.dlib.rectangle(int(round(l)), int(round(t)), int(round(r)), int(round(b))), True
        else:
            return None, False
        shape = self.predictor(np.ascontiguousarray(crop), rect)
        return [[float(shape.part(i).x), float(shape.part(i).y)] for i in range(68)], estimated


def landmarks68_for(manifest: str | Path, rows: list[dict], progress: bool = True) -> dict:
    """The manifest's side file, computing (and saving) the points of any crop not in it yet."""
    from tqdm import tqdm

    from .common import load_crop

    side = Path(manifest).parent / SIDE_FILE
    cache = json.loads(side.read_text()) if side.exists() else {"points": {}, "estimated": [], "missing": []}
    done = set(cache["points"]) | set(cache["missing"])
    todo = [r for r in rows if r["crop"] not in done]
    if todo:
        lm = Landmarker68()
        estimated = set(cache["estimated"])
        for r in tqdm(todo, desc=f"dlib 68 points ({side.parent.name})", disable=not progress):
            pts, est = lm(load_crop(r["crop_path"]), r.get("landmarks"))
            if pts is None:
                cache["missing"].append(r["crop"])
                continue
            cache["points"][r["crop"]] = [[round(x, 1), round(y, 1)] for x, y in pts]
            if est:
                estimated.add(r["crop"])
        cache["estimated"] = sorted(estimated)
        tmp = side.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(side)
    return cache


def main(argv=None) -> int:
    from .common import read_manifest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", nargs="+")
    args = ap.parse_args(argv)
    try:
        for m in args.manifest:
            rows = read_manifest(m)
            cache = landmarks68_for(m, rows)
            print(f"{m}: {len(cache['points'])} crops with 68 points ({len(cache['estimated'])} placed from the "
                  f"5 MTCNN points), {len(cache['missing'])} without")
    except (LandmarkError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
