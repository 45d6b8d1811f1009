"""`core scan` and the case database: bad input recorded and skipped, idempotent and resumable, one writer,
worker processes giving the plain loop's results, a dying worker losing only its file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_video, run_cli

REPO = Path(__file__).resolve().parents[1]


def _faces(folder: Path, face_image: Path, n: int) -> list[Path]:
    """n different files (JPEG qualities) of one real face photo."""
    folder.mkdir(parents=True, exist_ok=True)
    im = Image.open(face_image).convert("RGB").resize((256, 256))
    out = []
    for i in range(n):
        p = folder / f"face{i:02d}.jpg"
        im.save(p, quality=60 + i)
        out.append(p)
    return out


def _rows(db: Path, sql: str = "SELECT path, verdict, fake_probability, error, key FROM cases ORDER BY path"):
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def test_bad_inputs_are_recorded_and_the_scan_goes_on(tmp_path, meso_weights, face_image):
    d = tmp_path / "archive"
    _faces(d, face_image, 1)
    (d / "notes.txt").write_text("not media")
    (d / "empty.mp4").write_bytes(b"")
    clip = make_video(tmp_path / "clip.mp4", n=20)
    (d / "truncated.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    (d / "sub").mkdir()
    os.symlink("..", d / "sub" / "loop")  # a symlink loop
    os.symlink("/etc/hostname", d / "outside")  # leaves the tree
    (d / "sub" / "copy.jpg").write_bytes((d / "face00.jpg").read_bytes())
    db = tmp_path / "cases.sqlite"
    p = run_cli("scan", str(d), "--db", str(db), "--frames", "4", "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    rows = {Path(r[0]).name: r for r in _rows(db)}
    assert set(rows) == {"face00.jpg", "truncated.mp4"}
    assert rows["face00.jpg"][1] in ("real", "fake", "uncertain") and rows["face00.jpg"][3] is None
    assert rows["truncated.mp4"][1] == "error" and "truncated" in rows["truncated.mp4"][3]
    skipped = dict((Path(a).name, b) for a, b in _rows(db, "SELECT path, reason FROM skipped"))
    assert skipped["notes.txt"].startswith("not media") and skipped["empty.mp4"] == "empty file"
    assert "symlink" in skipped["loop"] and "leaves the scanned tree" in skipped["outside"]
    assert skipped["copy.jpg"].startswith("same content as")
    assert "1 analysed" in p.stderr and "1 per-file errors" in p.stderr and "Traceback" not in p.stderr
    # a second run: nothing new, no duplicate rows (errors are finished rows too); --rescan redoes them
    p = run_cli("scan", str(d), "--db", str(db), "--frames", "4", "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0 and "0 analysed" in p.stderr and "2 already in the database" in p.stderr
    assert len(_rows(db)) == 2 and len(_rows(db, "SELECT * FROM skipped")) == 5
    p = run_cli("scan", str(d), "--db", str(db), "--frames", "4", "--quiet", "--rescan",
                env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0 and "1 analysed" in p.stderr and len(_rows(db)) == 2
    # other settings are another analysis of the same file
    p = run_cli("scan", str(d / "face00.jpg"), "--db", str(db), "--frames", "2", "--quiet",
                env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0 and len(_rows(db)) == 3


def test_unusable_arguments_exit_2(tmp_path, meso_weights):
    env = {"TBD_WEIGHTS": str(meso_weights)}
    assert run_cli("scan", str(tmp_path), "--db", str(tmp_path / "c.sqlite"), "--frames", "0", env=env).returncode == 2
    p = run_cli("scan", str(tmp_path), "--db", str(tmp_path / "c.sqlite"), "--models", "nope", env=env)
    assert p.returncode == 2 and "nope" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    p = run_cli("scan", str(tmp_path), "--db", str(tmp_path / "junk.sqlite"), env=env)
    assert p.returncode == 2 and "not a usable case database" in p.stderr
    assert (tmp_path / "junk.sqlite").read_bytes() == b"this is not sqlite" * 100  # never overwritten


def test_a_file_that_vanishes_mid_scan_is_recorded(tmp_path, meso_weights, face_image, monkeypatch):
    import core.media
    from core.cases import CaseDB
    from core.scan import scan

    files = _faces(tmp_path / "a", face_image, 3)
    real = core.media.file_sha256

    def vanishing(path):
        if Path(path).name == "face01.jpg":
            Path(path).unlink()
        return real(path)

    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    monkeypatch.setattr(core.media, "file_sha256", vanishing)
    s = scan([tmp_path / "a"], tmp_path / "c.sqlite", frames=1, progress=False, log=lambda m: None)
    assert s.analysed == 2 and s.skipped == 1 and not files[1].exists()
    with CaseDB(tmp_path / "c.sqlite") as db:
        assert db.skipped()[0]["reason"] == "vanished before it was read" and db.count() == 2


def test_killed_scan_resumes_without_duplicates_or_losses(tmp_path, meso_weights, face_image):
    files = _faces(tmp_path / "a", face_image, 8)
    db = tmp_path / "c.sqlite"
    env = dict(os.environ, TBD_WEIGHTS=str(meso_weights))
    env.pop("TBD_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "core", "scan", str(tmp_path / "a"), "--db", str(db),
                             "--frames", "1", "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            if db.exists() and len(_rows(db)) >= 2:
                break
        except sqlite3.OperationalError:
            pass
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait(timeout=30)
    before = _rows(db)
    assert 2 <= len(before) < len(files)
    p = run_cli("scan", str(tmp_path / "a"), "--db", str(db), "--frames", "1", "--quiet",
                env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    after = _rows(db)
    assert len(after) == len(files) and len({r[4] for r in after}) == len(files)  # every file once
    assert set(before) <= set(after)  # finished rows kept as they were
    assert f"{len(before)} already in the database" in p.stderr


def test_a_second_writer_is_refused_clearly(tmp_path, meso_weights, face_image):
    from core.cases import CaseDB, DatabaseBusy

    _faces(tmp_path / "a", face_image, 1)
    db = tmp_path / "c.sqlite"
    with CaseDB(db, writer=True):
        p = run_cli("scan", str(tmp_path / "a"), "--db", str(db), "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
        assert p.returncode == 2 and "is being written by another process" in p.stderr
        assert f"pid {os.getpid()}" in p.stderr and len(p.stderr.strip().splitlines()) == 1
        with pytest.raises(DatabaseBusy):
            CaseDB(db, writer=True)
        with CaseDB(db) as reader:  # readers are welcome while a writer holds it
            assert reader.count() == 0


def test_workers_give_the_plain_loop_results_and_a_dying_worker_loses_only_its_file(tmp_path, meso_weights,
                                                                                  face_image):
    files = _faces(tmp_path / "a", face_image, 5)
    make_video(tmp_path / "a" / "clip.mp4", n=12)
    env = {"TBD_WEIGHTS": str(meso_weights)}
    plain, pooled = tmp_path / "plain.sqlite", tmp_path / "pool.sqlite"
    assert run_cli("scan", str(tmp_path / "a"), "--db", str(plain), "--frames", "4", "--quiet", env=env).returncode == 0
    p = run_cli("scan", str(tmp_path / "a"), "--db", str(pooled), "--frames", "4", "--quiet", "--workers", "2",
                env=env)
    assert p.returncode == 0, p.stderr
    sql = "SELECT sha256, verdict, fake_probability, model_scores FROM cases ORDER BY sha256"
    a, b = _rows(plain, sql), _rows(pooled, sql)
    assert len(a) == len(files) + 1 and [r[:2] for r in a] == [r[:2] for r in b]
    for ra, rb in zip(a, b):
        assert (ra[2] is None and rb[2] is None) or abs(ra[2] - rb[2]) < 1e-5
        sa, sb = json.loads(ra[3]), json.loads(rb[3])
        assert sa.keys() == sb.keys() and all(
            (sa[k] is None and sb[k] is None) or abs(sa[k] - sb[k]) < 1e-5 for k in sa)
    # a worker dies on one file: that file is retried once, then an error row; the others are analysed
    crashed = tmp_path / "crash.sqlite"
    p = run_cli("scan", str(tmp_path / "a"), "--db", str(crashed), "--frames", "4", "--quiet", "--workers", "2",
                env={**env, "TBD_SCAN_FAULT": "exit:face02"})
    assert p.returncode == 0, p.stderr
    rows = {Path(r[0]).name: r for r in _rows(crashed)}
    assert len(rows) == len(files) + 1
    assert rows["face02.jpg"][1] == "error" and "worker died" in rows["face02.jpg"][3]
    assert all(r[3] is None for n, r in rows.items() if n != "face02.jpg")
    assert "a worker died" in p.stderr


def test_case_database_filters_notes_export_and_delete(tmp_path):
    from core.cases import CaseDB, case_key

    db = tmp_path / "c.sqlite"
    with CaseDB(db, writer=True) as w:
        for i, (verdict, p) in enumerate([("fake", 0.9), ("real", 0.1), ("uncertain", 0.5)]):
            res = {"input": {"sha256": f"{i:064x}", "kind": "image"}, "verdict": verdict, "fake_probability": p,
                   "models": {"m1": {"fake_probability": p}}, "settings": {"frames": 1},
                   "model_versions": {"m1": {"sha256": "abc"}}}
            w.add(res, path=f"/x/file{i}.jpg", key=case_key(f"{i:064x}", {"frames": 1}, {"m1": "abc"}))
        assert [c["verdict"] for c in w.cases(verdicts=["fake", "uncertain"], order="fake_probability")] == \
            ["fake", "uncertain"]
        assert [c["path"] for c in w.cases(p_min=0.4, p_max=0.6)] == ["/x/file2.jpg"]
        assert len(w.cases(model="m1")) == 3 and w.cases(model="m2") == [] and len(w.cases(text="file1")) == 1
        fake = w.cases(verdicts=["fake"])[0]
        w.annotate(fake["id"], note="checked with the source", label="fake")
        with pytest.raises(ValueError):
            w.annotate(fake["id"], label="maybe")
        full = w.case(fake["id"])
        assert full["note"] == "checked with the source" and full["analysis"]["verdict"] == "fake"
        csv_text = w.export_csv()
        assert csv_text.splitlines()[0].startswith("id,path,sha256") and "p_m1" in csv_text.splitlines()[0]
        assert len(csv_text.strip().splitlines()) == 4
        assert w.delete([fake["id"]]) == 1 and w.count() == 2
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 1


def test_ray_actors_give_the_plain_loop_results_and_survive_a_dying_actor(tmp_path, meso_weights, face_image,
                                                                        monkeypatch):
    ray = pytest.importorskip("ray") if os.environ.get("CI", "").lower() != "true" else __import__("ray")
    from core.scan import scan

    files = _faces(tmp_path / "a", face_image, 4)
    make_video(tmp_path / "a" / "clip.mp4", n=12)
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    monkeypatch.setenv("TBD_SCAN_FAULT", "exit:face01")  # an actor dies on this file, also on its retry
    quiet = dict(progress=False, log=lambda m: None)
    plain = scan([tmp_path / "a"], tmp_path / "plain.sqlite", frames=4, **quiet)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = scan([tmp_path / "a"], tmp_path / "ray.sqlite", frames=4, workers=2, ray_address="auto", **quiet)
        # a node that does not see the file gets its bytes: same result as by path
        from core.scan import _ray_actor_class

        actor = _ray_actor_class().remote(None, None, 0.9, 1)
        assert ray.get(actor.sees.remote("/nonexistent/face.jpg", 10)) is False
        by_bytes = ray.get(actor.analyze.remote("/nonexistent/face00.jpg", "x" * 64, 4, None, False,
                                                files[0].read_bytes()))
    finally:
        ray.shutdown()
    assert by_bytes["error"] is None and by_bytes["result"]["input"]["path"] == "/nonexistent/face00.jpg"
    assert plain.analysed == len(files) + 1 and s.analysed == len(files) and s.errors == 1
    sql = "SELECT path, verdict, fake_probability FROM cases ORDER BY path"
    a = {Path(r[0]).name: r for r in _rows(tmp_path / "plain.sqlite", sql)}
    b = {Path(r[0]).name: r for r in _rows(tmp_path / "ray.sqlite", sql)}
    assert b["face01.jpg"][1] == "error" and set(a) == set(b)
    for n in a:
        if n != "face01.jpg":
            assert a[n][1] == b[n][1] and (a[n][2] is None) == (b[n][2] is None)
            assert a[n][2] is None or abs(a[n][2] - b[n][2]) < 1e-5
    assert abs(by_bytes["result"]["fake_probability"] - a["face00.jpg"][2]) < 1e-5
