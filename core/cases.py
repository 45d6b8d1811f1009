"""The case database: one SQLite file (standard library) holding every analysis a scan, the dashboard or the API
made, the files a scan skipped and why, and the analyst's notes and labels.

- One schema, versioned migrations (`PRAGMA user_version`); a newer database than this code refuses to open.
- A case is identified by its key: SHA-256 of the file + analysis settings + model versions (`case_key`), so the
  same file analysed the same way is one row, and a rescan with other settings or models is another.
- Writers: one at a time. `CaseDB(path, writer=True)` takes an exclusive lock file beside the database (`.lock`)
  for as long as it is open; a second writer is refused with a one-line reason (`DatabaseBusy`), never interleaved.
  Readers (the Cases page) open it read-only while a scan writes (WAL journal). Each row is its own transaction, so
  a crash loses at most the row in flight and never a finished one.

>>> with CaseDB("cases.sqlite", writer=True) as db:
...     db.add(analysis_json, path="clip.mp4", key=case_key(sha, settings, versions))
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import sqlite3
import time
from pathlib import Path

__all__ = ["CaseDB", "DatabaseBusy", "DatabaseError", "case_key", "store_analysis", "default_db_path", "SCHEMA_VERSION", "LABELS"]

LABELS = ("", "real", "fake", "unsure")
SCHEMA_VERSION = 1
MIGRATIONS = {  # version -> statements that bring version - 1 to it
    1: [
        """CREATE TABLE cases (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            sha256 TEXT,
            kind TEXT,
            verdict TEXT NOT NULL,
            fake_probability REAL,
            model_scores TEXT NOT NULL DEFAULT '{}',
            settings TEXT NOT NULL DEFAULT '{}',
            model_versions TEXT NOT NULL DEFAULT '{}',
            timings TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            source TEXT NOT NULL DEFAULT 'scan',
            created TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            label TEXT NOT NULL DEFAULT '' CHECK (label IN ('', 'real', 'fake', 'unsure')),
            analysis TEXT
        )""",
        "CREATE INDEX cases_sha256 ON cases (sha256)",
        "CREATE INDEX cases_verdict ON cases (verdict)",
        """CREATE TABLE faces (
            case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            jpeg BLOB NOT NULL,
            PRIMARY KEY (case_id, idx)
        )""",
        """CREATE TABLE skipped (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            reason TEXT NOT NULL,
            size INTEGER,
            created TEXT NOT NULL
        )""",
    ],
}
CASE_COLUMNS = ("id", "key", "path", "sha256", "kind", "verdict", "fake_probability", "model_scores", "settings",
                "model_versions", "timings", "error", "source", "created", "note", "label")
JSON_COLUMNS = ("model_scores", "settings", "model_versions", "timings")


class DatabaseError(RuntimeError):
    """The database cannot be used (corrupt, newer schema, unwritable): one line."""


class DatabaseBusy(DatabaseError):
    """Another process is writing this database."""


def default_db_path() -> Path:
    """The documented default: $TBD_DATA/cases.sqlite, else ~/.local/share/tbd/cases.sqlite (outside the repo)."""
    base = Path(os.environ.get("TBD_DATA") or Path.home() / ".local" / "share" / "tbd")
    return base / "cases.sqlite"


def case_key(sha256: str, settings: dict, model_versions: dict) -> str:
    """The identity of an analysis: the file's SHA-256, the settings that change its result, and the models'
    versions (their weights' SHA-256)."""
    relevant = {k: settings.get(k) for k in ("frames", "face_threshold", "models", "ensemble", "cam")}
    blob = json.dumps({"sha256": sha256, "settings": relevant, "models": model_versions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class CaseDB:
    def __init__(self, path: str | Path, writer: bool = False, timeout_s: float = 0.0):
        self.path = Path(path)
        self.writer = writer
        self._lock_fd = None
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock(timeout_s)
        elif not self.path.exists():
            raise DatabaseError(f"{self.path}: no such case database")
        try:
            if writer:
                self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self.conn.execute("PRAGMA journal_mode=WAL")
            else:
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.close()
            raise DatabaseError(f"{self.path}: not a usable case database ({e})") from None

    # ------------------------------------------------------------------------------------------- lifecycle
    def _take_lock(self, timeout_s: float) -> None:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise DatabaseBusy(f"{self.path} is being written by another process (pid {holder}); wait for "
                                       "it to finish or use another --db") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "CaseDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DatabaseError(f"{self.path} has schema version {version}, newer than this TBD ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        if not self.writer:
            raise DatabaseError(f"{self.path} has schema version {version}; open it for writing once to migrate")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[v]:
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {v}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def _write(self, sql: str, args=()) -> sqlite3.Cursor:
        """One statement in its own transaction."""
        if not self.writer:
            raise DatabaseError(f"{self.path} is open read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.execute(sql, args)
            self.conn.execute("COMMIT")
            return cur
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------------------------------- writing
    def add(self, result: dict, path: str, key: str, source: str = "scan", error: str | None = None,
            thumbs: list[bytes] | None = None) -> int:
        """Store one analysis (the `analyze` JSON, and its faces' JPEG gallery crops) or one per-file error
        (`error`, result may be partial), in one transaction; a row with the same key is replaced (a --rescan),
        keeping its note and label."""
        inp = result.get("input") or {}
        models = result.get("models") or {}
        old = self.conn.execute("SELECT note, label FROM cases WHERE key = ?", (key,)).fetchone()
        row = {
            "key": key, "path": str(path), "sha256": inp.get("sha256"), "kind": inp.get("kind"),
            "verdict": "error" if error else result.get("verdict", "error"),
            "fake_probability": result.get("fake_probability"),
            "model_scores": json.dumps({m: v.get("fake_probability") for m, v in models.items()}),
            "settings": json.dumps(result.get("settings") or {}),
            "model_versions": json.dumps({m: v.get("sha256") for m, v in (result.get("model_versions") or {}).items()}),
            "timings": json.dumps(result.get("timings_s") or {}), "error": error, "source": source,
            "created": _now(), "note": old["note"] if old else "", "label": old["label"] if old else "",
            "analysis": None if error else json.dumps(result),
        }
        cols = ", ".join(row)
        if not self.writer:
            raise DatabaseError(f"{self.path} is open read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("DELETE FROM faces WHERE case_id IN (SELECT id FROM cases WHERE key = ?)", (key,))
            self.conn.execute("DELETE FROM cases WHERE key = ?", (key,))
            cur = self.conn.execute(f"INSERT INTO cases ({cols}) VALUES ({', '.join('?' * len(row))})",
                                    tuple(row.values()))
            self.conn.executemany("INSERT INTO faces (case_id, idx, jpeg) VALUES (?, ?, ?)",
                                  [(cur.lastrowid, i, sqlite3.Binary(b)) for i, b in enumerate(thumbs or []) if b])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return int(cur.lastrowid)

    def skip(self, path: str, reason: str, size: int | None = None) -> None:
        """Record (or update) a file a scan left out, with its reason (one row per path: the latest scan's)."""
        self._write("INSERT OR REPLACE INTO skipped (path, reason, size, created) VALUES (?, ?, ?, ?)",
                    (str(path), reason, size, _now()))

    def annotate(self, case_id: int, note: str | None = None, label: str | None = None) -> None:
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of real, fake, unsure (got {label!r})")
        if note is not None:
            self._write("UPDATE cases SET note = ? WHERE id = ?", (note, case_id))
        if label is not None:
            self._write("UPDATE cases SET label = ? WHERE id = ?", (label, case_id))

    def delete(self, case_ids: list[int]) -> int:
        if not case_ids:
            return 0
        return self._write(f"DELETE FROM cases WHERE id IN ({', '.join('?' * len(case_ids))})",
                           tuple(int(i) for i in case_ids)).rowcount

    # ------------------------------------------------------------------------------------------- reading
    def done_keys(self, with_errors: bool = True) -> set[str]:
        """Keys already in the database (a per-file error is a finished row too, unless `with_errors` is False)."""
        q = "SELECT key FROM cases" + ("" if with_errors else " WHERE error IS NULL")
        return {r[0] for r in self.conn.execute(q)}

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0])

    def cases(self, verdicts: list[str] | None = None, p_min: float | None = None, p_max: float | None = None,
              model: str | None = None, since: str | None = None, until: str | None = None, text: str = "",
              order: str = "created", descending: bool = True, limit: int = 10_000) -> list[dict]:
        """Cases without their full analysis, filtered (verdicts, probability range, a model that scored them,
        created date range as ISO strings, path substring) and sorted."""
        where, args = [], []
        if verdicts:
            where.append(f"verdict IN ({', '.join('?' * len(verdicts))})")
            args += list(verdicts)
        if p_min is not None:
            where.append("fake_probability >= ?")
            args.append(float(p_min))
        if p_max is not None:
            where.append("fake_probability <= ?")
            args.append(float(p_max))
        if model:
            where.append("json_extract(model_scores, '$.\"' || ? || '\"') IS NOT NULL")
            args.append(model)
        if since:
            where.append("created >= ?")
            args.append(since)
        if until:
            where.append("created <= ?")
            args.append(until + "~" if len(until) == 10 else until)  # a bare date includes that day
        if text:
            where.append("path LIKE ? ESCAPE '\\'")
            args.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if order not in CASE_COLUMNS:
            raise ValueError(f"cannot sort by {order!r}")
        sql = (f"SELECT {', '.join(CASE_COLUMNS)} FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {order} {'DESC' if descending else 'ASC'}, id DESC LIMIT {int(limit)}")
        return [self._row(r) for r in self.conn.execute(sql, args)]

    def case(self, case_id: int | None = None, sha256: str | None = None) -> dict | None:
        """One case with its full analysis JSON (by id, or the newest for a file's SHA-256)."""
        if case_id is not None:
            r = self.conn.execute(f"SELECT {', '.join(CASE_COLUMNS)}, analysis FROM cases WHERE id = ?",
                                  (int(case_id),)).fetchone()
        else:
            r = self.conn.execute(f"SELECT {', '.join(CASE_COLUMNS)}, analysis FROM cases WHERE sha256 = ? "
                                  "ORDER BY created DESC, id DESC LIMIT 1", (sha256,)).fetchone()
        if r is None:
            return None
        out = self._row(r)
        out["analysis"] = json.loads(r["analysis"]) if r["analysis"] else None
        out["thumbs"] = [bytes(b[0]) for b in self.conn.execute(
            "SELECT jpeg FROM faces WHERE case_id = ? ORDER BY idx", (out["id"],))]
        return out

    def skipped(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT path, reason, size, created FROM skipped ORDER BY id")]

    @staticmethod
    def _row(r: sqlite3.Row) -> dict:
        out = {k: r[k] for k in CASE_COLUMNS}
        for k in JSON_COLUMNS:
            out[k] = json.loads(out[k]) if out[k] else {}
        return out

    def export_csv(self, rows: list[dict] | None = None) -> str:
        """Cases as CSV (one column per model score)."""
        rows = self.cases() if rows is None else rows
        models = sorted({m for r in rows for m in r["model_scores"]})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "path", "sha256", "kind", "verdict", "fake_probability", *[f"p_{m}" for m in models],
                    "error", "source", "created", "label", "note"])
        for r in rows:
            w.writerow([r["id"], r["path"], r["sha256"], r["kind"], r["verdict"], r["fake_probability"],
                        *[r["model_scores"].get(m) for m in models], r["error"] or "", r["source"], r["created"],
                        r["label"], r["note"]])
        return buf.getvalue()


def store_analysis(db_path: str | Path, a, name: str, source: str, timeout_s: float = 5.0) -> None:
    """Store one finished Analysis (the dashboard's or the API's) as a case under its own key, with its faces'
    gallery crops; `name` replaces the temp path of an upload. Raises DatabaseError (e.g. a scan is writing)."""
    settings = dict(a.settings, ensemble=a.ensemble.get("members") or a.settings.get("models"))
    versions = {n: c.get("sha256") for n, c in a.model_cards.items()}
    j = a.to_json()
    j["input"]["path"] = name
    with CaseDB(db_path, writer=True, timeout_s=timeout_s) as db:
        db.add(j, path=name, key=case_key(a.info.sha256, settings, versions), source=source, thumbs=a.face_thumbs())
