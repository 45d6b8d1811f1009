"""Computation behind the dashboard pages (the pages only hold widgets and layout): uploads in a private temp
folder, installed models, perturbation probes, result files and the quoted benchmark tables.

>>> with saved_upload(data, "clip.mp4") as path:
...     analysis = analyzer.analyze(path)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .analyze import Analysis, Analyzer, default_model_names, load_policy
from .media import open_media
from .models.checkpoint import REPO_WEIGHTS, CardError, ModelCard, discover_models, weights_dirs
from .perturb import PERTURBATIONS, apply

__all__ = ["saved_upload", "sha256_bytes", "installed_models", "probe_perturbation", "history_row",
           "result_files", "load_json", "published_tables", "examples", "REPO"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def saved_upload(data: bytes, name: str) -> Iterator[Path]:
    """Write uploaded bytes into a fresh private temp folder (mode 700) and remove it afterwards."""
    d = tempfile.mkdtemp(prefix="tbd-upload-")
    os.chmod(d, 0o700)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[-120:] or "upload"
    p = Path(d) / safe
    try:
        p.write_bytes(data)
        yield p
    finally:
        shutil.rmtree(d, ignore_errors=True)


def installed_models(dirs: list[Path] | None = None) -> tuple[dict[str, ModelCard], dict[str, str], list[str]]:
    """(usable cards, unusable name -> reason, default ensemble names)."""
    found = discover_models(dirs)
    cards = {n: c for n, c in found.items() if isinstance(c, ModelCard)}
    broken = {n: str(c) for n, c in found.items() if isinstance(c, CardError)}
    return cards, broken, default_model_names(cards, load_policy(dirs))


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


def history_row(a: Analysis, name: str) -> dict:
    return {"file": name, "verdict": a.verdict,
            "P(fake)": None if a.fake_probability is None else round(a.fake_probability, 3),
            "kind": a.info.kind, "frames": len(a.frames), "faces": len(a.faces),
            "models": ", ".join(a.models), "sha256": a.info.sha256[:16], "when": a.created}


def load_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def result_files(kind: str) -> list[Path]:
    """Result JSON files the pages can show: kind 'evaluate' or 'robustness'. Looks in weights/ and results/."""
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
            is_rob = "perturbations" in head and "clean" in head
            is_eval = ("video" in head and "frame" in head) or ("runs" in head and "n_files" in head)
            if (kind == "robustness" and (is_rob or "robustness_jpeg50" in head)) or (kind == "evaluate" and is_eval):
                if p not in out:
                    out.append(p)
    return out


def published_tables() -> list[dict]:
    return load_json(Path(__file__).parent / "data" / "published_results.json")["tables"]


def examples() -> list[Path]:
    """Labelled sample media from ../shared/data (present on development machines, not in a user's clone)."""
    picks = ["aaronchong888__DeepFake-Detect/train_sample_videos/abofeumbvv.mp4",
             "ai-forever__ghost/examples/videos/elon.webm",
             "ffhq_vs_stylegan2/real/0.jpg"]
    out = [SHARED_DATA / p for p in picks if (SHARED_DATA / p).exists()]
    fakes = sorted((SHARED_DATA / "ffhq_vs_stylegan2" / "fake").glob("*.jpg"))[:1]
    return out + fakes
