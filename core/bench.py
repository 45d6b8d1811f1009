"""`python -m core bench`: per-stage time and peak RSS, each scenario in its own process.

Scenarios:
- clip: the 10 s 1080p clip at N frames, models already loaded (as in the dashboard), default ensemble, no Grad-CAM.
- naive: the straightforward pipeline on the same clip with the same models: decode every frame and keep them,
  MTCNN at full resolution one frame at a time, then every face through every model one at a time.
- long: a generated 10-minute 720p video (made once from the clip's frames, cached) at the same N.
- scan (`--scan`): `core scan` throughput on 20 copies of the 10 s 1080p clip (remuxed with distinct metadata, so
  each is its own file and SHA-256), with the plain loop, `--workers 2` and Ray with 2 actors, each into a fresh
  database: files per minute and peak RSS per worker.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "make_long_video", "DEFAULT_CLIP"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared/data/aaronchong888__DeepFake-Detect/train_sample_videos/abofeumbvv.mp4"
CACHE = Path(os.environ.get("TBD_CACHE", Path.home() / ".cache" / "tbd"))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_long_video(src: Path, dest: Path, minutes: float = 10.0, fps: int = 25, loop_frames: int = 75) -> Path:
    """A 1280x720 H.264 video of `minutes` length that ping-pongs frames sampled over the whole of `src`."""
    import av
    import cv2

    if dest.exists() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    from .media import open_media

    # Frames spread over the whole source clip, so the long video shows the same faces the clip does.
    frames = [cv2.resize(f.image, (1280, 720), interpolation=cv2.INTER_AREA)
              for f in open_media(src).frames(loop_frames)]
    cycle = frames + frames[-2:0:-1]
    total = int(minutes * 60 * fps)
    tmp = dest.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 1280, 720, "yuv420p"
        st.options = {"preset": "ultrafast", "crf": "26", "g": "250"}
        vframes = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in cycle]
        for i in range(total):
            vf = vframes[i % len(vframes)]
            vf.pts = None
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    os.replace(tmp, dest)
    return dest


def _scenario_clip(path: str, frames: int) -> dict:
    from .analyze import Analyzer

    t0 = time.perf_counter()
    an = Analyzer()
    load = time.perf_counter() - t0
    an.analyze(path, frames=4)  # warm-up, as a dashboard that has served one request
    runs = [an.analyze(path, frames=frames) for _ in range(3)]
    best = min(runs, key=lambda r: r.timings_s["total"])
    return {"models": list(an.detectors), "load_s": round(load, 3), "timings_s": _round(best.timings_s),
            "total_s_runs": [round(r.timings_s["total"], 3) for r in runs], "faces": len(best.faces),
            "verdict": best.verdict, "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _scenario_long(path: str, frames: int) -> dict:
    from .analyze import Analyzer

    an = Analyzer()
    an.analyze(str(DEFAULT_CLIP) if DEFAULT_CLIP.exists() else path, frames=4)
    r = an.analyze(path, frames=frames)
    return {"models": list(an.detectors), "timings_s": _round(r.timings_s), "faces": len(r.faces),
            "duration_s": r.info.duration_s, "frame_count": r.info.frame_count,
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _scenario_naive(path: str, frames: int) -> dict:
    """The straightforward way, same models and the same dual-stage rule, no batching and no downscaling."""
    import av
    import torch
    from facenet_pytorch import MTCNN

    from .analyze import Analyzer
    from .faces import crop_face
    from .media import sample_indices

    an = Analyzer()
    mtcnn = MTCNN(keep_all=True, device="cpu")
    t = {}
    t0 = time.perf_counter()
    all_frames = []
    with av.open(path) as c:
        for fr in c.decode(video=0):
            all_frames.append(fr.to_ndarray(format="rgb24"))
    t["decode"] = time.perf_counter() - t0
    picked = [all_frames[i] for i in sample_indices(len(all_frames), frames)]
    t1 = time.perf_counter()
    faces = []
    for img in picked:
        boxes, probs = mtcnn.detect(img)
        if boxes is None:
            continue
        for b, p in zip(np.asarray(boxes, dtype=np.float32), np.asarray(probs, dtype=np.float32)):
            crop = crop_face(img, b, size=160, margin=0.5)
            b2, p2 = mtcnn.detect(crop)
            if b2 is not None and float(np.max(np.asarray(p2, dtype=np.float32))) >= 0.9:
                faces.append((img, b))
    t["faces"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    scores = []
    with torch.inference_mode():
        for img, b in faces:
            for name, det in an.detectors.items():
                size, margin, mode = det.card.crop_spec
                crop = crop_face(img, b, size=size, margin=margin, mode=mode)
                if det.card.kind == "frame":
                    scores.append(float(det.predict([crop])[0]))
                else:
                    scores.append(float(det.predict_sequences([[crop]])[0]))
    t["models"] = time.perf_counter() - t2
    t["total"] = time.perf_counter() - t0
    return {"models": list(an.detectors), "timings_s": _round(t), "faces": len(faces),
            "decoded_frames": len(all_frames), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def app_memory(clip: str, reruns: int = 20) -> dict:
    """RSS of one process serving the Analyze page (Streamlit AppTest) over repeated analyses of a clip, each with a
    different frame count so that every rerun is a fresh analysis (no cache hit)."""
    import gc

    from streamlit.testing.v1 import AppTest

    page = str(Path(__file__).resolve().parents[1] / "pages" / "1_Analyze.py")
    data = Path(clip).read_bytes()
    rss = []
    at = AppTest.from_file(page, default_timeout=600).run()  # one browser session, as one analyst
    at.file_uploader[0].upload(Path(clip).name, data, "video/mp4").run()
    for i in range(reruns):
        at.sidebar.slider[0].set_value(16 + i).run()
        at.button[0].click().run()
        if at.exception or at.error:
            raise RuntimeError(f"rerun {i}: {[e.value for e in at.exception] or [e.value for e in at.error]}")
        at.select_slider[0].set_value(1).run()  # another frame, as an analyst would
        gc.collect()
        rss.append(round(_rss_mb(), 1))
        print(f"rerun {i + 1:2d}: RSS {rss[-1]:.0f} MB", file=sys.stderr)
    return {"reruns": reruns, "rss_mb": rss, "first": rss[0], "last": rss[-1],
            "growth_after_6_mb": round(rss[-1] - rss[min(5, len(rss) - 1)], 1)}


def make_scan_clips(src: Path, dest: Path, n: int = 20) -> list[Path]:
    """n copies of `src` remuxed (no re-encode) with a distinct title each: distinct files, identical frames."""
    import av

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = dest / f"clip{i:02d}.mp4"
        if not p.exists() or p.stat().st_size == 0:
            with av.open(str(src)) as inp, av.open(str(p), "w") as o:
                o.metadata["title"] = f"tbd bench copy {i}"
                ist = inp.streams.video[0]
                ost = o.add_stream_from_template(ist)
                for pkt in inp.demux(ist):
                    if pkt.dts is None:
                        continue
                    pkt.stream = ost
                    o.mux(pkt)
        out.append(p)
    return out


def _scenario_scan(folder: str, frames: int, mode: str) -> dict:
    import tempfile

    from . import scan as scan_mod

    with tempfile.TemporaryDirectory() as tmp:
        kw = {"plain": {}, "workers": {"workers": 2}, "ray": {"workers": 2, "ray_address": "local"}}[mode]
        t = time.perf_counter()
        s = scan_mod.scan([folder], Path(tmp) / "bench.sqlite", frames=frames, progress=False,
                          log=lambda m: None, **kw)
        secs = time.perf_counter() - t
    peaks = [round(_peak_rss_mb(), 1)] if mode == "plain" else list(scan_mod.WORKER_PEAKS_MB)
    return {"mode": mode, "files": s.analysed, "errors": s.errors, "seconds": round(secs, 2),
            "files_per_min": round(60 * s.analysed / secs, 2) if secs else None, "worker_peak_rss_mb": peaks,
            "driver_peak_rss_mb": round(_peak_rss_mb(), 1)}


def _round(d: dict) -> dict:
    return {k: round(float(v), 3) for k, v in d.items()}


def _child(scenario: str, path: str, frames: int) -> dict:
    cmd = [sys.executable, "-m", "core", "bench", "--scenario", scenario, "--clip", path, "--frames", str(frames),
           "--json", "-"]
    env = dict(os.environ)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), env=env)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"scenario {scenario} failed: {tail}"}
    return json.loads(p.stdout)


def run_bench(args) -> int:
    frames = args.frames
    if getattr(args, "app_memory", False):
        clip = args.clip or str(DEFAULT_CLIP)
        res = app_memory(clip, args.reruns)
        print(f"Analyze page, {res['reruns']} analyses of {Path(clip).name} in one process: RSS {res['first']:.0f} MB "
              f"after the first, {res['last']:.0f} MB after the last; growth after the 6th (cache full): "
              f"{res['growth_after_6_mb']:+.0f} MB")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        return 0
    if args.scenario:  # inside a child process
        if args.scenario.startswith("scan-"):
            res = _scenario_scan(args.clip, frames, args.scenario[5:])
            sys.stdout.write(json.dumps(res) + "\n")
            return 0
        fn = {"clip": _scenario_clip, "long": _scenario_long, "naive": _scenario_naive}[args.scenario]
        res = fn(args.clip, frames)
        sys.stdout.write(json.dumps(res) + "\n")
        return 0
    clip = Path(args.clip) if args.clip else DEFAULT_CLIP
    if not clip.exists():
        print(f"error: {clip}: clip not found (pass --clip)", file=sys.stderr)
        return 2
    import torch

    if getattr(args, "scan", False):
        folder = CACHE / f"bench_scan_{clip.stem}"
        clips = make_scan_clips(clip, folder)
        out = {"clip": str(clip), "files": len(clips), "frames": frames, "cpus": os.cpu_count(), "modes": {}}
        for mode in ("plain", "workers", "ray"):
            r = _child(f"scan-{mode}", str(folder), frames)
            out["modes"][mode] = r
            if "error" in r:
                print(f"scan {mode}: {r['error']}")
                continue
            print(f"scan {mode}: {r['files']} files in {r['seconds']:.1f} s = {r['files_per_min']:.1f} files/min; "
                  f"peak RSS per worker {r['worker_peak_rss_mb']} MB (driver {r['driver_peak_rss_mb']:.0f} MB)")
        base = (out["modes"].get("plain") or {}).get("files_per_min")
        for mode in ("workers", "ray"):
            fpm = (out["modes"].get(mode) or {}).get("files_per_min")
            if base and fpm:
                out["modes"][mode]["speedup"] = round(fpm / base, 2)
                print(f"{mode} / plain throughput: {fpm / base:.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        return 0
    out = {"clip": str(clip), "frames": frames, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    print(f"bench on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, N={frames}", file=sys.stderr)
    out["clip_result"] = _child("clip", str(clip), frames)
    _show("10 s 1080p clip (models loaded, no Grad-CAM)", out["clip_result"])
    if not args.skip_naive:
        out["naive"] = _child("naive", str(clip), frames)
        _show("straightforward pipeline, same clip", out["naive"])
        if "error" not in out["naive"] and "error" not in out["clip_result"]:
            out["speedup"] = round(out["naive"]["timings_s"]["total"] / out["clip_result"]["timings_s"]["total"], 2)
            print(f"speed-up over the straightforward pipeline: {out['speedup']}x")
    if not args.skip_long:
        long_path = CACHE / f"bench_10min_720p_{clip.stem}.mp4"
        t = time.perf_counter()
        make_long_video(clip, long_path)
        print(f"10-minute 720p video ready ({long_path}, {long_path.stat().st_size / 1e6:.0f} MB, "
              f"{time.perf_counter() - t:.0f} s to make or find)", file=sys.stderr)
        out["long"] = _child("long", str(long_path), frames)
        _show("10-minute 720p video", out["long"])
        if "error" not in out["long"] and "error" not in out["clip_result"]:
            out["long_over_clip"] = round(out["long"]["timings_s"]["total"] / out["clip_result"]["timings_s"]["total"], 2)
            print(f"10-minute video / 10 s clip time: {out['long_over_clip']}x")
    if args.json:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


def _show(title: str, r: dict) -> None:
    if "error" in r:
        print(f"{title}: {r['error']}")
        return
    tm = r["timings_s"]
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in tm.items() if k not in ("total", "load"))
    print(f"{title}: total {tm['total']:.2f} s ({stages}); peak RSS {r['peak_rss_mb']:.0f} MB; "
          f"{r.get('faces')} faces; models {', '.join(r['models'])}")
