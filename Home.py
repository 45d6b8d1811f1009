"""TBD dashboard home: what the tool does and does not claim, installed models, quick start, recent analyses."""

from pathlib import Path

import streamlit as st

from app import viz
from core.analyze import default_model_names, load_policy
from core.models.checkpoint import CardError, ModelCard, discover_models, weights_dirs

st.set_page_config(page_title="TBD - Truth Behind DeepFakes", page_icon=":mag:", layout="wide")


@st.cache_data(ttl=30, show_spinner=False)
def installed_models(dirs: tuple[str, ...]) -> tuple[list[dict], list[tuple[str, str]]]:
    ok, broken = [], []
    found = discover_models([Path(d) for d in dirs])
    try:
        defaults = set(default_model_names(found, load_policy([Path(d) for d in dirs])))
    except CardError as e:
        defaults = set()
        broken.append(("ensemble.json", str(e)))
    for name, c in sorted(found.items()):
        if isinstance(c, ModelCard):
            ok.append({"model": name, "name": c.display_name or name, "architecture": c.architecture,
                       "kind": c.kind, "input": f"{c.input_size}px", "default": name in defaults,
                       "trained on": str((c.training or {}).get("data", "")), "license": c.license, "card": c.path})
        elif isinstance(c, CardError):
            broken.append((name, str(c)))
    return ok, broken


st.title("TBD: Truth Behind DeepFakes")
st.markdown(
    "A deepfake-forensics workbench. Drop in a suspicious **video**, **image** or **zip of frames**: TBD samples "
    "frames uniformly over the whole video, finds faces with a dual-stage MTCNN, scores every face with each "
    "installed detector, links faces into tracks and gives an ensemble verdict (**real / uncertain / fake / no face**) "
    "with per-model probabilities, a timeline, Grad-CAM heatmaps and an exportable case report."
)
with st.expander("What TBD claims, and what it does not", expanded=True):
    st.markdown(
        "- Scores are **evidence, not proof**. Each detector only knows the manipulations it was trained on; new "
        "generators, heavy compression or unusual faces can fool any of them. Read the per-model scores, the "
        "timeline and the heatmaps, and say which models you relied on.\n"
        "- `uncertain` means the ensemble cannot defend either answer: the mean score sits between the bands, or "
        "the models disagree with it.\n"
        "- `no face` means nothing was scored: TBD analyses faces only, not whole-scene edits, audio or lip sync.\n"
        "- A model that fails is reported as failed; it never contributes a made-up score."
    )

try:
    scope = load_policy(weights_dirs()).get("scope")
except CardError:
    scope = None
if scope:
    st.info(f"**What the default ensemble can and cannot catch.** {scope}")

models, broken = installed_models(tuple(str(d) for d in weights_dirs()))
st.subheader("Installed models")
if models:
    viz.table(models, wide=("trained on", "card"))
    st.caption("Looked in: " + ", ".join(str(d) for d in weights_dirs()) + ". `default` models form the ensemble "
               "unless you choose others. Each model's card (JSON beside its weights) holds its training data, "
               "terms, metrics and thresholds.")
    st.page_link("pages/4_Models.py", label="Open the model cards", icon=":material/description:")
else:
    st.warning(
        "**No detector models are installed**, so nothing can be scored yet. Install the MesoNet reference models "
        "with `python -m core weights fetch mesonet` (downloads the published Apache-2.0 weights), or place model "
        "cards (`NAME.json` + `NAME.safetensors`) in `weights/`."
    )
for name, err in broken:
    st.error(f"Model `{name}` is installed but unusable: {err}")

st.subheader("Quick start")
st.markdown(
    "1. Open **Analyze** in the sidebar (or use the command line:\n"
    "   `python -m core analyze clip.mp4 --report case.html --cam`) and drop in a video, a zip of frames or an image.\n"
    "2. Read the verdict banner, the per-model bars and the timeline; open the faces that drive the verdict.\n"
    "3. Export the JSON result and the HTML or PDF case report for your records; each analysis is also kept as a "
    "case (switch in the Analyze sidebar).\n"
    "4. Sweep a whole folder with `python -m core scan FOLDER --workers 2` and work through the results on "
    "**Cases** (filters, notes, labels, CSV export); `python -m core serve` offers the same over HTTP."
)

st.subheader("This session's analyses")
history = st.session_state.get("history", [])
if history:
    viz.table(history[::-1])
else:
    st.caption("No analyses yet in this session.")
