"""Cases: every stored analysis (the dashboard's and `core scan`'s), filtered, sorted, exported; one case opened
with its verdict, bars, timeline and gallery, an analyst note and label saved back, and delete with confirmation."""

import datetime as dt
from pathlib import Path

import streamlit as st

from app import viz
from app.results import show_results
from core.analyze import Analysis
from core.cases import LABELS, CaseDB, DatabaseError, default_db_path

st.set_page_config(page_title="Cases - TBD", page_icon=":file_cabinet:", layout="wide")
st.title("Cases")
st.caption("Every analysis the Analyze page stored and every file `python -m core scan` analysed. Choose the "
           f"database file (default `{default_db_path()}`, outside the repository; `$TBD_DATA` moves it).")

db_path = st.text_input("Case database", str(default_db_path()), key="cases-db")
if not Path(db_path).exists():
    st.info(f"No case database at `{db_path}` yet: analyse a file on the Analyze page, or run "
            f"`python -m core scan FOLDER --db {db_path}`.")
    st.stop()
try:
    reader = CaseDB(db_path)
except DatabaseError as e:
    st.error(str(e))
    st.stop()

with reader:
    everything = reader.cases()
    models = sorted({m for c in everything for m in c["model_scores"]})
    with st.expander("Filters and sorting (default: every case, newest first)", expanded=False):
        c1, c2, c3 = st.columns(3)
        verdicts = viz.filter_values("Verdict", ["real", "uncertain", "fake", "no_face", "error"], key="cases-verdict")
        lo, hi = c1.slider("Ensemble P(fake) between", 0.0, 1.0, (0.0, 1.0), 0.01, key="cases-p")
        model = c2.selectbox("Scored by model", ["any"] + models, key="cases-model")
        text = c3.text_input("Path contains", "", key="cases-text")
        days = sorted({c["created"][:10] for c in everything})
        first = dt.date.fromisoformat(days[0]) if days else dt.date.today()
        span = st.date_input("Created between", (first, dt.date.today()), key="cases-dates")
        s1, s2 = st.columns(2)
        order = s1.selectbox("Sort by", ["created", "fake_probability", "verdict", "path", "kind"], key="cases-order")
        desc = s2.toggle("Descending", value=True, key="cases-desc")
    since, until = (span[0].isoformat(), span[1].isoformat()) if len(span) == 2 else (None, None)
    rows = reader.cases(verdicts=verdicts, p_min=lo if lo > 0 else None, p_max=hi if hi < 1 else None,
                        model=None if model == "any" else model, since=since, until=until, text=text, order=order,
                        descending=desc)
    skipped = reader.skipped()
    csv_text = reader.export_csv(rows)

st.markdown(f"**{len(rows)} of {len(everything)} cases**")
viz.table([{"id": c["id"], "path": c["path"], "verdict": c["verdict"], "P(fake)": c["fake_probability"],
            **{m: c["model_scores"].get(m) for m in models}, "label": c["label"] or None, "note": c["note"] or None,
            "source": c["source"], "created": c["created"], "error": c["error"]} for c in rows],
          numbers={"P(fake)": "%.4f", **{m: "%.4f" for m in models}}, wide=("path", "note", "error"),
          height=min(600, 35 * (len(rows) + 1) + 3))
st.download_button("Export these cases (CSV)", csv_text, file_name="tbd-cases.csv", mime="text/csv",
                   disabled=not rows)
if skipped:
    with st.expander(f"Files a scan skipped ({len(skipped)})"):
        viz.table(skipped, wide=("path", "reason"))

if not rows:
    st.stop()
st.subheader("Open a case")
pick = st.selectbox("Case", [c["id"] for c in rows], key="cases-open",
                    format_func=lambda i: next(f"#{c['id']} {Path(c['path']).name}: {c['verdict']}"
                                               + ("" if c["fake_probability"] is None else f" ({c['fake_probability']:.3f})")
                                               for c in rows if c["id"] == i))
with CaseDB(db_path) as r3:
    case = r3.case(pick)
if case is None:
    st.warning("That case was deleted meanwhile.")
    st.stop()

with st.form(f"note-{pick}"):
    n1, n2 = st.columns([3, 1])
    note = n1.text_area("Analyst note", case["note"], key=f"note-text-{pick}")
    label = n2.radio("Label", list(LABELS), index=LABELS.index(case["label"]),
                     format_func=lambda v: v or "(none)", key=f"label-{pick}")
    if st.form_submit_button("Save note and label"):
        try:
            with CaseDB(db_path, writer=True, timeout_s=5) as w:
                w.annotate(pick, note=note, label=label)
            st.success("Saved.")
        except DatabaseError as e:
            st.error(f"Not saved: {e}")

with st.expander("Delete this case"):
    sure = st.checkbox(f"Yes, delete case #{pick} ({case['path']}) from {Path(db_path).name}", key=f"sure-{pick}")
    if st.button("Delete case", disabled=not sure, key=f"delete-{pick}"):
        try:
            with CaseDB(db_path, writer=True, timeout_s=5) as w:
                w.delete([pick])
            st.success(f"Case #{pick} deleted.")
            st.stop()
        except DatabaseError as e:
            st.error(f"Not deleted: {e}")

if case["error"]:
    st.error(f"{case['path']}: {case['error']}")
elif case["analysis"]:
    try:
        show_results(Analysis.from_json(case["analysis"], case["thumbs"]), Path(case["path"]).name,
                     f"case-{pick}-{case['sha256']}", False)
    except Exception as e:  # a display problem becomes a message, never a traceback
        st.error(f"Could not display the case: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
