"""Analyze: upload a video, a zip of frames or an image; see what each model saw, where, and how sure it is."""


from pathlib import Path

import streamlit as st

from app.dashboard import AnalysisStore, examples, history_row, open_case, recent_cases, saved_upload, sha256_bytes, store_case
from app.results import show_results
from core.analyze import Analyzer, NoModelsError, installed_models, release_memory
from core.cases import default_db_path
from core.media import MediaError, pick_input

st.set_page_config(page_title="Analyze - TBD", page_icon=":mag:", layout="wide")


@st.cache_resource(show_spinner="Loading models (once per server)...")
def get_analyzer(names: tuple[str, ...]) -> Analyzer:
    return Analyzer(models=list(names))


@st.cache_resource(show_spinner=False)
def analysis_store() -> AnalysisStore:
    """The server's last few analyses, by file hash and settings (shared by sessions, at most 4 kept)."""
    return AnalysisStore(4)


def cached_analysis(sha: str, name: str, frames: int, threshold: float, models: tuple[str, ...], cam: bool,
                    data: bytes, analyzer: Analyzer, progress=None, ensemble: tuple[str, ...] | None = None):
    """An analysis from the store, or a new one (the upload lives in a temp folder only during analysis). Not an
    st.cache function: the progress bar it updates lives outside it, which a cache replay cannot redraw."""
    key = (sha, frames, threshold, models, cam, ensemble)
    store = analysis_store()
    a = store.get(key)
    if a is None:
        with saved_upload(data, name) as path:
            a = analyzer.analyze(path, frames=frames, face_threshold=threshold, models=list(models), cam=cam,
                                 progress=progress, sha256=sha, ensemble_models=list(ensemble or models))
        store.put(key, a)
    return a


STAGES = {"decode": (0.0, 0.1), "faces": (0.1, 0.6), "models": (0.6, 0.8), "explain": (0.8, 0.99), "done": (1, 1)}


def progress_callback(bar):
    def cb(stage: str, frac: float) -> None:
        lo, hi = STAGES.get(stage, (0, 1))
        bar.progress(min(1.0, lo + (hi - lo) * frac), text=f"{stage}...")
    return cb


st.title("Analyze")
cards, broken, defaults = installed_models()
if not cards:
    st.warning("No detector models are installed, so nothing can be scored. Install the MesoNet reference models "
               "with `python -m core weights fetch mesonet`, or put model cards in `weights/` (see Home).")
    st.stop()

with st.sidebar:
    st.header("Settings")
    frames = st.slider("Number of frames to process", 1, 128, 32, help="Sampled uniformly over the whole video.")
    threshold = st.slider("Face detection confidence threshold", 0.50, 1.00, 0.90, 0.01,
                          help="A face is kept only if the second MTCNN pass confirms it at this probability.")
    chosen = st.multiselect("Models", sorted(cards), default=defaults,
                            format_func=lambda n: cards[n].display_name or n,
                            help="These form the ensemble verdict (default: the validated default ensemble).")
    beside = st.multiselect("Also show, outside the verdict", [n for n in sorted(cards) if n not in chosen],
                            format_func=lambda n: cards[n].display_name or n,
                            help="Scored and shown for comparison; they do not change the verdict.")
    cam = st.checkbox("Grad-CAM heatmaps", value=True, help="Where each model looked (slower).")
    keep = st.toggle("Store analyses in the case database", value=True,
                     help="Each analysis becomes a case (verdict, scores, the JSON and the face crops) that the "
                          "Cases page lists; turn off to keep nothing.")
    db_path = st.text_input("Case database", str(default_db_path()), disabled=not keep,
                            help="SQLite file; the default lives outside the repository ($TBD_DATA or "
                                 "~/.local/share/tbd). `python -m core scan` writes the same kind of file.")
    with st.expander("Open a stored case"):
        stored = recent_cases(db_path)
        if isinstance(stored, str):
            st.caption(stored)
        else:
            pick = st.selectbox("Case", [None] + [c["id"] for c in stored], key="open-case",
                                format_func=lambda i: "(choose)" if i is None else next(
                                    f"#{c['id']} {Path(c['path']).name}: {c['verdict']}" for c in stored
                                    if c["id"] == i))
            if pick is not None and st.button("Open", key="open-case-btn"):
                opened = open_case(db_path, pick)
                if isinstance(opened, str):
                    st.error(opened)
                else:
                    st.session_state["analysis"] = opened
                    st.session_state["current"] = (opened.info.sha256, Path(opened.info.path).name, False)
                    st.session_state.pop("error", None)

st.caption("Upload a video, a zip of a folder of frames, or an image. If several are given, the folder of frames "
           "is used first, then the image, then the video.")
c1, c2, c3 = st.columns(3)
video = c1.file_uploader("Video", type=["mp4", "mov", "avi", "mkv", "webm", "m4v", "mpg", "mpeg", "wmv", "flv"])
frames_zip = c2.file_uploader("Folder of frames (zip)", type=["zip"])
image = c3.file_uploader("Image", type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"])
example_paths = examples()
example = None
if example_paths and not (video or frames_zip or image):
    example = st.selectbox("...or a labelled example from ../shared/data", [None] + example_paths,
                           format_func=lambda p: "(none)" if p is None else p.name)

try:
    picked = pick_input(video=video, frames_zip=frames_zip, image=image)
except MediaError:
    picked = None
if picked is not None:
    upload, slot, ignored = picked
    name, data = upload.name, upload.getvalue()
    note = f"Using the **{slot}** input `{name}`" + (f"; ignoring the {' and '.join(ignored)} input." if ignored else ".")
    st.info(note)
elif example is not None:
    name, data = example.name, example.read_bytes()
else:
    name = data = None

run = st.button("Analyze", type="primary", disabled=data is None or not chosen)
if not chosen:
    st.caption("Choose at least one model in the sidebar.")

if run and data is not None:
    try:
        analyzer = get_analyzer(tuple(sorted(cards)))
        bar = st.progress(0.0, text="starting...")
        sha = sha256_bytes(data)
        a = cached_analysis(sha, name, frames, threshold, tuple(chosen + beside), cam, data, analyzer,
                            progress_callback(bar), ensemble=tuple(chosen))
        bar.empty()
        st.session_state["current"] = (sha, name, cam)
        st.session_state["analysis"] = a  # the latest result only: memory does not grow with reruns
        st.session_state.setdefault("history", []).append(history_row(a, name))
        st.session_state.pop("error", None)
        if keep:
            note = store_case(db_path, a, name)
            if note:
                st.warning(note)
    except MediaError as e:
        st.session_state["error"] = f"{name}: {e}"
        st.session_state.pop("current", None)
        st.session_state.pop("analysis", None)
    except NoModelsError as e:
        st.session_state["error"] = str(e)
    except Exception as e:  # never a raw traceback on the page
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        st.session_state["error"] = f"{name}: analysis failed ({type(e).__name__}: {reason})"

if st.session_state.get("error"):
    st.error(f"Unusable input - {st.session_state['error']}")
    st.stop()
if "current" not in st.session_state:
    st.stop()



sha, name, cam_used = st.session_state["current"]
try:
    show_results(st.session_state["analysis"], name, sha, cam_used)
except Exception as e:  # a display problem becomes a message, never a traceback
    st.error(f"Could not display the result: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
finally:
    release_memory()  # return freed heap to the OS so a long-lived server does not creep
