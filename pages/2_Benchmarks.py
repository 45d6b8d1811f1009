"""Benchmarks: results quoted from the design and published sources beside this project's own measurements."""

import streamlit as st

from app import viz
from core.ensemble import bands_text, threshold_text
from core.evaluate import load_json, published_tables, result_files

NUM = {"AUC": "%.4f", "accuracy": "%.4f", "ACCURACY": "%.4f", "decision threshold": "%.4f", "score": "%.4f",
       "mean P(fake) on real": "%.3f", "mean P(fake) on fake": "%.3f"}

st.set_page_config(page_title="Benchmarks - TBD", page_icon=":bar_chart:", layout="wide")
st.title("Benchmarks")
st.caption("Every number is labelled **quoted** (from the design slides or a published source, with the source named) "
           "or **measured here** (by `python -m core evaluate`, with the data it was measured on). Frame-level and "
           "video-level figures, and different datasets or compressions, are not comparable.")

tab_ours, tab_quoted = st.tabs(["Measured here", "Quoted"])

with tab_ours:
    files = result_files("evaluate")
    if not files:
        st.info("No evaluation results yet. Run `python -m core evaluate LABELS.csv --json results/NAME.json` "
                "(results/ and weights/ are read).")
    else:
        chosen = st.selectbox("Result file", files, format_func=lambda p: f"{p.parent.name}/{p.name}")
        try:
            res = load_json(chosen)
        except Exception as e:
            st.error(f"{chosen.name} is not a readable result file ({e})")
            st.stop()
        runs = res.get("runs") or {chosen.stem: res}  # benchmarks.json holds several runs, evaluate output one
        if res.get("what"):
            st.markdown(f"**What:** {res['what']}; {res.get('n_files', '?')} files, {res.get('frames')} "
                        f"frames per video, created {res.get('created', '?')}.")
        level = st.radio("Level", ["video", "frame"], horizontal=True,
                         help="video: one score per file; frame: one score per detected face")
        all_models = sorted({m for r in runs.values() for m in r[level]})
        breakdowns = [(rn, col, sorted(groups)) for rn, r in runs.items() for col, groups in
                      (r.get("breakdown") or {}).items()]
        with st.expander("Filters (default: everything)", expanded=False):
            models = viz.filter_values("Models", all_models, key="bm-models")
            metric = st.selectbox("Metric", ["auc", "accuracy"], format_func=str.upper)
            keeps = {(rn, col): viz.filter_values(f"{rn}: {col}", values, key=f"{rn}-{col}")
                     for rn, col, values in breakdowns}
        rows = []
        for run_name, r in runs.items():
            for m, v in r[level].items():
                if m in models:
                    rows.append({"run": run_name, "model": m, "n": v.get("n"), "real": v.get("n_real"),
                                 "fake": v.get("n_fake"), "AUC": v.get("auc"), "accuracy": v.get("accuracy"),
                                 "decision threshold": v.get("decision"), "source": "measured here"})
        viz.table(rows, numbers=NUM)
        curves = {f"{rn}: {m}": r[level][m] for rn, r in runs.items() for m in r[level] if m in models}
        c1, c2 = st.columns([3, 2])
        c1.plotly_chart(viz.roc_figure(curves, f"{level}-level ROC (measured here)"), width="stretch")
        with c2:
            pick = st.selectbox("Confusion matrix of", list(curves) or ["-"])
            if pick in curves and curves[pick].get("confusion_matrix"):
                st.plotly_chart(viz.confusion_figure(curves[pick]["confusion_matrix"],
                                                     f"{pick} at threshold {curves[pick].get('decision')}"),
                                width="stretch")
        for run_name, r in runs.items():
            for col, groups in (r.get("breakdown") or {}).items():
                st.markdown(f"**{run_name}: by {col}**")
                viz.table([{col: g, "model": m, "n": v.get("n"), metric.upper(): v.get(metric),
                            "mean P(fake) on real": v.get("mean_p_fake_on_real"),
                            "mean P(fake) on fake": v.get("mean_p_fake_on_fake")}
                           for g in keeps[(run_name, col)] for m, v in groups[g].items()
                           if m in models or m == "ensemble"], numbers=NUM, wide=(col,))
        if res.get("targets"):
            st.markdown("**Targets of the shipped detectors, each on its own subset of the evaluation files**")
            viz.table([{**t, "met": {True: "yes", False: "no", None: "-"}[t["met"]],
                        "ci95": None if not t.get("ci95") else f"{t['ci95'][0]:.3f}-{t['ci95'][1]:.3f}"}
                       for t in res["targets"] if t["model"] in models or t["model"] == "ensemble"],
                      numbers={"value": "%.4f"}, wide=("data",))
        fams = res.get("families")
        if fams:
            st.markdown("**By family** (each family's fakes against the reals it is ranked with; AUC with 95 % "
                        "bootstrap interval)")
            viz.table([{"family": fam, "run": run, "model": m, "n": v.get("n"), "fake": v.get("fake"),
                        "AUC": v.get("auc"), "95 % interval": None if not v.get("ci95") else
                        f"{v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}"}
                       for fam, by_run in fams.items() for run, ms in by_run.items() for m, v in ms.items()
                       if m in models or m == "ensemble"], numbers=NUM)
        cal = res.get("calibration")
        if cal:
            st.markdown("**Calibration on the evaluation files** (does P(fake) = 0.8 mean fake 8 times in 10? "
                        "Each model's calibration (a temperature, or a temperature and a bias) was fitted on its "
                        "validation split; ECE = expected calibration error, 10 equal bins)")
            subset = st.selectbox("Files", list(cal), key="cal-subset")
            shown = {m: v for m, v in cal[subset].items() if m in models or m == "ensemble"}
            c1, c2 = st.columns([3, 2])
            c1.plotly_chart(viz.reliability_figure({m: v["reliability"] for m, v in shown.items()},
                                                   f"Reliability diagram: {subset}"), width="stretch")
            with c2:
                viz.table([{"model": m, "n": v["n"], "ECE": v["ece"]} for m, v in shown.items()],
                          numbers={"ECE": "%.4f"})
        ev = res.get("ensemble_validation")
        if ev:
            th = ev.get("thresholds") or {}
            comb = ev.get("combiner") or {"type": "mean"}
            st.markdown(f"**How the default ensemble was chosen** (validation files only, {ev.get('n_files')} files): "
                        f"combination rule **{comb['type']}**"
                        + (f" (weights {comb.get('weights')}, bias {comb.get('bias')})" if comb.get("weights") else "")
                        + f"; verdict bands {bands_text(th)}, decision {threshold_text(th.get('decision'))}.")
            win = next((c for c in ev.get("candidates", []) if c.get("runner-up")), None)
            if win:
                ru = win["runner-up"]
                st.markdown(f"The chosen candidate ({', '.join(win['models'])}, {win['rule']}; score {win['score']}) "
                            f"scores above the runner-up ({', '.join(ru['models'])}, {ru['rule']}; {ru['score']}) in "
                            f"{win['beats runner-up (bootstrap)']:.0%} of 1,000 paired bootstrap resamples of the "
                            "validation files: near 50 % the files barely prefer one to the other.")
            hidden = ("fitted", "runner-up", "beats runner-up (bootstrap)")
            viz.table([{**{k: v for k, v in c.items() if k not in hidden}, "models": ", ".join(c["models"]),
                        "fitted weights": None if "fitted" not in c else
                        ", ".join(f"{m} {w:g}" for m, w in c["fitted"]["weights"].items())}
                       for c in ev.get("candidates", [])], numbers=NUM)
        fp = res.get("real_face_false_positive_rate")
        if fp:
            st.markdown("**Real faces from sources no model trained on, called fake at the shipped thresholds**")
            viz.table([{"source": k, **v} for k, v in fp.items()],
                      numbers={k: "%.3f" for v in fp.values() for k in v if k != "n"})

with tab_quoted:
    tables = published_tables()
    levels = sorted({t["level"] for t in tables})
    with st.expander("Filters (default: everything)", expanded=False):
        lv = viz.filter_values("Level", levels, key="quoted-level")
        text = st.text_input("Filter rows (model, dataset...)", "")
    for t in tables:
        if t["level"] not in lv:
            continue
        rows = [dict(zip(t["columns"], r)) for r in t["rows"]]
        if text:
            rows = [r for r in rows if text.lower() in " ".join(str(v) for v in r.values()).lower()]
            if not rows:
                continue
        st.markdown(f"**{t['title']}** - quoted, {t['metric']}; source: {t['source']} (via {t['quoted_from']})")
        viz.table(rows)
        if t.get("notes"):
            st.caption(t["notes"])
