"""The result of one analysis on screen, shared by the Analyze and Cases pages (widgets and layout only): verdict,
why, per-model bars and table, then for a video the timeline, the selected frame and its faces, and the face
gallery; for one image its faces with their heatmaps; the input panel and the downloads."""

from __future__ import annotations

import json

import streamlit as st

from app import viz
from core.ensemble import bands_text, why
from core.report import face_gallery as face_gallery_order
from core.report import pdf_unavailable, render_html, render_pdf

__all__ = ["show_results"]


GALLERY_PAGE = 24  # face crops per page of a track's gallery
GALLERY_COLUMNS = 8


def select_face(slider_key: str, pos: int, face_key: str, k: int) -> None:
    """A gallery click: that face's frame everywhere (slider, timeline marker, frame view, Grad-CAM)."""
    st.session_state[slider_key] = pos
    st.session_state[face_key] = k


def face_panel(a, k: int, cam_used: bool) -> None:
    """One face: its plain crop and per-model scores, then per model the Grad-CAM over that model's own input."""
    f = a.faces[k]
    left, right = st.columns([1, 3])
    with left:
        img = f.thumb if f.thumb is not None else f.crop
        if img is not None:
            st.image(img, caption=f"face crop (track {f.face.track}, detector confidence {f.face.confidence:.2f})",
                     width=160, output_format="JPEG")
        viz.table([{"model": m, "P(fake)": p} for m, p in f.probs.items()], numbers={"P(fake)": "%.4f"})
    with right:
        if f.cams:
            st.markdown("**Grad-CAM: where each model looked (red = pushed towards fake), over that model's own "
                        "input crop**")
            cols = st.columns(len(f.cams))
            for col, (m, ov) in zip(cols, f.cams.items()):
                size, margin, mode = a.crop_specs.get(m, (None, None, None))
                col.image(ov, caption=f"{m}: Grad-CAM", width="stretch", output_format="JPEG")
                if m in f.inputs:
                    col.image(f.inputs[m], caption=f"{m} input: {size} px crop, margin {margin:g} ({mode})",
                              width="stretch", output_format="JPEG")
        elif not a.images:
            st.caption("A stored case keeps no heatmaps; analyse the file again to see them.")
        elif cam_used:
            st.caption("Grad-CAM failed for this face; see the model errors above.")
        else:
            st.caption("Grad-CAM was off for this analysis (turn it on in the sidebar and analyse again).")


def face_gallery(a, sha: str, slider_key: str, labels: list[str], selected: int) -> None:
    """Face crops per track (the deciding track first), in time order, bordered by the face's ensemble P(fake),
    paginated; a click selects that face's frame everywhere."""
    groups = face_gallery_order(a)
    st.subheader(f"Face gallery: {len(a.faces)} face{'s' if len(a.faces) != 1 else ''} in {len(groups)} "
                 f"track{'s' if len(groups) != 1 else ''}")
    st.caption("Each crop's border is its ensemble P(fake), green (real) to red (fake); under it: frame, time and "
               "each model's P(fake). Select one to show its frame in the timeline, the frame view and Grad-CAM.")
    deciding = a.ensemble.get("track")
    for tid, ks in groups:
        track = next(tr for tr in a.tracks if tr["id"] == tid)
        p = track["ensemble"].get("fake_probability")
        head = f"**Track {tid}**" + (" (decides the verdict)" if tid == deciding and len(groups) > 1 else "")
        head += f": {len(ks)} face{'s' if len(ks) != 1 else ''}" + ("" if p is None else f", ensemble P(fake) {p:.3f}")
        with st.container(border=True):
            st.markdown(head)
            n_pages = (len(ks) + GALLERY_PAGE - 1) // GALLERY_PAGE
            page = 0
            if n_pages > 1:
                page = st.selectbox(f"Page of track {tid}", list(range(n_pages)), key=f"gpage-{sha}-{tid}",
                                    format_func=lambda i, n=len(ks): f"faces {i * GALLERY_PAGE + 1}-"
                                                                     f"{min(n, (i + 1) * GALLERY_PAGE)} of {n}")
            cols = st.columns(GALLERY_COLUMNS)
            for j, k in enumerate(ks[page * GALLERY_PAGE:(page + 1) * GALLERY_PAGE]):
                f = a.faces[k]
                fr = a.frames[f.frame]
                with cols[j % GALLERY_COLUMNS]:
                    if f.thumb is not None:
                        st.image(viz.bordered(f.thumb, f.fake_probability), width="stretch", output_format="JPEG",
                                 caption=viz.face_caption(fr, f))
                    else:
                        st.caption(viz.face_caption(fr, f))
                    st.button("selected" if f.frame == selected else "select", key=f"g-{sha}-{k}",
                              type="primary" if f.frame == selected else "secondary", width="stretch",
                              on_click=select_face, args=(slider_key, f.frame, f"face-{sha}-{f.frame}", k),
                              help=f"Show {labels[f.frame]} everywhere")


def show_results(a, name: str, sha: str, cam_used: bool) -> None:
    # ------------------------------------------------------------------------------------------------ verdict
    colour = viz.VERDICT_COLOURS.get(a.verdict, "#333")
    label = {"no_face": "NO FACE", "error": "ALL MODELS FAILED"}.get(a.verdict, a.verdict.upper())
    prob = "" if a.fake_probability is None else f" &nbsp; ensemble P(fake) = {a.fake_probability:.3f}"
    st.markdown(f"<div style='background:{colour};color:white;padding:14px 18px;border-radius:6px;font-size:1.6rem'>"
                f"<b>{label}</b>{prob}</div>", unsafe_allow_html=True)
    th = a.ensemble.get("thresholds") or {}
    if th:
        st.caption(f"Bands: {bands_text(th)}; a majority vote against the band also gives uncertain.")
    st.markdown(f"**Why:** {why(a.ensemble, a.models)}"
                + (f" Face track {a.ensemble['track']} drove the verdict (the most suspicious of {len(a.tracks)})."
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
        viz.table(viz.model_rows(a), numbers={"P(fake)": "%.4f", "threshold": "%.4f"})

    single = a.info.kind == "image" or len(a.frames) == 1
    if single:  # one image: the faces, their scores and heatmaps; no timeline, no frame slider
        if a.faces:
            st.subheader("Face" if len(a.faces) == 1 else f"Faces ({len(a.faces)})")
            if a.images:  # a stored case keeps its face crops, not its frames
                st.image(viz.annotate_frame(a, 0), caption="the image, boxes coloured by each face's ensemble "
                         "P(fake)", width=min(640, a.info.width or 640), output_format="JPEG")
            for k in range(len(a.faces)):
                face_panel(a, k, cam_used)
    else:
        # -------------------------------------------------------------------------------------------- timeline
        st.subheader("Timeline")
        labels = [f"#{i + 1}: frame {fr['index']}" + (f" at {fr['time_s']:.2f} s" if fr["time_s"] is not None else "")
                  + (f" ({len(fr['faces'])} face{'s' if len(fr['faces']) != 1 else ''})" if fr["faces"] else "")
                  for i, fr in enumerate(a.frames)]
        slider_key = f"frame-{sha}"
        if slider_key not in st.session_state:
            st.session_state[slider_key] = next((i for i, fr in enumerate(a.frames) if fr["faces"]), 0)
        pos = st.select_slider("Frame", options=list(range(len(a.frames))), format_func=lambda i: labels[i],
                               key=slider_key)
        st.plotly_chart(viz.timeline(a, selected=pos), width="stretch")

        # -------------------------------------------------------------------------------------------- frame
        st.subheader("Selected frame")
        if a.images:  # a stored case keeps its face crops, not its frames
            st.image(viz.annotate_frame(a, pos), caption=labels[pos] + " - boxes coloured by each face's ensemble "
                     "P(fake), green to red", width=min(960, a.info.width or 960), output_format="JPEG")
        else:
            st.caption(f"{labels[pos]} (a stored case: its frames are not kept, its face crops are)")
        face_ids = a.frames[pos]["faces"]
        if not face_ids:
            st.info("No face in this frame.")
        else:
            face_key = f"face-{sha}-{pos}"
            if st.session_state.get(face_key) not in face_ids:
                st.session_state[face_key] = face_ids[0]
            k = st.radio("Face", face_ids, format_func=lambda k: f"track {a.faces[k].face.track} "
                         f"(confidence {a.faces[k].face.confidence:.2f})", horizontal=True, key=face_key)
            face_panel(a, k, cam_used)
        if a.faces:
            face_gallery(a, sha, slider_key, labels, pos)

    # ------------------------------------------------------------------------------------------------ input panel
    st.subheader("Input")
    info = a.info
    st.markdown("SHA-256 of the file (copy with the button on the right):")
    st.code(info.sha256, language=None)
    viz.table([{"field": k, "value": v} for k, v in [
        ("file name", name), ("kind", info.kind), ("container", info.container),
        ("codec", info.codec), ("resolution", f"{info.width}x{info.height}" if info.width else None),
        ("fps", None if info.fps is None else f"{info.fps:g}"),
        ("duration (s)", None if info.duration_s is None else f"{info.duration_s:.2f}"),
        ("frames in file", info.frame_count), ("frames sampled", len(a.frames)),
        ("faces found", len(a.faces)), ("face tracks", len(a.tracks)), ("models", ", ".join(a.models)),
        ("processing (s)", f"{a.timings_s['total']:.2f}"),
    ]], wide=("value",))
    for w in info.warnings:
        st.caption(f"warning: {w}")

    d1, d2, d3 = st.columns(3)  # made when clicked, not on every rerun
    d1.download_button("Download JSON result", lambda: json.dumps(a.to_json(), indent=2),
                       file_name=f"{name}.tbd.json", mime="application/json")
    d2.download_button("Download HTML case report", lambda: render_html(a), file_name=f"{name}.tbd-report.html",
                       mime="text/html")
    missing = pdf_unavailable()
    if missing:
        d3.caption(f"PDF report unavailable: {missing}")
    else:
        d3.download_button("Download PDF case report", lambda: render_pdf(a), file_name=f"{name}.tbd-report.pdf",
                           mime="application/pdf")
