"""Plotly figures for the dashboard, built from analyses and result files (pages only lay them out).

>>> fig = model_bars(analysis); fig2 = timeline(analysis, selected=3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from core import ensemble
from core.analyze import Analysis
from core.report import PALETTE, VERDICT_COLOURS, annotate_frame, score_colour

__all__ = ["table", "filter_values", "model_rows", "bordered", "face_caption", "model_bars", "timeline", "frame_scores",
           "roc_figure", "confusion_figure", "strength_figure", "robustness_rows", "robustness_figure", "annotate_frame",
           "VERDICT_COLOURS", "verdict_text"]

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), template="plotly_white", height=320)


def _layout(fig: go.Figure, **kw) -> go.Figure:
    fig.update_layout(**{**_LAYOUT, **kw})
    return fig


MISSING = "-"


def table(rows: list[dict], numbers: dict[str, str] | None = None, wide: tuple[str, ...] = (), **kw) -> None:
    """st.dataframe through st.column_config: number columns in their format (printf, e.g. "%.4f"); a column with
    missing values shows them as "-" (its numbers then formatted as text); `wide` columns are large text columns
    whose full text shows on hover and copies; None never reads "None"."""
    import streamlit as st

    numbers = numbers or {}
    cols = list(dict.fromkeys(k for r in rows for k in r))
    config, out = {}, [dict(r) for r in rows]
    for c in cols:
        vals = [r.get(c) for r in out]
        missing = any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in vals)
        numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals)
        if numeric and not missing:
            config[c] = st.column_config.NumberColumn(c, format=numbers.get(c))
            continue
        for r in out:
            v = r.get(c)
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                r[c] = MISSING
            elif c in numbers and isinstance(v, (int, float)) and not isinstance(v, bool):
                r[c] = numbers[c] % v
            elif isinstance(v, bool):
                r[c] = "yes" if v else "no"
            else:
                r[c] = str(v)
        config[c] = st.column_config.TextColumn(c, width="large" if c in wide else None)
    if "height" not in kw and len(out) <= 40:  # short tables whole, without an inner scroll bar
        kw["height"] = 35 * (len(out) + 1) + 3
    st.dataframe(out, hide_index=True, column_config=config, width=kw.pop("width", "stretch"), **kw)


def filter_values(label: str, values: list, key: str) -> list:
    """A collapsed multiselect filter: nothing chosen means every value (its placeholder says so)."""
    import streamlit as st

    picked = st.multiselect(label, values, default=[], key=key, placeholder=f"all {len(values)}")
    return picked or list(values)


def model_rows(a: Analysis) -> list[dict]:
    """One row per model for the Analyze page: its P(fake) on the deciding track, vote, decision threshold, whether
    it is in the verdict, and its state (scored / no face / failed)."""
    rows = []
    for n, m in a.models.items():
        state = "failed: " + m["error"] if m["error"] else "no face" if m["fake_probability"] is None else "scored"
        rows.append({"model": n, "P(fake)": m["fake_probability"], "vote": m.get("vote"),
                     "threshold": m.get("threshold"), "in verdict": bool(m.get("in_ensemble", True)), "state": state})
    return rows


def bordered(img: np.ndarray, p: float | None, width: int = 6) -> np.ndarray:
    """The image inside a border coloured by P(fake) (green to red; grey when unknown)."""
    c = np.array(score_colour(p), dtype=np.uint8)
    h, w = img.shape[:2]
    out = np.empty((h + 2 * width, w + 2 * width, 3), dtype=np.uint8)
    out[:] = c
    out[width:width + h, width:width + w] = img[..., :3]
    return out


def face_caption(frame: dict, face) -> str:
    """frame 12 · 0.40 s · ens 0.83 | meso4-df 0.91, ... (each model's P(fake) of this face)."""
    t = "" if frame["time_s"] is None else f" · {frame['time_s']:.2f} s"
    ens = "" if face.fake_probability is None else f" · ens {face.fake_probability:.2f}"
    per = ", ".join(f"{m} {MISSING if p is None else f'{p:.2f}'}" for m, p in face.probs.items())
    return f"frame {frame['index']}{t}{ens} | {per}"


def verdict_text(a: Analysis) -> str:
    """The bands (at their own precision) and one line on why the verdict is what it is."""
    th = a.ensemble.get("thresholds") or {}
    line = ensemble.why(a.ensemble, a.models)
    if a.verdict in ("no_face", "error") or not th:
        return line
    return f"Bands: {ensemble.bands_text(th)}; a majority vote against the band also gives uncertain. Why: {line}"


def model_bars(a: Analysis) -> go.Figure:
    names = list(a.models)
    ps = [a.models[n]["fake_probability"] for n in names]
    colours = ["#%02x%02x%02x" % score_colour(p) for p in ps]
    text = [("failed" if a.models[n]["error"] else "no face") if p is None else f"{p:.3f} ({a.models[n]['vote']})"
            for n, p in zip(names, ps)]
    labels = [n if a.models[n].get("in_ensemble", True) else f"{n} (outside the verdict)" for n in names]
    fig = go.Figure(go.Bar(x=[p if p is not None else 0 for p in ps], y=labels, orientation="h",
                           marker_color=colours, text=text, textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: P(fake) %{x:.3f}<extra></extra>"))
    for i, n in enumerate(names):
        t = a.models[n].get("threshold", 0.5)
        fig.add_shape(type="line", x0=t, x1=t, y0=i - 0.45, y1=i + 0.45, line=dict(color="black", dash="dash"))
    if a.fake_probability is not None:
        fig.add_vline(x=a.fake_probability, line=dict(color=VERDICT_COLOURS.get(a.verdict, "#333"), width=3),
                      annotation_text=f"ensemble {a.fake_probability:.2f}", annotation_position="top")
    _layout(fig, title="P(fake) per model on the deciding track (dashed: model's decision threshold)",
                      xaxis=dict(range=[0, 1.15], title="P(fake)"), height=max(160, 70 + 50 * len(names)))
    return fig


def frame_scores(a: Analysis) -> dict[str, list[float | None]]:
    """Per model, the highest per-face P(fake) in each sampled frame (None where no face was scored)."""
    out = {}
    for n in a.models:
        vals = []
        for fr in a.frames:
            ps = [a.faces[k].probs.get(n) for k in fr["faces"]]
            ps = [p for p in ps if p is not None]
            vals.append(max(ps) if ps else None)
        out[n] = vals
    return out


def timeline(a: Analysis, selected: int | None = None) -> go.Figure:
    xs = [fr["time_s"] if fr["time_s"] is not None else fr["index"] for fr in a.frames]
    unit = "time (s)" if a.frames and a.frames[0]["time_s"] is not None else "frame"
    fig = go.Figure()
    for i, (n, vals) in enumerate(frame_scores(a).items()):
        fig.add_trace(go.Scatter(x=xs, y=vals, mode="lines+markers", name=n, connectgaps=False,
                                 line=dict(color=PALETTE[i % len(PALETTE)]),
                                 hovertemplate=f"{n}<br>{unit} %{{x}}<br>P(fake) %{{y:.3f}}<extra></extra>"))
    faces = [len(fr["faces"]) for fr in a.frames]
    fig.add_trace(go.Bar(x=xs, y=[0.04 if f else 0 for f in faces], marker_color="#9e9e9e", name="face found",
                         opacity=0.5, hovertemplate="%{x}: faces present<extra></extra>"))
    th = a.ensemble.get("thresholds") or {}
    if th:
        fig.add_hrect(y0=th["fake_above"], y1=1, fillcolor=VERDICT_COLOURS["fake"], opacity=0.06, line_width=0)
        fig.add_hrect(y0=0, y1=th["real_below"], fillcolor=VERDICT_COLOURS["real"], opacity=0.06, line_width=0)
    if selected is not None and 0 <= selected < len(xs):
        fig.add_vline(x=xs[selected], line=dict(color="#000", width=2, dash="dot"))
    _layout(fig, title="Timeline: per-frame P(fake) (highest face in the frame)",
                      xaxis_title=unit, yaxis=dict(range=[0, 1.02], title="P(fake)"), legend=dict(orientation="h"))
    return fig


def roc_figure(curves: dict[str, dict], title: str = "ROC") -> go.Figure:
    fig = go.Figure()
    for i, (name, m) in enumerate(curves.items()):
        if not m or not m.get("roc"):
            continue
        fig.add_trace(go.Scatter(x=m["roc"]["fpr"], y=m["roc"]["tpr"], mode="lines",
                                 name=f"{name} (AUC {m['auc']:.3f}, n={m['n']})",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#bbb", dash="dash"), showlegend=False))
    _layout(fig, title=title, xaxis_title="false positive rate", yaxis_title="true positive rate",
                      height=380)
    return fig


def confusion_figure(cm: list[list[int]], title: str) -> go.Figure:
    z = np.asarray(cm)
    fig = go.Figure(go.Heatmap(z=z, x=["pred real", "pred fake"], y=["true real", "true fake"], colorscale="Blues",
                               showscale=False, text=z, texttemplate="%{text}"))
    _layout(fig, title=title, height=260, yaxis=dict(autorange="reversed"))
    return fig


SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "cross", "star", "triangle-down"]


def _offsets(n: int, span: float) -> list[float]:
    """Small x offsets that keep n series' markers apart at the same strength."""
    return [0.0] * n if n < 2 or span <= 0 else [span * (i - (n - 1) / 2) / (n - 1) for i in range(n)]


def strength_figure(points: list[dict], models: list[str], param: str, title: str) -> go.Figure:
    """points: [{"strength": s, "probs": {model: p}, "ensemble": p}] (clean first, strength None). One strength:
    grouped bars (clean vs perturbed) per model; several: lines with a marker shape per model, set slightly
    apart so that equal scores stay visible."""
    series = [(m, {p["strength"]: p["probs"].get(m) for p in points}) for m in models]
    if all(p.get("ensemble") is not None for p in points) and len(models) > 1:
        series.append(("ensemble", {p["strength"]: p.get("ensemble") for p in points}))
    strengths = [p["strength"] for p in points if p["strength"] is not None]
    fig = go.Figure()
    if len(strengths) == 1:
        s = strengths[0]
        names = [m for m, _ in series]
        fig.add_trace(go.Bar(x=names, y=[v.get(None) for _, v in series], name="clean", marker_color="#9e9e9e"))
        fig.add_trace(go.Bar(x=names, y=[v.get(s) for _, v in series], name=f"{param} {s:g}",
                             marker_color=PALETTE[0]))
        return _layout(fig, title=title, barmode="group", yaxis=dict(range=[0, 1.02], title="P(fake)"))
    span = 0.02 * (max(strengths) - min(strengths)) if strengths else 0
    for i, ((m, vals), dx) in enumerate(zip(series, _offsets(len(series), span))):
        col = "#000" if m == "ensemble" else PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=[s + dx for s in strengths], y=[vals.get(s) for s in strengths],
                                 mode="lines+markers", name=m, line=dict(color=col, dash="dash" if m == "ensemble"
                                                                         else "solid"),
                                 marker=dict(symbol=SYMBOLS[i % len(SYMBOLS)], size=9),
                                 customdata=strengths, hovertemplate=f"{m}<br>{param} %{{customdata}}<br>"
                                                                      "P(fake) %{y:.3f}<extra></extra>"))
        if vals.get(None) is not None:
            fig.add_hline(y=vals[None], line=dict(color=col, dash="dot"), annotation_text=f"{m} clean",
                          annotation_position="right")
    return _layout(fig, title=title + " (dotted: clean)", xaxis_title=param, yaxis=dict(range=[0, 1.02],
                                                                                      title="P(fake)"))


def robustness_rows(rob: dict, family: str, level: str = "video") -> list[dict]:
    """Per model and strength: AUC, the clean AUC and the change."""
    rows = []
    for e in rob["perturbations"].get(family, []):
        for m, v in e[level].items():
            c = (rob["clean"][level].get(m) or {}).get("auc")
            a = v.get("auc")
            rows.append({"model": m, "strength": f"{e['strength']:g}", "AUC": a, "clean AUC": c,
                         "change": None if a is None or c is None else a - c, "n": v.get("n")})
    return rows


def crop_robustness_rows(res: dict) -> list[dict]:
    """A `train.robust_crops` result as table rows: per condition and model, its AUC on all crops and on each
    dataset, the change from clean, and the mean P(fake) of the real crops."""
    clean = next((c for c in res["conditions"] if c["perturbation"] == "clean"), None)
    rows = []
    for c in res["conditions"]:
        for card, aucs in c["auc"].items():
            base = (clean or {}).get("auc", {}).get(card, {}).get("all")
            rows.append({"condition": c["perturbation"] + ("" if c["strength"] is None else f" {c['strength']:g}"),
                         "model": Path(card).stem, "AUC": aucs["all"],
                         "change": None if base is None else aucs["all"] - base,
                         **{f"AUC, {k}": v for k, v in aucs.items() if k != "all"},
                         "mean P(fake) of reals": c["mean_p_real"].get(card)})
    return rows


def robustness_figure(rob: dict, family: str, level: str = "video", metric: str = "auc") -> go.Figure:
    """Batch robustness: one strength gives grouped bars (clean vs perturbed per model); several give lines with a
    marker shape per model, set slightly apart."""
    entries = rob["perturbations"].get(family, [])
    models = list(rob["clean"][level])
    fig = go.Figure()
    if len(entries) == 1:
        e = entries[0]
        fig.add_trace(go.Bar(x=models, y=[rob["clean"][level][m].get(metric) for m in models], name="clean",
                             marker_color="#9e9e9e"))
        fig.add_trace(go.Bar(x=models, y=[(e[level].get(m) or {}).get(metric) for m in models],
                             name=f"{family} {e['strength']:g}", marker_color=PALETTE[0]))
        return _layout(fig, title=f"{level}-level {metric.upper()}: clean and under {family} {e['strength']:g}",
                       barmode="group", yaxis=dict(range=[0, 1.02], title=metric))
    xs = [e["strength"] for e in entries]
    span = 0.02 * (max(xs) - min(xs)) if xs else 0
    for i, (m, dx) in enumerate(zip(models, _offsets(len(models), span))):
        col = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=[x + dx for x in xs], y=[e[level][m].get(metric) for e in entries],
                                 mode="lines+markers", name=m, line=dict(color=col),
                                 marker=dict(symbol=SYMBOLS[i % len(SYMBOLS)], size=9), customdata=xs,
                                 hovertemplate=f"{m}<br>strength %{{customdata}}<br>{metric} %{{y:.3f}}<extra></extra>"))
        c = rob["clean"][level][m].get(metric)
        if c is not None:
            fig.add_hline(y=c, line=dict(color=col, dash="dot"))
    return _layout(fig, title=f"{level}-level {metric.upper()} under {family} (dotted: clean)",
                   xaxis_title="strength", yaxis_title=metric)


def reliability_figure(tables: dict[str, list[dict]], title: str = "Reliability") -> go.Figure:
    """Reliability diagram: per model, observed fraction of fakes against mean predicted P(fake) in each bin
    (marker size ~ bin count); the diagonal is perfect calibration."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="grey"),
                             name="perfectly calibrated", hoverinfo="skip"))
    for name, rows in tables.items():
        n = max((r["n"] for r in rows), default=1)
        fig.add_trace(go.Scatter(
            x=[r["mean_p"] for r in rows], y=[r["frac_fake"] for r in rows], mode="lines+markers", name=name,
            marker=dict(size=[6 + 14 * (r["n"] / n) ** 0.5 for r in rows]),
            customdata=[[r["lo"], r["hi"], r["n"]] for r in rows],
            hovertemplate=f"{name}<br>P(fake) %{{customdata[0]}}-%{{customdata[1]}} (n %{{customdata[2]}})<br>"
                          "mean predicted %{x:.3f}<br>observed fake %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="mean predicted P(fake)", range=[0, 1])
    fig.update_yaxes(title="observed fraction of fakes", range=[0, 1])
    return _layout(fig, title=title, height=380)
