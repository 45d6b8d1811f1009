"""Model cards of the installed detectors."""

from pathlib import Path

import streamlit as st

from core.dashboard import installed_models

st.set_page_config(page_title="Models - TBD", page_icon=":card_index:", layout="wide")
st.title("Models")
cards, broken, defaults = installed_models()
if not cards:
    st.warning("No detector models are installed. `python -m core weights fetch mesonet` installs the MesoNet "
               "reference models; trained models ship in `weights/`.")
for name, err in broken.items():
    st.error(f"`{name}` is unusable: {err}")

for name, c in sorted(cards.items()):
    size_mb = (Path(c.path).parent / c.file).stat().st_size / 1e6
    with st.expander(f"{c.display_name or name}  -  `{name}`" + ("  (default ensemble)" if name in defaults else ""),
                     expanded=len(cards) <= 3):
        if c.description:
            st.markdown(c.description)
        a, b = st.columns(2)
        a.markdown(
            f"- **Architecture:** `{c.architecture}` ({c.kind} model"
            + (f", {c.frames} frames" if c.kind == "sequence" else "") + f"), config `{c.config}`\n"
            f"- **Parameters:** {c.parameters:,}; weights file {size_mb:.1f} MB (safetensors)\n"
            f"- **Input:** {c.input_size}x{c.input_size} px, {c.interpolation} resize from a "
            f"{c.crop.get('size')} px face crop with margin {c.crop.get('margin')}; mean {c.mean}, std {c.std}\n"
            f"- **Classes:** {c.classes} ({c.output})\n"
            f"- **Thresholds:** real below {c.thresholds.get('real_below')}, decision {c.thresholds.get('decision')}, "
            f"fake at or above {c.thresholds.get('fake_above')}\n"
            f"- **License:** {c.license}\n- **Version:** {c.version}; SHA-256 `{c.sha256[:16]}...`")
        t = c.training or {}
        b.markdown(f"- **Training data:** {t.get('data', 'not stated')}\n- **Terms:** {t.get('terms', 'not stated')}\n"
                   + (f"- **Recipe:** {t['recipe']}\n" if t.get("recipe") else "")
                   + (f"- **Initialisation:** {t['init']}\n" if t.get("init") else "")
                   + (f"- **Source:** {t['source']}\n" if t.get("source") else ""))
        if c.limitations:
            st.markdown("**Not good at:**\n" + "\n".join(f"- {x}" for x in c.limitations))
        if c.metrics:
            st.markdown("**Metrics** (measured here unless the card says otherwise)")
            st.json(c.metrics, expanded=False)
