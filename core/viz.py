"""Plotly figures for the dashboard, built from analyses and result files (pages only lay them out).

>>> fig = model_bars(analysis); fig2 = timeline(analysis, selected=3)
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .analyze import Analysis
from .report import PALETTE, VERDICT_COLOURS, annotate_frame, score_colour

__all__ = ["model_bars", "timeline", "frame_scores", "roc_figure", "confusion_figure", "strength_figure",
           "robustness_figure", "annotate_frame", "VERDICT_COLOURS", "verdict_text"]

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), template="plotly_white", height=320)


def _layout(fig: go.Figure, **kw) -> go.Figure:
    fig.update_layout(**{**_LAYOUT, **kw})
    return fig


def verdict_text(a: Analysis) -> str:
    th = a.ensemble.get("thresholds") or {}
    if a.verdict == "no_face":
        return "No face was found in any sampled frame, so nothing was scored."
    if a.verdict == "error":
        return "Every model failed on this input; see the per-model errors."
    return (f"Bands: real below {th.get('real_below', 0):.2f}, fake at or above {th.get('fake_above', 1):.2f}, "
            f"uncertain between; a majority vote against the band also gives uncertain. {a.ensemble.get('reason', '')}.")


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


def strength_figure(points: list[dict], models: list[str], param: str, title: str) -> go.Figure:
    """points: [{"strength": s, "probs": {model: p}}] (clean first, strength None)."""
    fig = go.Figure()
    for i, m in enumerate(models):
        xs = [p["strength"] for p in points if p["strength"] is not None]
        ys = [p["probs"].get(m) for p in points if p["strength"] is not None]
        clean = next((p["probs"].get(m) for p in points if p["strength"] is None), None)
        col = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=m, line=dict(color=col)))
        if clean is not None:
            fig.add_hline(y=clean, line=dict(color=col, dash="dot"), annotation_text=f"{m} clean",
                          annotation_position="right")
    _layout(fig, title=title, xaxis_title=param, yaxis=dict(range=[0, 1.02], title="P(fake)"))
    return fig


def robustness_figure(rob: dict, family: str, level: str = "video", metric: str = "auc") -> go.Figure:
    entries = rob["perturbations"].get(family, [])
    fig = go.Figure()
    models = list(rob["clean"][level])
    for i, m in enumerate(models):
        xs = [e["strength"] for e in entries]
        ys = [e[level][m].get(metric) for e in entries]
        col = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=m, line=dict(color=col)))
        c = rob["clean"][level][m].get(metric)
        if c is not None:
            fig.add_hline(y=c, line=dict(color=col, dash="dot"))
    _layout(fig, title=f"{level}-level {metric.upper()} under {family} (dotted: clean)",
                      xaxis_title="strength", yaxis_title=metric)
    return fig


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
