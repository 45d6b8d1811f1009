"""HTTP API (FastAPI): the `analyze` JSON for an uploaded file, and the case database.

    python -m core serve [--host 127.0.0.1] [--port 8000] [--db cases.sqlite] [--max-mb 512] [--queue 32]

- `POST /v1/analyze`: multipart upload in the field `file` (query: `frames`, `models`, `store`); the same JSON as
  `python -m core analyze`. The upload lives in a private temp folder (mode 700) only during the analysis. Over
  the size limit: 413; not media: 422; each with a one-line `detail`.
- `GET /v1/cases` (query: `verdict`, `limit`), `GET /v1/cases/{sha256}` (the newest analysis of that file), and
  `GET /healthz`. OpenAPI docs at `/docs`.
- With `TBD_API_KEY` set, every `/v1` call needs the header `X-API-Key` (else 401).
- Analyses run one at a time (the models are loaded once, on the first request); at most `queue` requests wait,
  more get 503 with `Retry-After` instead of piling up. Each analysis is stored as a case (`store=false` to skip);
  the response header `X-TBD-Stored` says whether it was.
"""


import os
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["create_app", "MAX_UPLOAD_BYTES"]

MAX_UPLOAD_BYTES = 512 * 1024**2
_CHUNK = 1024 * 1024


def create_app(db_path: "str | Path | None" = None, max_bytes: int = MAX_UPLOAD_BYTES, queue: int = 32,
               analyzer=None, max_frames: int = 128):
    from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, Response, UploadFile
    from fastapi.responses import JSONResponse

    from .cases import CaseDB, DatabaseError, default_db_path, store_analysis
    from .media import MediaError

    db_path = Path(db_path) if db_path else default_db_path()
    app = FastAPI(title="TBD: Truth Behind DeepFakes", version="1",
                  description="Deepfake-forensics engine: the `analyze` JSON for an uploaded video, image or zip of "
                              "frames, and the case database.")
    state = {"analyzer": analyzer, "waiting": 0}
    load_lock, run_lock, count_lock = threading.Lock(), threading.Lock(), threading.Lock()

    @app.middleware("http")
    async def refuse_big_uploads(request: Request, call_next):  # before the body is read, when the size is declared
        declared = request.headers.get("content-length")
        if request.url.path == "/v1/analyze" and declared and declared.isdigit() and int(declared) > max_bytes + 65536:
            return JSONResponse({"detail": f"upload larger than the limit of {max_bytes / 1e6:.0f} MB"},
                                status_code=413)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def one_line(request: Request, exc: HTTPException):  # every error: {"detail": "<one line>"}
        return JSONResponse({"detail": str(exc.detail).splitlines()[0][:300]}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    def check_key(request: Request) -> None:
        key = os.environ.get("TBD_API_KEY")
        if key and request.headers.get("x-api-key") != key:
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def get_analyzer():
        with load_lock:
            if state["analyzer"] is None:
                from .analyze import Analyzer

                state["analyzer"] = Analyzer()
            return state["analyzer"]

    @app.get("/healthz")
    def healthz() -> dict:
        an = state["analyzer"]
        return {"status": "ok", "models_loaded": list(an.detectors) if an else [], "waiting": state["waiting"]}

    @app.post("/v1/analyze", dependencies=[Depends(check_key)])
    def analyze(response: Response, file: UploadFile = File(..., description="video, image or zip of frames"),
                frames: int = Query(32, ge=1, le=max_frames), models: str | None = None, store: bool = True) -> dict:
        with count_lock:
            if state["waiting"] >= queue:
                raise HTTPException(503, f"busy: {queue} analyses are already waiting; retry later",
                                    headers={"Retry-After": "10"})
            state["waiting"] += 1
        tmp = tempfile.mkdtemp(prefix="tbd-api-")
        try:
            os.chmod(tmp, 0o700)
            name = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(file.filename or "upload").name)
            dest = Path(tmp) / (name[-120:] or "upload")
            size = 0
            with open(dest, "wb") as out:
                while chunk := file.file.read(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise HTTPException(413, f"upload larger than the limit of {max_bytes / 1e6:.0f} MB")
                    out.write(chunk)
            if size == 0:
                raise HTTPException(422, "the upload is empty")
            an = get_analyzer()
            wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
            unknown = [m for m in wanted or [] if m not in an.detectors]
            if unknown:
                raise HTTPException(422, f"unknown model(s): {', '.join(unknown)}; loaded: {', '.join(an.detectors)}")
            with run_lock:  # one analysis at a time: the models are shared
                try:
                    a = an.analyze(dest, frames=frames, models=wanted)
                except MediaError as e:
                    raise HTTPException(422, f"{name}: {e}") from None
            j = a.to_json()
            j["input"]["path"] = file.filename or name  # never the temp path
            response.headers["X-TBD-Stored"] = "no (store=false)"
            if store:
                try:
                    store_analysis(db_path, a, j["input"]["path"], source="api", timeout_s=30)
                    response.headers["X-TBD-Stored"] = "yes"
                except (DatabaseError, OSError) as e:
                    response.headers["X-TBD-Stored"] = f"no ({str(e)[:150]})"
            return j
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with count_lock:
                state["waiting"] -= 1

    def reader():
        if not db_path.exists():
            raise HTTPException(404, f"no case database at {db_path} yet")
        try:
            return CaseDB(db_path)
        except DatabaseError as e:
            raise HTTPException(500, str(e)) from None

    @app.get("/v1/cases", dependencies=[Depends(check_key)])
    def cases(verdict: list[str] | None = Query(None), limit: int = Query(100, ge=1, le=10_000)) -> list[dict]:
        with reader() as db:
            return db.cases(verdicts=verdict, limit=limit)

    @app.get("/v1/cases/{sha256}", dependencies=[Depends(check_key)])
    def case(sha256: str) -> dict:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
            raise HTTPException(422, "sha256 must be 64 hexadecimal characters")
        with reader() as db:
            c = db.case(sha256=sha256.lower())
        if c is None:
            raise HTTPException(404, f"no case for {sha256}")
        c.pop("thumbs", None)
        return c

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, **kw) -> None:
    import uvicorn

    uvicorn.run(create_app(**kw), host=host, port=port, log_level="info")
