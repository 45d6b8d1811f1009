"""Robustness lab: how each model's score moves when the same media is compressed, blurred, noised or re-encoded."""

import streamlit as st

from app import viz
from app.dashboard import examples, saved_upload, sha256_bytes
from core.analyze import Analyzer, installed_models
from core.evaluate import load_json, probe_perturbation, result_files
from core.media import MediaError
from core.perturb import PERTURBATIONS, describe

st.set_page_config(page_title="Robustness - TBD", page_icon=":shield:", layout="wide")
st.title("Robustness lab")


@st.cache_resource(show_spinner="Loading models (once per server)...")
def get_analyzer(names: tuple[str, ...]) -> Analyzer:
    return Analyzer(models=list(names))


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_probe(sha: str, name: str, family: str, strengths: tuple[float, ...], frames: int,
                 models: tuple[str, ...], _data: bytes, _analyzer: Analyzer) -> dict:
    with saved_upload(_data, name) as path:
        return probe_perturbation(_analyzer, path, family, list(strengths), frames=frames, models=list(models))


tab_one, tab_batch = st.tabs(["One file", "Batch results"])

with tab_one:
    cards, _, defaults = installed_models()
    if not cards:
        st.warning("No detector models are installed; see Home.")
    else:
        up = st.file_uploader("Video, image or zip of frames", type=None, key="rob-upload")
        ex = examples()
        example = None if up or not ex else st.selectbox("...or a labelled example", [None] + ex,
                                                         format_func=lambda p: "(none)" if p is None else p.name)
        c1, c2, c3 = st.columns(3)
        family = c1.selectbox("Perturbation", list(PERTURBATIONS), format_func=lambda f: f"{f}: {describe(f)}")
        param = PERTURBATIONS[family][1]
        default = ", ".join(f"{v:g}" for v in PERTURBATIONS[family][2])
        text = c2.text_input(f"Strengths ({param}, comma-separated)", default, key=f"s-{family}")
        frames = c3.slider("Frames", 1, 32, 8)
        models = st.multiselect("Models", sorted(cards), default=defaults)
        try:
            strengths = tuple(float(x) for x in text.split(",") if x.strip())
        except ValueError:
            strengths = ()
            st.error("Strengths must be numbers separated by commas.")
        data = name = None
        if up is not None:
            data, name = up.getvalue(), up.name
        elif example is not None:
            data, name = example.read_bytes(), example.name
        if st.button("Run", type="primary", disabled=data is None or not strengths or not models):
            try:
                with st.spinner(f"Analysing {len(strengths) + 1} versions of {name}..."):
                    res = cached_probe(sha256_bytes(data), name, family, strengths, frames, tuple(models), data,
                                       get_analyzer(tuple(sorted(cards))))
                st.session_state["probe"] = res
                st.session_state.pop("probe_error", None)
            except MediaError as e:
                st.session_state["probe_error"] = f"{name}: {e}"
            except Exception as e:
                st.session_state["probe_error"] = f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        if st.session_state.get("probe_error"):
            st.error(f"Unusable input - {st.session_state['probe_error']}")
        res = st.session_state.get("probe")
        if res and not st.session_state.get("probe_error"):
            st.plotly_chart(viz.strength_figure(res["points"], res["models"], res["param"],
                                                f"P(fake) under {res['family']} {res['param']}"), width="stretch")
            viz.table([{"strength": "clean" if p["strength"] is None else f"{p['strength']:g}", "verdict": p["verdict"],
                        "ensemble": p["ensemble"], **p["probs"]} for p in res["points"]],
                      numbers={k: "%.4f" for k in ["ensemble", *res["models"]]})
            if res["original"] is not None:
                cols = st.columns(1 + len(res["examples"]))
                cols[0].image(res["original"], caption="original", width="stretch")
                for col, (s, img) in zip(cols[1:], res["examples"]):
                    col.image(img, caption=f"{res['family']} {res['param']} {s:g}", width="stretch")

with tab_batch:
    files = result_files("robustness")
    if not files:
        st.info("No batch results yet: `python -m core robustness LABELS.csv --perturb jpeg:90,70,50,30 "
                "--json results/robustness.json`.")
    else:
        chosen = st.selectbox("Result file", files, format_func=lambda p: f"{p.parent.name}/{p.name}")
        rob = load_json(chosen)
        if "conditions" in rob:  # train.robust_crops: face crops, each model alone
            rows = viz.crop_robustness_rows(rob)
            st.caption(f"Measured here ({rob.get('created', '?')}) on {rob.get('what', 'face crops')}, "
                       f"from {', '.join(rob.get('manifests') or ['?'])}.")
            viz.table(rows, numbers={"change": "%+.4f", "mean P(fake) of reals": "%.3f",
                                     **{k: "%.4f" for k in rows[0] if k.startswith("AUC")}})
        else:
            if "robustness_jpeg50" in rob:  # benchmarks.json: one strength of JPEG
                r = rob["robustness_jpeg50"]
                rob = {"clean": r["clean"], "perturbations": {"jpeg": [r["jpeg50"]]},
                       "csv": r.get("data") or "the evaluation files of weights/eval_files.csv"}
            st.caption(f"Measured here on {rob.get('csv', '?')}; faces re-detected on the perturbed frames.")
            level = st.radio("Level", ["video", "frame"], horizontal=True, key="rob-level")
            for fam in rob["perturbations"]:
                st.plotly_chart(viz.robustness_figure(rob, fam, level), width="stretch")
                viz.table(viz.robustness_rows(rob, fam, level), numbers={"AUC": "%.4f", "clean AUC": "%.4f",
                                                                          "change": "%+.4f"})
