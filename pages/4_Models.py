"""Model cards of the installed detectors."""

from pathlib import Path

import streamlit as st

from app import viz
from core.analyze import installed_models, load_policy
from core.ensemble import bands_text, combiner_for, ensemble_thresholds, threshold_text
from core.models import CardError

st.set_page_config(page_title="Models - TBD", page_icon=":card_index:", layout="wide")
st.title("Models")
cards, broken, defaults = installed_models()
if not cards:
    st.warning("No detector models are installed. `python -m core weights fetch mesonet` installs the MesoNet "
               "reference models; trained models ship in `weights/`.")
for name, err in broken.items():
    st.error(f"`{name}` is unusable: {err}")

ens_th = comb = None
if cards and defaults:
    try:
        policy = load_policy()
    except CardError as e:
        policy = {}
        st.error(f"The ensemble policy is unusable: {e}")
    ens_th = ensemble_thresholds(cards, defaults, policy)
    comb = combiner_for(defaults, policy)
    st.subheader("Two sets of thresholds")
    st.markdown(
        "Each **card** holds its model's own thresholds, chosen on that model's validation split for that model's "
        "P(fake). The **verdict** uses the bands of the default ensemble, chosen on the ensemble's validation files "
        f"(weights/ensemble.json) for the combined P(fake) ({comb['type']} rule"
        + (", weights " + ", ".join(f"{m} {w:g}" for m, w in comb["weights"].items()) if comb.get("weights") else "")
        + f"): **{bands_text(ens_th)}**, decision {threshold_text(ens_th['decision'])}. A model's own threshold "
        "only decides its vote.")
    viz.table([{"model": n, "in the default ensemble": n in defaults,
                "card real_below": c.thresholds.get("real_below"), "card decision (its vote)": c.thresholds.get("decision"),
                "card fake_above": c.thresholds.get("fake_above"),
                "verdict real_below": ens_th["real_below"] if n in defaults else None,
                "verdict fake_above": ens_th["fake_above"] if n in defaults else None}
               for n, c in sorted(cards.items())],
              numbers={k: "%.4f" for k in ("card real_below", "card decision (its vote)", "card fake_above",
                                           "verdict real_below", "verdict fake_above")})

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
            f"- **Scoring:** {c.scoring}\n"
            f"- **Card thresholds** (this model alone): real below {threshold_text(c.thresholds.get('real_below'))}, "
            f"decision {threshold_text(c.thresholds.get('decision'))}, fake at or above "
            f"{threshold_text(c.thresholds.get('fake_above'))}\n"
            + (f"- **Verdict bands** (the default ensemble's combined P(fake), not this model's): "
               f"{bands_text(ens_th)}\n" if ens_th and name in defaults else "") +
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
