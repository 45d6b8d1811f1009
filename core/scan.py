"""Scan an archive: every media file under the given paths analysed once into a case database.

    python -m core scan PATH... --db cases.sqlite [--frames N] [--models a,b] [--workers N] [--reports DIR] [--rescan]

- Walks folders recursively without following symlinked folders; a symlinked file is followed only when its
  target stays inside the scanned tree. Content is sniffed (magic bytes, not extensions). Every file left out is
  recorded in the database with its reason (not media, empty, too big, unreadable, vanished, symlink out of the
  tree); the scan goes on.
- Idempotent and resumable: a file is done when its key (SHA-256 + settings + model versions, `core.cases.case_key`)
  is in the database; `--rescan` analyses it again. The driver alone writes the database, one transaction per file,
  so Ctrl-C or a crash loses at most the files in flight.
- `--workers N`: N local processes, each holding one loaded Analyzer (models load once per process); files are
  handed out as workers finish. `--ray auto|local|ADDRESS`: the same on a Ray cluster (an existing one: `auto` or
  its address; `local` starts one on this machine): a pool of actors (`--workers`, default one per cluster CPU),
  each holding one Analyzer; results stream back to the driver, which alone writes the database. Media travel by
  path when an actor's node sees the file (same size at the same path) and by bytes otherwise.
  A worker that dies takes only its in-flight files with it: each is retried once,
  then recorded as an error row.

>>> summary = scan(["archive/"], "cases.sqlite", frames=16)
"""

from __future__ import annotations

import json
import os
import resource
import stat
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .cases import CaseDB, case_key

__all__ = ["walk", "sniff", "scan", "ScanSummary", "MAX_BYTES"]

MAX_BYTES = 4 * 1024**3
WORKER_PEAKS_MB: list[float] = []  # after a --workers or --ray scan: peak RSS of the workers (the largest, or each)
_HEAD = 64


def sniff(head: bytes) -> str | None:
    """'image', 'video' or 'zip' from a file's first bytes; None when it is none of them."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if (head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
                         b"MM\x00*")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")):
        return "image"
    if (head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")  # MP4 / MOV / M4V / 3GP
            or head.startswith((b"\x1a\x45\xdf\xa3", b"FLV", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3",
                                b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"OggS"))
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI ") or (len(head) > 188 and head[0] == 0x47)):
        return "video"
    return None


@dataclass
class Candidate:
    path: Path
    size: int
    kind: str


@dataclass
class Skipped:
    path: Path
    reason: str
    size: int | None = None


def walk(paths: list[str | Path], max_bytes: int = MAX_BYTES) -> Iterator[Candidate | Skipped]:
    """Every file under `paths` (sorted, depth first) as a Candidate to analyse or a Skipped with its reason."""
    for top in paths:
        top = Path(top)
        if not top.exists() and not top.is_symlink():
            yield Skipped(top, "no such file or folder")
            continue
        root = top.resolve()
        if top.is_file() and not top.is_dir():
            yield _candidate(top, root.parent, max_bytes)
            continue
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False, onerror=None):
            dirnames.sort()
            for d in list(dirnames):
                if (Path(dirpath) / d).is_symlink():
                    dirnames.remove(d)
                    yield Skipped(Path(dirpath) / d, "symlinked folder (not followed)")
            for name in sorted(filenames):
                yield _candidate(Path(dirpath) / name, root, max_bytes)


def _candidate(p: Path, root: Path, max_bytes: int) -> Candidate | Skipped:
    try:
        if p.is_symlink():
            try:
                target = p.resolve(strict=True)
            except (FileNotFoundError, RuntimeError):
                return Skipped(p, "broken or looping symlink")
            if root not in target.parents and target != root:
                return Skipped(p, "symlink leaves the scanned tree (not followed)")
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            return Skipped(p, "not a regular file")
        if st.st_size == 0:
            return Skipped(p, "empty file", 0)
        if st.st_size > max_bytes:
            return Skipped(p, f"too big ({st.st_size / 1e6:.0f} MB > {max_bytes / 1e6:.0f} MB)", st.st_size)
        with open(p, "rb") as f:
            head = f.read(_HEAD)
    except FileNotFoundError:
        return Skipped(p, "vanished before it was read")
    except PermissionError:
        return Skipped(p, "unreadable (permission denied)")
    except OSError as e:
        return Skipped(p, f"unreadable ({e.strerror or e})")
    kind = sniff(head)
    if kind is None:
        return Skipped(p, "not media (content is not an image, video or zip)", st.st_size)
    return Candidate(p, st.st_size, kind)


@dataclass
class ScanSummary:
    analysed: int = 0
    already_done: int = 0
    skipped: int = 0
    errors: int = 0
    verdicts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False

    def lines(self) -> list[str]:
        rate = self.analysed / self.seconds if self.seconds else 0.0
        by = ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts.items())) or "none"
        return [f"scan {'interrupted' if self.interrupted else 'finished'} in {self.seconds:.1f} s: "
                f"{self.analysed} analysed ({rate * 60:.1f} files/min), {self.already_done} already in the database, "
                f"{self.skipped} skipped, {self.errors} per-file errors",
                f"verdicts: {by}"]


# ---------------------------------------------------------------------------------------------- workers
_WORKER = None


def _init_worker(models, device, face_threshold, threads):
    import torch

    from .analyze import Analyzer

    global _WORKER
    torch.set_num_threads(max(1, threads))
    _WORKER = Analyzer(models=models, device=device, face_threshold=face_threshold)


def _analyze_one(analyzer, path: str, sha: str, frames: int, ensemble: list[str] | None, reports: bool) -> dict:
    """(result JSON, HTML report or None, error or None) of one file; errors are data, not exceptions."""
    from .media import MediaError
    from .report import render_html

    try:
        a = analyzer.analyze(path, frames=frames, sha256=sha, ensemble_models=ensemble)
    except MediaError as e:
        return {"result": {"input": {"path": path, "sha256": sha}}, "error": str(e), "html": None}
    except Exception as e:  # one bad file never stops the scan
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return {"result": {"input": {"path": path, "sha256": sha}}, "error": f"{type(e).__name__}: {msg}",
                "html": None}
    return {"result": a.to_json(), "error": None, "html": render_html(a) if reports else None,
            "thumbs": a.face_thumbs()}


def _worker_job(path: str, sha: str, frames: int, ensemble: list[str] | None, reports: bool) -> dict:
    fault = os.environ.get("TBD_SCAN_FAULT", "")  # fault injection for the tests: "exit:<text in the path>"
    if fault.startswith("exit:") and fault[5:] and fault[5:] in path:
        os._exit(3)  # a worker that dies (out of memory, a crash in native code)
    return _analyze_one(_WORKER, path, sha, frames, ensemble, reports)


# ---------------------------------------------------------------------------------------------- driver
def scan(paths: list[str | Path], db_path: str | Path, frames: int = 32, models: list[str] | None = None,
         workers: int = 0, reports: str | Path | None = None, rescan: bool = False, device: str | None = None,
         face_threshold: float = 0.9, max_bytes: int = MAX_BYTES, progress: bool = True, log=None,
         analyzer=None, ray_address: str | None = None) -> ScanSummary:
    """Scan `paths` into the case database at `db_path` (see the module text). Raises DatabaseBusy when another
    process writes that database; KeyboardInterrupt ends the scan cleanly (summary.interrupted)."""
    from tqdm import tqdm

    from .analyze import default_model_names, load_policy
    from .media import file_sha256
    from .models.checkpoint import ModelCard, discover_models

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    summary = ScanSummary()
    found = discover_models()
    cards = {n: c for n, c in found.items() if isinstance(c, ModelCard)}
    names = list(models) if models else default_model_names(cards, load_policy())
    missing = [n for n in names if n not in cards]
    if not names or missing:
        from .analyze import NoModelsError

        raise NoModelsError(f"unknown or unusable model(s): {', '.join(missing) or 'none installed'}")
    versions = {n: cards[n].sha256 for n in names}
    settings = {"frames": frames, "face_threshold": face_threshold, "models": names, "ensemble": names, "cam": False}
    reports_dir = Path(reports) if reports else None
    if reports_dir:
        reports_dir.mkdir(parents=True, exist_ok=True)
    with CaseDB(db_path, writer=True) as db:
        done = set() if rescan else db.done_keys()
        first_path: dict[str, str] = {}  # key -> the path analysed for it in this scan
        todo: list[tuple[str, str, str]] = []  # (path, sha256, key)
        for item in walk(paths, max_bytes):
            if isinstance(item, Skipped):
                db.skip(str(item.path), item.reason, item.size)
                summary.skipped += 1
                continue
            try:
                sha = file_sha256(item.path)
            except FileNotFoundError:
                db.skip(str(item.path), "vanished before it was read", item.size)
                summary.skipped += 1
                continue
            except OSError as e:
                db.skip(str(item.path), f"unreadable ({e.strerror or e})", item.size)
                summary.skipped += 1
                continue
            key = case_key(sha, settings, versions)
            if key in first_path:  # the same content twice in one scan: analysed once
                db.skip(str(item.path), f"same content as {first_path[key]} (analysed once)", item.size)
                summary.skipped += 1
                continue
            first_path[key] = str(item.path)
            if key in done:
                summary.already_done += 1
                continue
            todo.append((str(item.path), sha, key))
        log(f"{len(todo)} files to analyse, {summary.already_done} already in {db_path}, {summary.skipped} skipped")
        bar = tqdm(total=len(todo), unit="file", desc="scan", file=sys.stderr, disable=not progress)

        def record(path: str, key: str, out: dict) -> None:
            res = out["result"]
            db.add(res, path=path, key=key, source="scan", error=out["error"], thumbs=out.get("thumbs"))
            if out["error"]:
                summary.errors += 1
                summary.verdicts["error"] += 1
            else:
                summary.analysed += 1
                summary.verdicts[res["verdict"]] += 1
                if reports_dir:
                    stem = f"{res['input']['sha256'][:16]}-{Path(path).stem}"
                    (reports_dir / f"{stem}.json").write_text(json.dumps(res, indent=1))
                    (reports_dir / f"{stem}.html").write_text(out["html"] or "")
            bar.update(1)

        try:
            if ray_address:
                _run_ray(todo, ray_address, workers, names, device, face_threshold, frames, reports_dir is not None,
                         record, log)
            elif workers and workers > 0:
                _run_pool(todo, workers, names, device, face_threshold, frames, reports_dir is not None, record, log)
            else:
                if analyzer is None:
                    from .analyze import Analyzer

                    analyzer = Analyzer(models=names, device=device, face_threshold=face_threshold)
                for path, sha, key in todo:
                    record(path, key, _analyze_one(analyzer, path, sha, frames, names, reports_dir is not None))
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_pool(todo, workers, names, device, face_threshold, frames, reports, record, log) -> None:
    """Files handed to `workers` processes as they finish; a pool that breaks (a worker died) is rebuilt and
    its in-flight files retried once, then recorded as errors."""
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = list(todo)
    attempts: dict[str, int] = {}
    ctx = mp.get_context("spawn")  # torch and fork do not mix

    while queue:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(names, device, face_threshold, threads))
        in_flight = {}
        broken = False
        try:
            while queue or in_flight:
                while queue and len(in_flight) < 2 * workers:  # a small lead keeps every worker busy
                    retry = queue[0][0] in attempts
                    if retry and in_flight:  # a retried file runs alone, so a second death is its own
                        break
                    path, sha, key = queue.pop(0)
                    fut = pool.submit(_worker_job, path, sha, frames, names, reports)
                    in_flight[fut] = (path, sha, key)
                    if retry:
                        break
                finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for fut in finished:
                    path, sha, key = in_flight.pop(fut)
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        in_flight[fut] = (path, sha, key)
                        break
                    record(path, key, out)
                if broken:
                    break
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)
            WORKER_PEAKS_MB[:] = [round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)]
        if broken:
            for fut, (path, sha, key) in list(in_flight.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    record(path, key, fut.result())  # finished before the pool broke
                    del in_flight[fut]
                    continue
                attempts[path] = attempts.get(path, 0) + 1
                if attempts[path] <= 1:
                    queue.insert(0, (path, sha, key))
                else:
                    record(path, key, {"result": {"input": {"path": path, "sha256": sha}}, "html": None,
                                       "error": "worker died twice while analysing this file"})
            log(f"a worker died; {len(in_flight)} in-flight file(s) handed out again (once each)")


# ---------------------------------------------------------------------------------------------- Ray
def _ray_actor_class():
    import ray

    @ray.remote
    class ScanActor:
        """One loaded Analyzer on a Ray worker; analyses by path (shared filesystem) or by bytes."""

        def __init__(self, models, device, face_threshold, threads):
            _init_worker(models, device, face_threshold, threads)

        def peak_rss_mb(self) -> float:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

        def sees(self, path: str, size: int) -> bool:
            try:
                return os.path.getsize(path) == size
            except OSError:
                return False

        def analyze(self, path: str, sha: str, frames: int, ensemble, reports: bool, data: bytes | None = None):
            if data is None:
                return _worker_job(path, sha, frames, ensemble, reports)
            import shutil
            import tempfile

            tmp = tempfile.mkdtemp(prefix="tbd-ray-")
            try:
                local = Path(tmp) / Path(path).name
                local.write_bytes(data)
                out = _worker_job(str(local), sha, frames, ensemble, reports)
                out["result"].setdefault("input", {})["path"] = path
                return out
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    return ScanActor


def _run_ray(todo, address, actors, names, device, face_threshold, frames, reports, record, log) -> None:
    """Files dispatched to a pool of Ray actors as they finish (at most two in flight per actor); an actor that
    dies is replaced and its file retried once on the new one, then recorded as an error."""
    try:
        import ray
        from ray.exceptions import RayActorError, WorkerCrashedError
    except ImportError as e:
        raise RuntimeError(f"--ray needs the ray package (pip install -r requirements.txt): {e}") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        threads = max(1, int(ray.cluster_resources().get("CPU", n)) // n)
        cls = _ray_actor_class()

        def new_actor():
            return cls.options(num_cpus=0).remote(names, device, face_threshold, threads)

        pool = [new_actor() for _ in range(n)]
        sees: dict[int, bool] = {}
        queue = list(todo)
        attempts: dict[str, int] = {}
        in_flight = {}  # ref -> (actor index, path, sha, key, actor handle)
        load = [0] * n
        log(f"Ray: {n} actor(s) on {address}")
        solo = [False] * n  # an actor running a retried file gets nothing else meanwhile
        while queue or in_flight:
            for i in range(n):
                while queue and load[i] < 2 and not solo[i]:
                    retry = queue[0][0] in attempts
                    if retry and load[i]:  # a retried file runs alone, so a second death is its own
                        break
                    path, sha, key = queue.pop(0)
                    if i not in sees:
                        sees[i] = ray.get(pool[i].sees.remote(path, os.path.getsize(path)))
                    data = None if sees[i] else Path(path).read_bytes()
                    ref = pool[i].analyze.remote(path, sha, frames, names, reports, data)
                    in_flight[ref] = (i, path, sha, key, pool[i])
                    load[i] += 1
                    solo[i] = retry
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                i, path, sha, key, actor = in_flight.pop(ref)
                if actor is pool[i]:  # (a file of an actor already replaced does not count on the new one)
                    load[i] -= 1
                    solo[i] = False
                try:
                    out = ray.get(ref)
                except (RayActorError, WorkerCrashedError):
                    attempts[path] = attempts.get(path, 0) + 1
                    if attempts[path] <= 1:
                        queue.insert(0, (path, sha, key))
                        log(f"a Ray actor died on {path}; retrying it once on a new actor")
                    else:
                        record(path, key, {"result": {"input": {"path": path, "sha256": sha}}, "html": None,
                                           "error": "Ray actor died twice while analysing this file"})
                    if actor is pool[i]:  # replace the dead actor once (its other files fail the same way)
                        try:
                            ray.kill(actor)
                        except Exception:
                            pass
                        pool[i] = new_actor()
                        sees.pop(i, None)
                        load[i] = sum(1 for v in in_flight.values() if v[0] == i and v[4] is pool[i])
                        solo[i] = False
                    continue
                record(path, key, out)
        try:
            WORKER_PEAKS_MB[:] = [round(float(x), 1) for x in ray.get([a.peak_rss_mb.remote() for a in pool])]
        except Exception:  # an actor gone at the very end: no memory figure, nothing else lost
            WORKER_PEAKS_MB[:] = []
    finally:
        if started:
            ray.shutdown()
