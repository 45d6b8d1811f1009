"""Command line: `python -m core {analyze,evaluate,robustness,bench,weights} ...` (see README).

Progress and logs go to stderr; with `--json -` stdout carries only the JSON. Exit status: 0 success (no_face
included), 2 unusable input (`error: <path>: <reason>` on stderr; the other inputs are still analysed), 1 for
other failures (no models installed, every model failed). Set TBD_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_atomic(dest: str, text: str | bytes, inputs: list[str]) -> None:
    """Write text (or bytes) to dest (never over one of the inputs), via a temp file in the same folder."""
    d = Path(dest).resolve()
    for i in inputs:
        try:
            if Path(i).exists() and d.exists() and os.path.samefile(d, i):
                raise ValueError(f"refusing to overwrite the input {i} with output")
        except OSError:
            pass
    d.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tbd-", dir=str(d.parent))
    try:
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, d)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _emit_json(obj, dest: str | None, inputs: list[str]) -> None:
    if dest is None:
        return
    text = json.dumps(obj, indent=2, default=_json_default)
    if dest == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        _write_atomic(dest, text + "\n", inputs)
        _log(f"wrote {dest}")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _models_arg(s: str | None) -> list[str] | None:
    return [m.strip() for m in s.split(",") if m.strip()] if s else None


def _analyzer(args):
    from .analyze import Analyzer

    return Analyzer(models=_models_arg(getattr(args, "models", None)), device=args.device,
                    face_threshold=getattr(args, "face_threshold", 0.9))


# ----------------------------------------------------------------------------------------------- analyze
def cmd_analyze(args) -> int:
    from .media import MediaError
    from .report import ReportError, render_html, render_pdf

    if not 0 < args.face_threshold <= 1:
        _err("--face-threshold must be in (0, 1]")
        return 2
    if args.frames < 1:
        _err("--frames must be at least 1")
        return 2
    from .analyze import Analyzer, default_model_names, load_policy
    from .models.checkpoint import discover_models

    ensemble = _models_arg(args.models) or default_model_names(discover_models(), load_policy())
    beside = [m for m in _models_arg(args.beside) or [] if m not in ensemble]
    analyzer = Analyzer(models=(ensemble + beside) or None, device=args.device, face_threshold=args.face_threshold)
    _log(f"models: {', '.join(analyzer.detectors)} (loaded in {analyzer.load_s:.1f} s on {analyzer.device})"
         + (f"; outside the verdict: {', '.join(beside)}" if beside else ""))
    results, status = [], 0
    for i, path in enumerate(args.paths):
        try:
            bar = _StageBar(path) if not args.quiet else None
            a = analyzer.analyze(path, frames=args.frames, cam=args.cam, progress=bar,
                                 ensemble_models=[m for m in analyzer.detectors if m not in beside])
            if bar:
                bar.close()
        except MediaError as e:
            if bar:
                bar.close()
            _err(f"{path}: {e}")
            results.append({"input": {"path": str(path)}, "error": str(e)})
            status = 2
            continue
        j = a.to_json()
        results.append(j)
        if a.verdict == "error" and status == 0:
            status = 1
        for w in a.info.warnings:
            _log(f"warning: {path}: {w}")
        if args.report:
            dest = args.report if len(args.paths) == 1 else _numbered(args.report, i, path)
            try:
                _write_atomic(dest, render_pdf(a) if dest.lower().endswith(".pdf") else render_html(a), args.paths)
            except ReportError as e:
                _err(f"{dest}: {e}")
                status = 2
            else:
                _log(f"wrote {dest}")
        if args.json != "-":
            _print_summary(j)
    out = results[0] if len(args.paths) == 1 else results
    _emit_json(out, args.json, args.paths)
    return status


def _numbered(dest: str, i: int, path: str) -> str:
    p = Path(dest)
    return str(p.with_name(f"{p.stem}-{i + 1}-{Path(path).stem}{p.suffix or '.html'}"))


class _StageBar:
    def __init__(self, path: str):
        from tqdm import tqdm

        self.bar = tqdm(total=4, desc=Path(path).name[:30], file=sys.stderr, leave=False,
                        bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar}| {postfix}")
        self.seen = set()

    def __call__(self, stage: str, frac: float) -> None:
        self.bar.set_postfix_str(f"{stage} {frac:.0%}")
        if stage in ("faces", "models", "explain", "done") and frac >= 1.0 and stage not in self.seen:
            self.seen.add(stage)
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _print_summary(j: dict) -> None:
    inp = j["input"]
    p = j["fake_probability"]
    print(f"{inp['path']}: {j['verdict'].upper()}" + (f"  P(fake)={p:.3f}" if p is not None else ""))
    print(f"  {inp['kind']} {inp['width']}x{inp['height']}"
          + (f", {inp['duration_s']} s at {inp['fps']} fps" if inp.get("duration_s") else "")
          + f", {len(j['frames'])} frames sampled, {sum(len(f['faces']) for f in j['frames'])} faces, "
          f"{len(j['tracks'])} tracks")
    for name, m in j["models"].items():
        if m["error"]:
            print(f"  {name:24s} FAILED: {m['error']}")
        elif m["fake_probability"] is None:
            print(f"  {name:24s} no face scored")
        else:
            print(f"  {name:24s} P(fake)={m['fake_probability']:.3f} vote={m['vote']}")
    print(f"  {j['ensemble'].get('reason', '')}")
    print(f"  total {j['timings_s']['total']:.2f} s (decode {j['timings_s']['decode']:.2f}, faces "
          f"{j['timings_s']['faces']:.2f}, models {j['timings_s']['models']:.2f}, explain {j['timings_s']['explain']:.2f})")


# ---------------------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_csv, read_labels

    try:
        rows = read_labels(args.csv)
    except ValueError as e:
        _err(str(e))
        return 2
    if args.limit:
        rows = rows[: args.limit]
    analyzer = _analyzer(args)
    res = evaluate_csv(args.csv, analyzer, frames=args.frames, progress=not args.quiet, rows=rows)
    _print_metrics(res)
    _emit_json(res, args.json, [args.csv])
    return 0


def _print_metrics(res: dict) -> None:
    out = sys.stderr if res.get("_to_stderr") else sys.stdout
    print(f"{res['n_scored']} of {res['n_rows']} labelled files scored; {len(res['no_face'])} no face; "
          f"{len(res['errors'])} unreadable", file=out)
    for level in ("video", "frame"):
        print(f"\n{level}-level", file=out)
        print(f"  {'model':24s} {'n':>5s} {'AUC':>7s} {'acc':>7s}  confusion [[TN FP] [FN TP]]", file=out)
        for name, m in res[level].items():
            auc = "-" if m.get("auc") is None else f"{m['auc']:.4f}"
            acc = "-" if m.get("accuracy") is None else f"{m['accuracy']:.4f}"
            print(f"  {name:24s} {m['n']:5d} {auc:>7s} {acc:>7s}  {m.get('confusion_matrix', '-')}", file=out)
    ens = res["video"].get("ensemble", {})
    if ens.get("report"):
        r = ens["report"]
        print("\nensemble classification report (video level)", file=out)
        for k in ("real", "fake", "macro avg", "weighted avg"):
            v = r[k]
            print(f"  {k:14s} precision {v['precision']:.3f} recall {v['recall']:.3f} f1 {v['f1-score']:.3f} "
                  f"support {int(v['support'])}", file=out)
    for col, groups in res.get("breakdown", {}).items():
        print(f"\nby {col}", file=out)
        for g, ms in groups.items():
            e = ms["ensemble"]
            auc = "-" if e.get("auc") is None else f"{e['auc']:.3f}"
            acc = "-" if e.get("accuracy") is None else f"{e['accuracy']:.3f}"
            print(f"  {g[:60]:60s} n={e['n']:4d} AUC={auc} acc={acc}", file=out)


# -------------------------------------------------------------------------------------------- robustness
def cmd_robustness(args) -> int:
    from .evaluate import read_labels, robustness_csv
    from .perturb import parse_spec

    try:
        specs = [parse_spec(s) for s in (args.perturb or ["jpeg", "blur"])]
        read_labels(args.csv)
    except ValueError as e:
        _err(str(e))
        return 2
    analyzer = _analyzer(args)
    res = robustness_csv(args.csv, analyzer, specs, frames=args.frames, seed=args.seed, progress=not args.quiet)
    print(f"{'perturbation':14s} {'strength':>8s}  " + "  ".join(f"{m[:18]:>18s}" for m in res["models"] + ["ensemble"]))
    row = lambda name, s, r: print(f"{name:14s} {s:>8s}  " + "  ".join(
        f"{'-' if r['video'][m]['auc'] is None else format(r['video'][m]['auc'], '.4f'):>18s}"
        for m in res["models"] + ["ensemble"]))
    row("clean", "-", res["clean"])
    for name, entries in res["perturbations"].items():
        for e in entries:
            row(name, f"{e['strength']:g}", e)
    print("(video-level ROC AUC)")
    _emit_json(res, args.json, [args.csv])
    return 0


# --------------------------------------------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


# ------------------------------------------------------------------------------------------------- weights
def _floats(text: str | None, what: str) -> list[float] | None:
    if not text:
        return None
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{what} takes three comma-separated numbers (got {text!r})") from None
    if len(vals) != 3:
        raise ValueError(f"{what} takes three comma-separated numbers (got {text!r})")
    return vals


def cmd_weights(args) -> int:
    from .models.checkpoint import REPO_WEIGHTS, CardError, ModelCard, discover_models, load_detector, weights_dirs

    fetched = REPO_WEIGHTS / "fetched"
    if args.action == "list":
        cards = discover_models()
        if not cards:
            print("no models installed (looked in: " + ", ".join(str(d) for d in weights_dirs()) + ")")
            print("  run `python -m core weights fetch mesonet` to download the MesoNet reference models")
        for name, c in sorted(cards.items()):
            if isinstance(c, ModelCard):
                default = "default" if (c.ensemble or {}).get("default") else ""
                print(f"{name:24s} {c.architecture:16s} {c.kind:8s} {c.parameters:>10,d} params  {default:8s} {c.path}")
            else:
                print(f"{name:24s} UNUSABLE: {c}")
        return 0
    if args.action == "verify":
        bad = 0
        for name, c in sorted(discover_models().items()):
            try:
                if isinstance(c, CardError):
                    raise c
                load_detector(c.path)
                print(f"ok       {name}")
            except CardError as e:
                print(f"FAILED   {name}: {e}")
                bad += 1
        return 1 if bad else 0
    from .models import mesonet

    out = Path(args.out) if args.out else fetched
    if args.action == "import-torch":
        from .models.torch_import import import_torch

        need = [o for o in ("name", "arch", "backbone", "input_size") if not getattr(args, o)]
        if need:
            _err("import-torch needs " + ", ".join("--" + o.replace("_", "-") for o in need))
            return 2
        try:
            card = import_torch(args.what, out, args.name, args.arch, args.backbone, args.input_size,
                                frames=args.frames, classes=tuple(c.strip() for c in args.classes.split(",")),
                                sigmoid=args.sigmoid, mean=_floats(args.mean, "--mean"),
                                std=_floats(args.std, "--std"), interpolation=args.interpolation,
                                crop_size=args.crop_size, crop_margin=args.crop_margin, data=args.data,
                                license=args.license, force=args.force)
        except (CardError, ValueError) as e:
            _err(str(e))
            return 1
        print(f"installed {card} (not evaluated here; kept out of the default verdict)")
        return 0
    try:
        if args.action == "fetch":
            if args.what != "mesonet":
                _err(f"unknown weights {args.what!r}; known: mesonet")
                return 2
            cards = mesonet.fetch_mesonet(out)
        else:  # import-mesonet
            cards = mesonet.import_mesonet(args.what, out)
    except (ConnectionError, ValueError, FileNotFoundError) as e:
        _err(str(e))
        return 1
    for c in cards:
        print(f"installed {c}")
    return 0


# ----------------------------------------------------------------------------------------------- scan
def cmd_scan(args) -> int:
    from .analyze import NoModelsError
    from .cases import DatabaseError, default_db_path
    from .scan import MAX_BYTES, scan

    if args.frames < 1:
        _err("--frames must be at least 1")
        return 2
    if args.workers < 0:
        _err("--workers must be 0 (this process) or more")
        return 2
    if not 0 < args.face_threshold <= 1:
        _err("--face-threshold must be in (0, 1]")
        return 2
    db = Path(args.db) if args.db else default_db_path()
    for pth in args.paths:
        if Path(pth).resolve() == db.resolve():
            _err(f"{pth} is the case database itself")
            return 2
    try:
        summary = scan(args.paths, db, frames=args.frames, models=_models_arg(args.models), workers=args.workers,
                       reports=args.reports, rescan=args.rescan, device=args.device, ray_address=args.ray,
                       face_threshold=args.face_threshold,
                       max_bytes=int(args.max_mb * 1e6) if args.max_mb else MAX_BYTES, progress=not args.quiet,
                       log=_log)
    except (DatabaseError, NoModelsError) as e:
        _err(str(e))
        return 2
    except RuntimeError as e:  # e.g. --ray without a reachable cluster
        _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return 2
    for line in summary.lines():
        _log(line)
    _log(f"database: {db}")
    return 130 if summary.interrupted else 0


def cmd_serve(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        _err(f"serve needs FastAPI and uvicorn (pip install -r requirements.txt): {e}")
        return 2
    if not 0 < args.port < 65536:
        _err("--port must be between 1 and 65535")
        return 2
    from .api import MAX_UPLOAD_BYTES, serve

    serve(host=args.host, port=args.port, db_path=args.db, queue=args.queue,
          max_bytes=int(args.max_mb * 1e6) if args.max_mb else MAX_UPLOAD_BYTES)
    return 0


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m core", description="TBD deepfake-forensics engine")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("analyze", help="analyse videos, images or zips of frames")
    a.add_argument("paths", nargs="+")
    a.add_argument("--frames", type=int, default=32, help="frames sampled uniformly over the whole video (32)")
    a.add_argument("--face-threshold", type=float, default=0.9, help="face confirmation threshold (0.9)")
    a.add_argument("--models", help="comma-separated model names that form the verdict (default ensemble if omitted)")
    a.add_argument("--beside", help="comma-separated model names scored and reported but kept out of the verdict")
    a.add_argument("--json", metavar="FILE|-", help="write the JSON result (- for stdout)")
    a.add_argument("--report", metavar="FILE.html|FILE.pdf",
                   help="write the case report: self-contained HTML, or PDF when the name ends in .pdf")
    a.add_argument("--cam", action="store_true", help="compute Grad-CAM heatmaps (shown in the report)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_analyze)

    sc = sub.add_parser("scan", help="analyse every media file under folders into a case database (resumable)")
    sc.add_argument("paths", nargs="+", help="folders (walked recursively) and files")
    sc.add_argument("--db", help="the case database (default: $TBD_DATA/cases.sqlite or "
                                 "~/.local/share/tbd/cases.sqlite)")
    sc.add_argument("--frames", type=int, default=32)
    sc.add_argument("--face-threshold", type=float, default=0.9)
    sc.add_argument("--models", help="comma-separated model names (default ensemble if omitted)")
    sc.add_argument("--workers", type=int, default=0,
                    help="local worker processes (0: this process); with --ray, the number of actors")
    sc.add_argument("--ray", metavar="auto|local|ADDRESS",
                    help="run on a Ray cluster: auto (the running one), local (start one here) or its address")
    sc.add_argument("--reports", metavar="DIR", help="also write each file's JSON and HTML report here")
    sc.add_argument("--rescan", action="store_true", help="analyse files that are already in the database again")
    sc.add_argument("--max-mb", type=float, default=0, help="skip files larger than this (default 4295 MB)")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(func=cmd_scan)

    sv = sub.add_parser("serve", help="HTTP API (FastAPI): POST /v1/analyze, GET /v1/cases, docs at /docs")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--db", help="case database the API stores into and reads (default as for scan)")
    sv.add_argument("--max-mb", type=float, default=0, help="largest upload (default 537 MB)")
    sv.add_argument("--queue", type=int, default=32, help="analyses that may wait; more get 503 (32)")
    sv.set_defaults(func=cmd_serve)

    e = sub.add_parser("evaluate", help="metrics on a labelled CSV (path,label[,dataset,method])")
    e.add_argument("csv")
    e.add_argument("--json", metavar="OUT")
    e.add_argument("--frames", type=int, default=32)
    e.add_argument("--models")
    e.add_argument("--limit", type=int, default=0, help="only the first N labelled rows")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("robustness", help="metrics under perturbations, per strength")
    r.add_argument("csv")
    r.add_argument("--perturb", action="append", metavar="NAME:S1,S2",
                   help="jpeg:90,70,50,30 blur:1,2,4 noise:5,10 downscale:2,4 brightness:10,25 h264:23,35 "
                        "(repeatable)")
    r.add_argument("--json", metavar="OUT")
    r.add_argument("--frames", type=int, default=32)
    r.add_argument("--models")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_robustness)

    b = sub.add_parser("bench", help="speed and peak memory benchmark (prints numbers)")
    b.add_argument("--clip", default=None, help="the 10 s 1080p clip (default: the DFDC sample in ../shared)")
    b.add_argument("--frames", type=int, default=32)
    b.add_argument("--skip-long", action="store_true", help="skip the generated 10-minute 720p video")
    b.add_argument("--skip-naive", action="store_true", help="skip the straightforward pipeline")
    b.add_argument("--app-memory", action="store_true",
                   help="RSS of the Analyze page over repeated analyses (Streamlit AppTest, one process)")
    b.add_argument("--reruns", type=int, default=20)
    b.add_argument("--scan", action="store_true",
                   help="`core scan` throughput on 20 copies of the clip: plain loop, --workers 2, Ray with 2 actors")
    b.add_argument("--scenario", help=argparse.SUPPRESS)
    b.add_argument("--json", metavar="OUT")
    b.set_defaults(func=cmd_bench)

    w = sub.add_parser("weights", help="list, verify, fetch or import model weights")
    w.add_argument("action", choices=["list", "verify", "fetch", "import-mesonet", "import-torch"])
    w.add_argument("what", nargs="?", default="", help="fetch: mesonet; import-mesonet: folder with the .h5 files; "
                   "import-torch: a .pth/.pt state dict or .safetensors file")
    w.add_argument("--out", help="destination folder (default weights/fetched)")
    t = w.add_argument_group("import-torch (a model trained outside TBD)")
    t.add_argument("--name", help="model name (file names and the name shown everywhere)")
    t.add_argument("--arch", choices=["image_classifier", "cnn_lstm", "swin_seq"])
    t.add_argument("--backbone", choices=["efficientnet_b0", "tf_efficientnet_lite0", "resnext50_32x4d",
                                          "swin_tiny_patch4_window7_224"])
    t.add_argument("--input-size", type=int, help="crop size the model was trained on, in pixels")
    t.add_argument("--frames", type=int, default=1, help="sequence models: frames per clip it was trained on")
    t.add_argument("--classes", default="real,fake", help="output order (default real,fake)")
    t.add_argument("--sigmoid", action="store_true", help="one output logit for the second class")
    t.add_argument("--mean", help="three values (default: timm's for the backbone)")
    t.add_argument("--std", help="three values (default: timm's for the backbone)")
    t.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest", "area"])
    t.add_argument("--crop-size", type=int, default=256, help="face crop size before resizing (256)")
    t.add_argument("--crop-margin", type=float, default=0.3, help="face crop margin around the box (0.3)")
    t.add_argument("--data", default="", help="what it was trained on (goes into the card)")
    t.add_argument("--license", default="", help="the weights' license or terms (goes into the card)")
    t.add_argument("--force", action="store_true", help="replace an installed model of the same name")
    w.set_defaults(func=cmd_weights)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "weights" and args.action in ("fetch", "import-mesonet", "import-torch") and not args.what:
        _err("say what to fetch (mesonet) or which folder or file to import from")
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as e:
        if os.environ.get("TBD_DEBUG"):
            raise
        from .analyze import NoModelsError

        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        _err(msg if isinstance(e, NoModelsError) else f"{type(e).__name__}: {msg}")
        return 1
