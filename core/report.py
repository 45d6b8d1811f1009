"""Self-contained HTML case report: verdict, per-model bars, timeline, face gallery, Grad-CAM heatmaps, input
metadata with SHA-256, model versions and a timestamp. No external resources: images are inlined as base64 PNG
and charts are inline SVG.

>>> Path("case.html").write_text(render_html(analysis))
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image, ImageDraw

from .analyze import Analysis

__all__ = ["render_html", "render_pdf", "pdf_unavailable", "ReportError", "png_bytes", "annotate_frame",
           "score_colour", "face_gallery"]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
VERDICT_COLOURS = {"real": "#2e7d32", "fake": "#c62828", "uncertain": "#ef6c00", "no_face": "#546e7a",
                   "error": "#6a1b9a"}


def png_bytes(img: np.ndarray, max_side: int | None = None) -> bytes:
    im = Image.fromarray(img)
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _img_tag(img: np.ndarray, max_side: int | None = None, alt: str = "", css: str = "") -> str:
    b64 = base64.b64encode(png_bytes(img, max_side)).decode()
    return f'<img alt="{html.escape(alt)}" style="{css}" src="data:image/png;base64,{b64}">'


def score_colour(p: float | None) -> tuple[int, int, int]:
    """Green (real) to red (fake); grey when unknown."""
    if p is None:
        return (120, 120, 120)
    p = float(np.clip(p, 0, 1))
    return (int(46 + (198 - 46) * p), int(125 + (40 - 125) * p), int(50 + (40 - 50) * p))


def face_gallery(a: Analysis) -> list[tuple[int, list[int]]]:
    """The faces of an analysis grouped by track, [(track id, face positions in time order)]: the track that
    decided the verdict first, then the others from the most suspicious down."""
    by_track: dict[int, list[int]] = {}
    for k, f in enumerate(a.faces):
        by_track.setdefault(f.face.track, []).append(k)
    deciding = a.ensemble.get("track")
    score = {tr["id"]: tr["ensemble"].get("fake_probability") for tr in a.tracks}
    order = sorted(by_track, key=lambda t: (t != deciding, -(score.get(t) if score.get(t) is not None else -1), t))
    return [(t, sorted(by_track[t], key=lambda k: a.faces[k].frame)) for t in order]


def annotate_frame(analysis: Analysis, pos: int) -> np.ndarray:
    """The display copy of sampled frame `pos` with face boxes coloured by ensemble-mean score and labelled."""
    img = analysis.frame_image(pos)
    info = analysis.info
    sx = img.shape[1] / max(info.width, 1)
    sy = img.shape[0] / max(info.height, 1)
    im = Image.fromarray(img).copy()
    d = ImageDraw.Draw(im)
    for k in analysis.frames[pos]["faces"]:
        f = analysis.faces[k]
        vals = [p for p in f.probs.values() if p is not None]
        p = float(np.mean(vals)) if vals else None
        x1, y1, x2, y2 = f.face.box
        box = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
        c = score_colour(p)
        d.rectangle(box, outline=c, width=max(2, img.shape[1] // 300))
        label = f"T{f.face.track} " + ("?" if p is None else f"{p:.2f}")
        d.rectangle([box[0], max(0, box[1] - 14), box[0] + 7 * len(label), box[1]], fill=c)
        d.text((box[0] + 2, max(0, box[1] - 13)), label, fill=(255, 255, 255))
    return np.asarray(im)


def _bars_svg(a: Analysis) -> str:
    rows = [(n, m) for n, m in a.models.items()]
    h = 34 * len(rows) + 20
    parts = [f'<svg width="640" height="{h}" role="img" aria-label="per-model probabilities">']
    for i, (n, m) in enumerate(rows):
        y = 10 + i * 34
        label = n if m.get("in_ensemble", True) else f"{n} (outside the verdict)"
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{html.escape(label)}</text>')
        parts.append(f'<rect x="200" y="{y}" width="400" height="22" fill="#eee"/>')
        p = m.get("fake_probability")
        if p is not None:
            col = "#%02x%02x%02x" % score_colour(p)
            parts.append(f'<rect x="200" y="{y}" width="{400 * p:.1f}" height="22" fill="{col}"/>')
            parts.append(f'<text x="{205 + 400 * p:.1f}" y="{y + 16}" font-size="12">{p:.3f} ({m.get("vote")})</text>')
        else:
            parts.append(f'<text x="205" y="{y + 16}" font-size="12" fill="#6a1b9a">failed: '
                         f'{html.escape(str(m.get("error") or "no score"))[:80]}</text>')
        t = m.get("threshold", 0.5)
        parts.append(f'<line x1="{200 + 400 * t:.1f}" x2="{200 + 400 * t:.1f}" y1="{y - 2}" y2="{y + 24}" '
                     f'stroke="#000" stroke-dasharray="3,2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick positions (steps of 1, 2 or 5 x 10^k) covering [lo, hi]."""
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = np.ceil(lo / step) * step
    return [round(float(t), 6) for t in np.arange(first, hi + step * 1e-6, step)]


def _timeline_svg(a: Analysis) -> str:
    W, H, L, B = 700, 250, 40, 40
    xs = [fr["time_s"] if fr["time_s"] is not None else fr["index"] for fr in a.frames]
    if not xs:
        return ""
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    def px(x):
        return L + (W - L - 10) * (x - x0) / (x1 - x0)
    def py(p):
        return 10 + (H - B - 10) * (1 - p)
    parts = [f'<svg width="{W}" height="{H}" role="img" aria-label="timeline">',
             f'<line x1="{L}" y1="{py(0)}" x2="{W - 10}" y2="{py(0)}" stroke="#999"/>',
             f'<line x1="{L}" y1="{py(0)}" x2="{L}" y2="{py(1)}" stroke="#999"/>']
    for v in (0, 0.5, 1):
        parts.append(f'<text x="5" y="{py(v) + 4}" font-size="11">{v}</text>')
    unit = "s" if a.frames[0]["time_s"] is not None else "frame"
    for t in _ticks(x0, x1):
        parts.append(f'<line x1="{px(t):.1f}" y1="{py(0)}" x2="{px(t):.1f}" y2="{py(0) + 4}" stroke="#999"/>'
                     f'<text x="{px(t):.1f}" y="{py(0) + 15}" font-size="10" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 2}" font-size="11">{"time (s)" if unit == "s" else "frame"}</text>')
    for mi, name in enumerate(a.models):
        col = PALETTE[mi % len(PALETTE)]
        pts = []
        for x, fr in zip(xs, a.frames):
            vals = [a.faces[k].probs.get(name) for k in fr["faces"]]
            vals = [v for v in vals if v is not None]
            if vals:
                pts.append((px(x), py(max(vals))))
        if pts:
            parts.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{col}"/>' for x, y in pts]
        parts.append(f'<text x="{L + 10 + 160 * mi}" y="{H - 14}" font-size="11" fill="{col}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


GALLERY_PER_TRACK = 48  # face crops per track in the report's gallery


class ReportError(RuntimeError):
    """A report could not be made (e.g. the PDF library or its system libraries are missing): one line."""


def _key_face(a: Analysis) -> int | None:
    """The face the verdict rests on: the most suspicious face of the deciding track."""
    ks = [k for k, f in enumerate(a.faces) if f.face.track == a.ensemble.get("track")] or list(range(len(a.faces)))
    if not ks:
        return None
    return max(ks, key=lambda k: (a.faces[k].fake_probability if a.faces[k].fake_probability is not None else -1))


def render_html(a: Analysis, title: str = "TBD case report", print_css: bool = False) -> str:
    """The case report. First the summary an analyst cites (verdict, why, file SHA-256, model versions), then
    bars, timeline (time ticks), the key face with each model's Grad-CAM over its own input, input metadata,
    tracks and a compact face gallery (the deciding track first)."""
    from .ensemble import bands_text, threshold_text, why

    j = a.to_json()
    info = j["input"]
    colour = VERDICT_COLOURS.get(a.verdict, "#333")
    p = a.fake_probability
    esc = html.escape
    th = a.ensemble.get("thresholds") or {}
    page = ("@page{size:A4;margin:14mm}body{margin:0;max-width:none}.first{page-break-after:always}"
            "h2{page-break-after:avoid}.face{page-break-inside:avoid}" if print_css else "")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
           "body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}"
           "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;font-size:12px;text-align:left;"
           "vertical-align:top}code{word-break:break-all;font-size:11px}"
           ".verdict{color:#fff;padding:14px 18px;border-radius:6px;font-size:22px}"
           ".gallery{display:flex;flex-wrap:wrap;gap:6px}.face{border:1px solid #ddd;padding:4px;font-size:10px;"
           "width:104px}.cams{display:flex;flex-wrap:wrap;gap:10px}.cam{font-size:11px;width:170px}"
           + page + "</style></head><body>",
           "<div class='first'>",
           f"<h1>{esc(title)}</h1>",
           f"<p>Generated {esc(j['created'])} by TBD (Truth Behind DeepFakes). Automated detectors give evidence, "
           "not proof: read the per-model scores, the timeline and the heatmaps before concluding.</p>",
           f"<div class='verdict' style='background:{colour}'>Verdict: {esc(a.verdict.replace('_', ' ').upper())}"
           + (f" &mdash; ensemble P(fake) = {p:.3f}" if p is not None else "") + "</div>",
           f"<p><b>Why:</b> {esc(why(a.ensemble, a.models))}"
           + (f" Bands: {esc(bands_text(th))}." if th else "")
           + f" Votes of the verdict's models: "
             f"{esc(', '.join(f'{n} {k}' for k, n in a.ensemble.get('votes', {}).items()) or 'none')}.</p>",
           "<table>"
           f"<tr><th>file</th><td>{esc(str(info.get('path')))}</td></tr>"
           f"<tr><th>SHA-256</th><td><code>{esc(str(info.get('sha256')))}</code></td></tr>"
           f"<tr><th>kind</th><td>{esc(str(info.get('kind')))}, {len(a.frames)} frame(s) sampled, {len(a.faces)} "
           f"face(s) in {len(a.tracks)} track(s)</td></tr></table>",
           "<h2>Models and versions</h2><table><tr><th>model</th><th>version</th><th>architecture</th>"
           "<th>weights SHA-256</th><th>P(fake)</th><th>vote (threshold)</th><th>in verdict</th></tr>"]
    for n, c in a.model_cards.items():
        m = a.models.get(n, {})
        mp = m.get("fake_probability")
        state = "failed" if m.get("error") else "-" if mp is None else f"{mp:.3f}"
        out.append(f"<tr><td>{esc(n)}</td><td>{esc(str(c.get('version')))}</td><td>{esc(c.get('architecture', ''))}</td>"
                   f"<td><code>{esc(str(c.get('sha256', '')))}</code></td><td>{state}</td>"
                   f"<td>{esc(str(m.get('vote') or '-'))} ({threshold_text(m.get('threshold'))})</td>"
                   f"<td>{'yes' if m.get('in_ensemble', True) else 'no'}</td></tr>")
    out.append("</table></div>")
    out += ["<h2>Per-model probabilities</h2>", _bars_svg(a)]
    if len(a.frames) > 1:
        out += ["<h2>Timeline</h2><p>Highest per-face P(fake) of each model in each sampled frame.</p>",
                _timeline_svg(a)]
    key = _key_face(a)
    if key is not None:
        f = a.faces[key]
        fr = a.frames[f.frame]
        t = fr["time_s"]
        out.append(f"<h2>The face the verdict rests on</h2><p>Track {f.face.track}, frame {fr['index']}"
                   + (f" at {t:.2f} s" if t is not None else "") + "</p>")
        if a.images:  # a stored case keeps face crops, not frames
            out.append(_img_tag(annotate_frame(a, f.frame), 560, f"frame {fr['index']}", "max-width:560px"))
        if f.cams:
            out.append("<div class='cams'>")
            for m, ov in f.cams.items():
                size, margin, mode = a.crop_specs.get(m, (None, None, None))
                out.append(f"<div class='cam'>{_img_tag(ov, 160, f'Grad-CAM {m}', 'width:160px')}"
                           + (_img_tag(f.inputs[m], 160, f'input {m}', 'width:160px') if m in f.inputs else "")
                           + f"<br>{esc(m)}: Grad-CAM over its input ({size} px crop, margin {margin}, {mode})</div>")
            out.append("</div>")
    out.append("<h2>Input</h2><table>")
    for k in ("path", "sha256", "kind", "container", "codec", "width", "height", "fps", "duration_s", "frame_count",
              "rotation"):
        v = info.get(k)
        out.append(f"<tr><th>{k}</th><td>{'-' if v is None else esc(str(v))}</td></tr>")
    out.append(f"<tr><th>frames sampled</th><td>{len(a.frames)}</td></tr>")
    if info.get("warnings"):
        out.append(f"<tr><th>warnings</th><td>{esc('; '.join(info['warnings']))}</td></tr>")
    out.append("</table><h2>Face tracks</h2><table><tr><th>track</th><th>faces</th><th>ensemble P(fake)</th>"
               "<th>verdict</th></tr>")
    for tr in a.tracks:
        e = tr["ensemble"]
        fp = e.get("fake_probability")
        out.append(f"<tr><td>{tr['id']}</td><td>{tr['faces']}</td><td>{'-' if fp is None else f'{fp:.3f}'}</td>"
                   f"<td>{esc(e.get('verdict', ''))}</td></tr>")
    out.append("</table><h2>Face gallery</h2>")
    if not a.faces:
        out.append("<p><b>No face</b> was found in any sampled frame; nothing was scored.</p>")
    for tid, ks in face_gallery(a):
        shown = ks[:GALLERY_PER_TRACK]
        out.append(f"<h3>Track {tid}" + (" (decides the verdict)" if tid == a.ensemble.get("track") else "")
                   + f": {len(ks)} face(s)" + (f", the first {len(shown)} shown" if len(shown) < len(ks) else "")
                   + "</h3><div class='gallery'>")
        for k in shown:
            f = a.faces[k]
            fr = a.frames[f.frame]
            t = fr["time_s"]
            img = f.thumb if f.thumb is not None else f.crop
            if img is None:
                continue
            scores = "<br>".join(f"{esc(m)} {'-' if v is None else f'{v:.2f}'}" for m, v in f.probs.items())
            out.append("<div class='face' style='border:3px solid #%02x%02x%02x'>" % score_colour(f.fake_probability)
                       + _img_tag(img, 96, "face", "width:96px")
                       + f"<br>frame {fr['index']}" + (f", {t:.2f} s" if t is not None else "") + f"<br>{scores}</div>")
        out.append("</div>")
    tm = j["timings_s"]
    out.append(f"<h2>Processing</h2><p>{esc(', '.join(f'{k} {v:.2f} s' for k, v in tm.items()))}; "
               f"settings {esc(str(j['settings']))}</p></body></html>")
    return "\n".join(out)


def pdf_unavailable() -> str | None:
    """None when PDF export works here, else the one-line reason (WeasyPrint or Debian's Pango missing)."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as e:
        return ("PDF export needs WeasyPrint and Debian's libpango-1.0-0 and libpangoft2-1.0-0 "
                f"(`make setup` installs them as root): {str(e).splitlines()[0][:120]}")
    return None


def render_pdf(a: Analysis, title: str = "TBD case report") -> bytes:
    """The case report as PDF (WeasyPrint from the report's HTML, A4). The first page holds the verdict, why, the
    file's SHA-256 and the model versions. Raises ReportError (one line) when WeasyPrint or its system
    libraries (Debian libpango-1.0-0, libpangoft2-1.0-0) are missing."""
    missing = pdf_unavailable()
    if missing:
        raise ReportError(missing)
    import logging

    import weasyprint

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return weasyprint.HTML(string=render_html(a, title, print_css=True)).write_pdf()
