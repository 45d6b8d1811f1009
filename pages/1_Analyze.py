"""Analyze: upload a video, a zip of frames or an image; see what each model saw, where, and how sure it is."""

import json

import streamlit as st

from core import viz
from core.analyze import Analyzer, NoModelsError, release_memory
from core.dashboard import examples, history_row, installed_models, saved_upload, sha256_bytes
from core.media import MediaError, pick_input
from core.report import render_html

st.set_page_config(page_title="Analyze - TBD", page_icon=":mag:", layout="wide")


@st.cache_resource(show_spinner="Loading models (once per server)...")
def get_analyzer(names: tuple[str, ...]) -> Analyzer:
    return Analyzer(models=list(names))


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_analysis(sha: str, name: str, frames: int, threshold: float, models: tuple[str, ...], cam: bool,
                    _data: bytes, _analyzer: Analyzer, _progress=None, ensemble: tuple[str, ...] | None = None):
    """Analyses are cached by file hash and settings; the upload lives in a temp folder only during analysis."""
    with saved_upload(_data, name) as path:
        return _analyzer.analyze(path, frames=frames, face_threshold=threshold, models=list(models), cam=cam,
                                 progress=_progress, sha256=sha, ensemble_models=list(ensemble or models))


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



def show_results(a, name: str, sha: str, cam_used: bool) -> None:
    # ------------------------------------------------------------------------------------------------ verdict
    colour = viz.VERDICT_COLOURS.get(a.verdict, "#333")
    label = {"no_face": "NO FACE", "error": "ALL MODELS FAILED"}.get(a.verdict, a.verdict.upper())
    prob = "" if a.fake_probability is None else f" &nbsp; ensemble P(fake) = {a.fake_probability:.3f}"
    st.markdown(f"<div style='background:{colour};color:white;padding:14px 18px;border-radius:6px;font-size:1.6rem'>"
                f"<b>{label}</b>{prob}</div>", unsafe_allow_html=True)
    st.caption(viz.verdict_text(a) + (f" Face track {a.ensemble['track']} drove the verdict."
                                      if a.ensemble.get("track") is not None and len(a.tracks) > 1 else ""))
    for n, m in a.models.items():
        if m["error"]:
            st.warning(f"Model `{n}` failed on this input and is left out of the verdict: {m['error']}")
    if a.verdict == "no_face":
        st.info("No face was found in any sampled frame. TBD scores faces only: try more frames or a lower face "
                "threshold, or the media may not show a face.")

    # ------------------------------------------------------------------------------------------------ models
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(viz.model_bars(a), width="stretch")
    with right:
        votes = a.ensemble.get("votes") or {}
        st.metric("Majority vote", f"{votes.get('fake', 0)} fake / {votes.get('real', 0)} real")
        st.markdown("\n".join(f"- **{n}**: " + ("failed" if m["error"] else "no face" if m["fake_probability"] is None
                                                 else f"P(fake) {m['fake_probability']:.3f}, vote {m['vote']}, "
                                                      f"threshold {m['threshold']:.2f}")
                              + ("" if m.get("in_ensemble", True) else " (outside the verdict)")
                              for n, m in a.models.items()))

    # ------------------------------------------------------------------------------------------------ timeline
    st.subheader("Timeline")
    labels = [f"#{i + 1}: frame {fr['index']}" + (f" at {fr['time_s']:.2f} s" if fr["time_s"] is not None else "")
              + (f" ({len(fr['faces'])} face{'s' if len(fr['faces']) != 1 else ''})" if fr["faces"] else "")
              for i, fr in enumerate(a.frames)]
    default_pos = next((i for i, fr in enumerate(a.frames) if fr["faces"]), 0)
    pos = st.select_slider("Frame", options=list(range(len(a.frames))), value=default_pos,
                           format_func=lambda i: labels[i], key=f"frame-{sha}")
    st.plotly_chart(viz.timeline(a, selected=pos), width="stretch")

    # ------------------------------------------------------------------------------------------------ gallery
    st.subheader("Frame and faces")
    fcol, gcol = st.columns([3, 2])
    with fcol:
        st.image(viz.annotate_frame(a, pos), caption=labels[pos] + " - boxes coloured by mean P(fake), green to red",
                 width="stretch")
    with gcol:
        face_ids = a.frames[pos]["faces"]
        if not face_ids:
            st.info("No face in this frame.")
        else:
            k = st.radio("Face", face_ids, format_func=lambda k: f"track {a.faces[k].face.track} "
                         f"(confidence {a.faces[k].face.confidence:.2f})", horizontal=True, key=f"face-{sha}-{pos}")
            f = a.faces[k]
            st.image(f.crop, caption="face crop", width=220)
            st.dataframe([{"model": m, "P(fake)": None if p is None else round(p, 4)} for m, p in f.probs.items()],
                         hide_index=True)
            if f.cams:
                st.markdown("**Grad-CAM: where each model looked (red = pushed towards fake)**")
                cols = st.columns(len(f.cams))
                for col, (m, ov) in zip(cols, f.cams.items()):
                    col.image(ov, caption=m, width="stretch")
            elif cam_used:
                st.caption("Grad-CAM failed for this face; see the model errors above.")
            else:
                st.caption("Grad-CAM was off for this analysis (turn it on in the sidebar and analyse again).")

    with st.expander(f"All sampled frames with faces ({sum(1 for fr in a.frames if fr['faces'])})"):
        shown = [i for i, fr in enumerate(a.frames) if fr["faces"]][:48]
        cols = st.columns(4)
        for j, i in enumerate(shown):
            cols[j % 4].image(viz.annotate_frame(a, i), caption=labels[i], width="stretch")

    # ------------------------------------------------------------------------------------------------ input panel
    st.subheader("Input")
    info = a.info
    st.dataframe([{"field": k, "value": str(v)} for k, v in [
        ("file name", name), ("SHA-256", info.sha256), ("kind", info.kind), ("container", info.container),
        ("codec", info.codec), ("resolution", f"{info.width}x{info.height}"), ("fps", info.fps),
        ("duration (s)", info.duration_s), ("frames in file", info.frame_count), ("frames sampled", len(a.frames)),
        ("faces found", len(a.faces)), ("face tracks", len(a.tracks)), ("models", ", ".join(a.models)),
        ("processing (s)", f"{a.timings_s['total']:.2f}"),
    ]], hide_index=True, width="stretch")
    for w in info.warnings:
        st.caption(f"warning: {w}")

    d1, d2 = st.columns(2)
    d1.download_button("Download JSON result", json.dumps(a.to_json(), indent=2), file_name=f"{name}.tbd.json",
                       mime="application/json")
    d2.download_button("Download HTML case report", render_html(a), file_name=f"{name}.tbd-report.html",
                       mime="text/html")


sha, name, cam_used = st.session_state["current"]
try:
    show_results(st.session_state["analysis"], name, sha, cam_used)
except Exception as e:  # a display problem becomes a message, never a traceback
    st.error(f"Could not display the result: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
finally:
    release_memory()  # return freed heap to the OS so a long-lived server does not creep
