"""The analysis pipeline: media -> sampled frames -> dual-stage faces -> tracks -> per-model scores -> ensemble
verdict (-> Grad-CAM). Models and the face detector load once per `Analyzer`.

>>> analyzer = Analyzer()                      # default ensemble from weights/
>>> result = analyzer.analyze("clip.mp4", frames=32)
>>> result.verdict, result.fake_probability
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import ensemble
from .faces import Face, FaceDetector, crop_face, link_tracks
from .media import Frame, MediaError, MediaInfo, open_media
from .models.checkpoint import CardError, Detector, ModelCard, discover_models, load_detector, weights_dirs

__all__ = ["Analyzer", "Analysis", "NoModelsError", "default_model_names", "load_policy", "installed_models",
           "ProgressFn"]

ProgressFn = Callable[[str, float], None]  # (stage, fraction of that stage done)
DISPLAY_LONG_SIDE = 960
CHUNK = 16
GALLERY_CROP = (128, 0.15, "pad")  # size, margin, mode of the gallery's plain face crop
INPUT_THUMB = 160  # long side of the model input crops kept beside the heatmaps
# A face box shorter than this (source pixels) is a low-resolution face: the cards' "low_resolution" caveats were
# measured on validation faces of about 93 px and less (224 px crops shrunk to 112 and 80 px; see README).
LOW_RES_FACE_PX = 100
TURNS = (1, 3, 2)  # quarter turns counter-clockwise (np.rot90) tried on an image with no upright face


class NoModelsError(RuntimeError):
    pass


def load_policy(dirs: list[Path] | None = None) -> dict:
    """Optional ensemble policy (ensemble.json in the first weights folder that has one):
    {"models": [...], "real_below", "decision", "fake_above", "combiner"}; the thresholds and the combiner apply to
    exactly that ensemble (core.ensemble)."""
    for d in (weights_dirs() if dirs is None else dirs):
        p = Path(d) / "ensemble.json"
        if p.exists():
            try:
                policy = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise CardError(f"{p} is not valid JSON ({e})") from None
            if policy.get("combiner") is not None:
                try:
                    ensemble.check_combiner(policy["combiner"], list(policy.get("models") or []))
                except ValueError as e:
                    raise CardError(f"{p}: {e}") from None
            return policy
    return {}


def default_model_names(cards: dict[str, ModelCard], policy: dict | None = None) -> list[str]:
    """The default ensemble: the policy's list, else cards marked ensemble.default, else every installed model."""
    policy = policy or {}
    usable = [n for n, c in cards.items() if isinstance(c, ModelCard)]
    if policy.get("models"):
        return [n for n in policy["models"] if n in usable]
    marked = [n for n in usable if (cards[n].ensemble or {}).get("default", False)]
    return marked or usable


@dataclass
class FaceResult:
    frame: int  # position in Analysis.frames
    face: Face
    crop: np.ndarray  # the crop of the first model's crop spec (what that model scored)
    probs: dict[str, float | None] = field(default_factory=dict)
    cams: dict[str, np.ndarray] = field(default_factory=dict)  # Grad-CAM over each model's own input crop
    thumb: np.ndarray | None = None  # the plain face crop for galleries (GALLERY_CROP), whatever the models cut
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # with Grad-CAM: each model's input crop, small
    fake_probability: float | None = None  # the ensemble's P(fake) of this face alone (its members' scores)


@dataclass
class Found:
    """Hand-off of sample -> detect -> crop: the sampled frames, their faces (linked into tracks), display copies
    and every face's crop for each crop spec (in face order)."""
    specs: list[tuple[int, float, str]]
    crops_by_spec: dict[tuple, list[np.ndarray]]
    frame_rows: list[dict] = field(default_factory=list)
    faces: list[FaceResult] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)


@dataclass
class Scores:
    """Hand-off of score: per model its output record; per track each model's P(fake) (None = failed)."""
    model_out: dict[str, dict]
    track_ids: list[int]
    track_probs: dict[int, dict[str, float | None]]


@dataclass
class Decision:
    """Hand-off of decide: the tracks with their ensembles and the verdict of the deciding track."""
    tracks: list[dict]
    verdict: str
    fake_probability: float | None
    ensemble: dict


@dataclass
class Analysis:
    info: MediaInfo
    frames: list[dict]  # {"index", "time_s", "faces": [face positions in self.faces]}
    faces: list[FaceResult]
    tracks: list[dict]
    models: dict[str, dict]
    verdict: str
    fake_probability: float | None
    ensemble: dict
    timings_s: dict
    settings: dict
    model_cards: dict[str, dict]
    images: list[bytes] = field(default_factory=list)  # display copies of the sampled frames (JPEG q90)
    created: str = ""
    crop_specs: dict[str, tuple] = field(default_factory=dict)  # model -> (crop size, margin, mode) it was fed

    def frame_image(self, pos: int) -> np.ndarray:
        """The display copy (long side <= 960 px) of sampled frame `pos` as an RGB array."""
        import cv2

        buf = np.frombuffer(self.images[pos], np.uint8)
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()

    def face_thumbs(self, quality: int = 85) -> list[bytes]:
        """Each face's gallery crop as JPEG (what a stored case keeps to show its gallery again)."""
        import cv2

        out = []
        for f in self.faces:
            img = f.thumb if f.thumb is not None else f.crop
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
            out.append(buf.tobytes() if ok else b"")
        return out

    @classmethod
    def from_json(cls, j: dict, thumbs: list[bytes] | None = None) -> "Analysis":
        """A stored analysis (the `analyze` JSON, plus the faces' JPEG crops if kept) as an Analysis the screens can
        show: verdict, per-model scores, timeline, tracks and the face gallery. Frames and Grad-CAM are not
        stored, so `images` is empty."""
        import cv2

        inp = dict(j["input"])
        info = MediaInfo(**{k: inp.get(k) for k in ("path", "sha256", "kind", "width", "height", "fps", "duration_s",
                                                     "frame_count", "codec", "container")},
                         rotation=inp.get("rotation") or 0, warnings=list(inp.get("warnings") or []))
        frames, faces = [], []
        for fr in j.get("frames", []):
            row = {"index": fr["index"], "time_s": fr["time_s"], "faces": []}
            for fd in fr["faces"]:
                face = Face(box=tuple(fd["box"]), confidence=fd["confidence"],
                            detect_confidence=fd.get("detect_confidence", fd["confidence"]),
                            landmarks=fd.get("landmarks"), track=fd["track"])
                thumb = None
                if thumbs and len(faces) < len(thumbs) and thumbs[len(faces)]:
                    buf = np.frombuffer(thumbs[len(faces)], np.uint8)
                    thumb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
                fres = FaceResult(frame=len(frames), face=face, crop=thumb, thumb=thumb,
                                  probs=dict(fd.get("fake_probability") or {}),
                                  fake_probability=fd.get("ensemble_fake_probability"))
                row["faces"].append(len(faces))
                faces.append(fres)
            frames.append(row)
        return cls(info=info, frames=frames, faces=faces, tracks=j.get("tracks", []), models=j.get("models", {}),
                   verdict=j["verdict"], fake_probability=j.get("fake_probability"), ensemble=j.get("ensemble", {}),
                   timings_s=j.get("timings_s", {}), settings=j.get("settings", {}),
                   model_cards={n: dict(v) for n, v in (j.get("model_versions") or {}).items()}, images=[],
                   created=j.get("created", ""))

    def to_json(self) -> dict:
        frames = []
        for fr in self.frames:
            faces = []
            for k in fr["faces"]:
                fres = self.faces[k]
                faces.append({
                    "box": [round(float(v), 1) for v in fres.face.box],
                    "confidence": fres.face.confidence,
                    "detect_confidence": fres.face.detect_confidence,
                    "track": fres.face.track,
                    "landmarks": fres.face.landmarks,
                    "fake_probability": {m: _r(p) for m, p in fres.probs.items()},
                    "ensemble_fake_probability": _r(fres.fake_probability),
                })
            frames.append({"index": fr["index"], "time_s": fr["time_s"], "faces": faces})
        return {
            "input": self.info.to_dict(),
            "verdict": self.verdict,
            "fake_probability": _r(self.fake_probability),
            "models": self.models,
            "ensemble": self.ensemble,
            "frames": frames,
            "tracks": self.tracks,
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
            "settings": self.settings,
            "model_versions": {n: {"version": c.get("version"), "sha256": c.get("sha256"),
                                   "architecture": c.get("architecture")} for n, c in self.model_cards.items()},
            "created": self.created,
        }


def _r(p):
    return None if p is None else round(float(p), 6)


class Analyzer:
    """Loads the chosen detectors and the face detector once; `analyze` runs the whole pipeline on one input."""

    def __init__(self, models: list[str] | None = None, device: str | None = None, face_threshold: float = 0.9,
                 dirs: list[Path] | None = None, detect_size: int = 640, min_face: int = 24):
        t0 = time.perf_counter()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        cards = discover_models(dirs)
        self.policy = load_policy(dirs)
        usable = {n: c for n, c in cards.items() if isinstance(c, ModelCard)}
        self.broken = {n: str(c) for n, c in cards.items() if not isinstance(c, ModelCard)}
        names = list(models) if models else default_model_names(cards, self.policy)
        if not names:
            raise NoModelsError("no detector models installed: run `python -m core weights fetch mesonet` "
                                "(or put model cards in weights/); see README")
        unknown = [n for n in names if n not in usable]
        if unknown:
            hint = f"; installed: {', '.join(sorted(usable)) or 'none'}"
            bad = [f"{n} ({self.broken[n]})" for n in unknown if n in self.broken]
            raise NoModelsError(f"unknown or unusable model(s): {', '.join(bad or unknown)}{hint}")
        self.detectors: dict[str, Detector] = {}
        for n in names:
            self.detectors[n] = load_detector(usable[n].path, device=self.device)
        self.cards = {n: d.card for n, d in self.detectors.items()}
        self.face_detector = FaceDetector(threshold=face_threshold, detect_size=detect_size, min_face=min_face,
                                          device=self.device)
        self._cam_lock = threading.Lock()
        self.load_s = time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------------- public
    def analyze(self, path: str | Path, frames: int = 32, face_threshold: float | None = None,
                models: list[str] | None = None, cam: bool = False, progress: ProgressFn | None = None,
                frame_transform: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
                sha256: str | None = None, ensemble_models: list[str] | None = None) -> Analysis:
        """Analyse one input. Raises MediaError for unusable input. Every model in `models` is scored; the verdict
        combines `ensemble_models` (default: all of them), the others are shown beside it.

        The named stages, each callable (and timed) alone: sample -> detect -> crop (`faces_of`, streamed in chunks
        of frames so that a long video is never held whole) -> score -> decide -> explain."""
        if frames < 1:
            raise ValueError("frames must be at least 1")
        names = self._select(models)
        ens_members = names if ensemble_models is None else [n for n in names if n in ensemble_models]
        if not ens_members:
            raise NoModelsError(f"no ensemble model among the chosen ones ({', '.join(names)})")
        prog = progress or (lambda stage, frac: None)
        t_start = time.perf_counter()
        timings = {"load": self.load_s, "decode": 0.0, "faces": 0.0, "models": 0.0, "explain": 0.0}
        t = time.perf_counter()
        prog("decode", 0.0)
        media = open_media(path, sha256=sha256)
        timings["decode"] += time.perf_counter() - t
        thr = self.face_detector.threshold if face_threshold is None else float(face_threshold)
        found = self.faces_of(media, frames, thr, self._crop_specs(names), frame_transform, timings, prog)
        if not found.faces and media.info.kind == "image":
            found = self.turned(media, found, frames, thr, self._crop_specs(names), frame_transform, timings, prog)
        media.info.warnings.extend(self.caveats(found, names))
        t = time.perf_counter()
        scores = self.score(found, names, prog)
        timings["models"] += time.perf_counter() - t
        decision = self.decide(found, scores, names, ens_members)
        if cam and found.faces:
            t = time.perf_counter()
            self.explain(found, names, scores.model_out, prog)
            timings["explain"] += time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        found.crops_by_spec.clear()
        release_memory()
        prog("done", 1.0)
        return Analysis(
            info=media.info, frames=found.frame_rows, faces=found.faces, tracks=decision.tracks,
            models=scores.model_out, verdict=decision.verdict, fake_probability=decision.fake_probability,
            ensemble=decision.ensemble, timings_s=timings,
            settings={"frames": frames, "face_threshold": thr, "models": names, "cam": cam,
                      "device": str(self.device)},
            model_cards={n: self.cards[n].to_dict() for n in names}, images=found.images,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), crop_specs={n: self._spec(self.cards[n]) for n in names},
        )

    # ------------------------------------------------------------------------------------------------- stages
    def sample(self, media, frames: int,
               frame_transform: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None) -> Iterator[list[Frame]]:
        """Stage sample: `frames` frames spread over the whole input, in chunks of CHUNK (a perturbation, if
        given, applied to each chunk)."""
        it = media.frames(frames)
        while True:
            chunk = list(itertools.islice(it, CHUNK))
            if not chunk:
                return
            if frame_transform is not None:
                for fr, img in zip(chunk, frame_transform([f.image for f in chunk])):
                    fr.image = img
            yield chunk

    def detect(self, chunk: list[Frame], threshold: float) -> list[list[Face]]:
        """Stage detect: the confirmed faces of each frame (dual-stage MTCNN, padded pass where none)."""
        return self.face_detector.detect([f.image for f in chunk], threshold=threshold)

    @staticmethod
    def crop(frame: Frame, faces: list[Face], specs: list[tuple[int, float, str]]) -> list[tuple[FaceResult, dict]]:
        """Stage crop: per face, the FaceResult (gallery crop, first spec's crop) and its crop for every spec."""
        out = []
        for face in faces:
            base = crop_face(frame.image, face.box, size=specs[0][0], margin=specs[0][1], mode=specs[0][2])
            fres = FaceResult(frame=-1, face=face, crop=base,
                              thumb=crop_face(frame.image, face.box, size=GALLERY_CROP[0], margin=GALLERY_CROP[1],
                                              mode=GALLERY_CROP[2]))
            out.append((fres, {spec: base if spec == specs[0] else crop_face(frame.image, face.box, size=spec[0],
                                                                             margin=spec[1], mode=spec[2])
                               for spec in specs}))
        return out

    def faces_of(self, media, frames: int, threshold: float, specs: list[tuple[int, float, str]],
                 frame_transform=None, timings: dict | None = None, progress: ProgressFn | None = None) -> Found:
        """sample -> detect -> crop over the whole input, chunk by chunk; then faces linked into tracks."""
        timings = timings if timings is not None else {"decode": 0.0, "faces": 0.0}
        prog = progress or (lambda stage, frac: None)
        found = Found(specs=specs, crops_by_spec={s: [] for s in specs})
        chunks = self.sample(media, frames, frame_transform)
        done = 0
        while True:
            t = time.perf_counter()
            chunk = next(chunks, None)  # MediaError propagates: unusable input
            timings["decode"] += time.perf_counter() - t
            if chunk is None:
                break
            t = time.perf_counter()
            for fr, fl in zip(chunk, self.detect(chunk, threshold)):
                row = {"index": fr.index, "time_s": fr.time_s, "faces": []}
                for fres, crops in self.crop(fr, fl, specs):
                    fres.frame = len(found.frame_rows)
                    row["faces"].append(len(found.faces))
                    found.faces.append(fres)
                    for spec, c in crops.items():
                        found.crops_by_spec[spec].append(c)
                found.frame_rows.append(row)
                found.images.append(_display_copy(fr.image))
            timings["faces"] += time.perf_counter() - t
            done += len(chunk)
            prog("faces", min(done / max(min(frames, media.info.frame_count or frames), 1), 1.0))
            del chunk
        if not found.frame_rows:
            raise MediaError("no frame could be decoded")
        link_tracks([[found.faces[k].face for k in row["faces"]] for row in found.frame_rows])
        return found

    def score(self, found: Found, names: list[str], progress: ProgressFn | None = None) -> Scores:
        """Stage score: every model on its own crops; per face and per track. A failing model is reported with its
        error and scores nothing (never a made-up value)."""
        prog = progress or (lambda stage, frac: None)
        faces = found.faces
        model_out: dict[str, dict] = {}
        track_ids = sorted({f.face.track for f in faces})
        track_probs: dict[int, dict[str, float | None]] = {tid: {} for tid in track_ids}
        for mi, name in enumerate(names):
            det = self.detectors[name]
            card = det.card
            model_out[name] = {"fake_probability": None, "vote": None, "error": None, "kind": card.kind}
            if not faces:
                continue
            crops = found.crops_by_spec[self._spec(card)]
            try:
                if card.kind == "frame":
                    probs = det.predict(crops)
                    for fres, p in zip(faces, probs):
                        fres.probs[name] = float(p)
                    for tid in track_ids:
                        track_probs[tid][name] = ensemble.aggregate_track(
                            [float(p) for f, p in zip(faces, probs) if f.face.track == tid])
                else:
                    seqs = [[c for f, c in zip(faces, crops) if f.face.track == tid] for tid in track_ids]
                    probs = det.predict_sequences(seqs)
                    for tid, p in zip(track_ids, probs):
                        track_probs[tid][name] = float(p)
                        for f in faces:
                            if f.face.track == tid:
                                f.probs[name] = float(p)
                if not np.all(np.isfinite(probs)):
                    raise FloatingPointError("model produced a non-finite score")
            except Exception as e:  # a failing model is reported, never replaced by a made-up score
                model_out[name]["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
                for f in faces:
                    f.probs[name] = None
                for tid in track_ids:
                    track_probs[tid][name] = None
            prog("models", (mi + 1) / len(names))
        return Scores(model_out=model_out, track_ids=track_ids, track_probs=track_probs)

    def decide(self, found: Found, scores: Scores, names: list[str], ens_members: list[str]) -> Decision:
        """Stage decide: each face's and each track's ensemble, and the verdict of the most suspicious track (fills
        each model's video-level score and vote in `scores.model_out`)."""
        faces, frame_rows, model_out = found.faces, found.frame_rows, scores.model_out
        for f in faces:  # each face's own ensemble score (gallery borders)
            f.fake_probability = ensemble.combine({m: f.probs.get(m) for m in ens_members}, self.cards,
                                                  self.policy)["fake_probability"]
        tracks = []
        for tid in scores.track_ids:
            members = [f for f in faces if f.face.track == tid]
            ens = ensemble.combine({m: p for m, p in scores.track_probs[tid].items() if m in ens_members},
                                   self.cards, self.policy)
            tracks.append({
                "id": tid,
                "frames": [frame_rows[f.frame]["index"] for f in members],
                "faces": len(members),
                "mean_confidence": round(float(np.mean([f.face.confidence for f in members])), 4),
                "fake_probability": {m: _r(p) for m, p in scores.track_probs[tid].items()},
                "ensemble": ens,
            })
        if not faces:
            verdict, fake_p = "no_face", None
            ens_video = {"fake_probability": None, "verdict": "no_face", "votes": {}, "thresholds": {},
                         "members": [], "reason": "no face was found in any sampled frame", "track": None}
        else:
            scored = [tr for tr in tracks if tr["ensemble"]["fake_probability"] is not None]
            if scored:
                deciding = max(scored, key=lambda tr: (tr["ensemble"]["fake_probability"], tr["faces"]))
            else:
                deciding = max(tracks, key=lambda tr: tr["faces"])
            ens_video = dict(deciding["ensemble"])
            ens_video["track"] = deciding["id"]
            if len(tracks) > 1:
                ens_video["reason"] += f"; track {deciding['id']} is the most suspicious of {len(tracks)} face tracks"
            verdict, fake_p = ens_video["verdict"], ens_video["fake_probability"]
            for name in names:
                p = deciding["fake_probability"].get(name)
                if p is not None:
                    model_out[name]["fake_probability"] = p
                    model_out[name]["vote"] = ensemble.vote(p, ensemble.decision_of(self.cards[name]))
                model_out[name]["track"] = deciding["id"]
        for name in names:
            model_out[name]["threshold"] = ensemble.decision_of(self.cards[name])
            model_out[name]["in_ensemble"] = name in ens_members
        return Decision(tracks=tracks, verdict=verdict, fake_probability=fake_p, ensemble=ens_video)

    def explain(self, found: Found, names: list[str], model_out: dict, progress: ProgressFn | None = None) -> None:
        """Stage explain: Grad-CAM of every scored model over its own input crop of every face (a model whose
        explanation fails gets a `cam_error`)."""
        from .explain import gradcam_overlays

        prog = progress or (lambda stage, frac: None)
        for mi, name in enumerate(names):
            if model_out[name]["error"]:
                continue
            det = self.detectors[name]
            crops = found.crops_by_spec[self._spec(det.card)]
            try:
                with self._cam_lock:  # hooks on a shared model: one explanation at a time
                    overlays = gradcam_overlays(det, crops)
            except Exception as e:
                model_out[name]["cam_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                continue
            for f, o, c in zip(found.faces, overlays, crops):
                f.cams[name] = o
                f.inputs[name] = _thumbnail(det.view(c), INPUT_THUMB)
            prog("explain", (mi + 1) / len(names))

    def turned(self, media, found: Found, frames: int, threshold: float, specs: list[tuple[int, float, str]],
               frame_transform=None, timings: dict | None = None, progress: ProgressFn | None = None) -> Found:
        """An image with no upright face (MTCNN finds upright faces only), e.g. a sideways photo that lost its EXIF
        orientation tag: detect again with the image turned a quarter, three quarters and half a turn; the first turn
        that finds a face is analysed, with a warning and `rotation` saying so. Otherwise `found` (no face). The
        same frames are decoded on every pass, so their decode warnings are kept from the first one only."""
        kept = list(media.info.warnings)
        for k in TURNS:
            def turn(images, k=k):
                images = frame_transform(images) if frame_transform is not None else images
                return [np.ascontiguousarray(np.rot90(im, k)) for im in images]

            again = self.faces_of(media, frames, threshold, specs, turn, timings, progress)
            media.info.warnings[:] = kept
            if again.faces:
                deg = 90 * k
                media.info.warnings.append(f"no upright face: one was found with the image turned {deg} degrees "
                                           "counter-clockwise, and the turned image was analysed")
                media.info.rotation = (media.info.rotation + deg) % 360  # as for a video's display matrix
                return again
        return found

    # ---------------------------------------------------------------------------------------------- helpers
    def caveats(self, found: Found, names: list[str]) -> list[str]:
        """The measured weaknesses (cards' `caveats`) of the chosen models on this kind of input, one warning each:
        "pre_cropped", a face that fills its image (a pre-cropped face, found only on the padded detection pass);
        "low_resolution", faces whose boxes are under LOW_RES_FACE_PX source pixels on their shorter side (the
        median over the faces found), as in a small image or a face far from the camera in a low-resolution video."""
        out = []
        if any(f.face.extra.get("padded_detection") for f in found.faces):
            out += [f"{n} on a face that fills its image: {self.cards[n].caveats['pre_cropped']}"
                    for n in names if self.cards[n].caveats.get("pre_cropped")]
        side = face_side_px(found.faces)
        if side is not None and side < LOW_RES_FACE_PX:
            out += [f"{n} on a low-resolution face (median face box {side:.0f} px, under {LOW_RES_FACE_PX}): "
                    f"{self.cards[n].caveats['low_resolution']}"
                    for n in names if self.cards[n].caveats.get("low_resolution")]
        return out

    def _select(self, models: list[str] | None) -> list[str]:
        if not models:
            return list(self.detectors)
        unknown = [m for m in models if m not in self.detectors]
        if unknown:
            raise NoModelsError(f"model(s) not loaded: {', '.join(unknown)}; loaded: {', '.join(self.detectors)}")
        return list(models)

    @staticmethod
    def _spec(card: ModelCard) -> tuple[int, float, str]:
        return card.crop_spec

    def _crop_specs(self, names: list[str]) -> list[tuple[int, float, str]]:
        specs: list[tuple[int, float, str]] = []
        for n in names:
            s = self._spec(self.cards[n])
            if s not in specs:
                specs.append(s)
        return specs


def release_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps it otherwise, and a long-lived server's RSS creeps up with
    every analysis). A no-op where malloc_trim does not exist."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def face_side_px(faces: list[FaceResult]) -> float | None:
    """The median over `faces` of each face box's shorter side in source pixels (None without faces)."""
    if not faces:
        return None
    return float(np.median([min(f.face.box[2] - f.face.box[0], f.face.box[3] - f.face.box[1]) for f in faces]))


def _thumbnail(img: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = side / max(h, w)
    return img.copy() if s >= 1 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _display_copy(image: np.ndarray) -> bytes:
    """A JPEG (q90) of the frame with its long side at most 960 px: a few dozen KB instead of megabytes, so
    cached analyses stay small."""
    import cv2

    h, w = image.shape[:2]
    s = DISPLAY_LONG_SIDE / max(h, w)
    small = image if s >= 1 else cv2.resize(image, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("could not encode the display copy of a frame")
    return buf.tobytes()


def installed_models(dirs: list[Path] | None = None) -> tuple[dict[str, ModelCard], dict[str, str], list[str]]:
    """(usable cards, unusable name -> reason, default ensemble names)."""
    found = discover_models(dirs)
    cards = {n: c for n, c in found.items() if isinstance(c, ModelCard)}
    broken = {n: str(c) for n, c in found.items() if isinstance(c, CardError)}
    return cards, broken, default_model_names(cards, load_policy(dirs))
