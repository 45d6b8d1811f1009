"""Markdown tables of the measured results (weights/benchmarks.json and the shipped cards), for the README: the
family AUCs with intervals, the targets, calibration and the ensemble choice. Nothing here is typed by hand, and
tests/test_weights.py checks that the README quotes these figures.

    python -m train.readme_tables [weights]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(v, ci=None) -> str:
    if v is None:
        return "-"
    s = f"{v:.3f}"
    return s + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def tables(weights: Path) -> str:
    b = json.loads((weights / "benchmarks.json").read_text())
    fams = b["families"]
    ours = [m for m in b["runs"]["ours"]["models"]] + ["ensemble"]
    meso = list(b["runs"].get("mesonet", {}).get("models", []))
    out = ["| family (fakes vs reals) | n (fake) | " + " | ".join(ours + meso) + " |",
           "|---|---|" + "---|" * (len(ours) + len(meso))]
    for fam, by_run in fams.items():
        n = by_run["ours"]["ensemble"]
        cells = [_fmt(by_run["ours"][m]["auc"], by_run["ours"][m].get("ci95")) for m in ours]
        cells += [_fmt(by_run["mesonet"][m]["auc"], by_run["mesonet"][m].get("ci95")) for m in meso] if meso else []
        out.append(f"| {fam} | {n['n']} ({n['fake']}) | " + " | ".join(cells) + " |")
    out += ["", "| target | data | value (95 % interval) | met |", "|---|---|---|---|"]
    for t in b["targets"]:
        if t["run"] == "ours" and t["model"] == "ensemble" and t["met"] is not None:
            out.append(f"| {t['target']} | {t['data']} | {_fmt(t['value'], t.get('ci95'))} | "
                       f"{'yes' if t['met'] else 'no'} |")
    for t in b["targets"]:
        if t["target"].startswith("AUC drop") and t["model"] != "ensemble":
            out.append(f"| {t['target']} ({t['model']}) | {t['data']} | {_fmt(t['value'])} | "
                       f"{'-' if t['met'] is None else 'yes' if t['met'] else 'no'} |")
    subsets = list(b.get("calibration", {}))
    out += ["", "| model | calibration | ECE val before -> after | ECE test (its crops) | "
            + " | ".join(f"ECE, {s}" for s in subsets) + " |", "|---|---|---|---|" + "---|" * len(subsets)]
    for m in b["runs"]["ours"]["models"]:
        card = json.loads((weights / f"{m}.json").read_text())
        cal = card.get("calibration") or {}
        eces = [str(b["calibration"][s].get(m, {}).get("ece", "-")) for s in subsets]
        after = " (fitted after training)" if cal.get("fitted_after_training") else ""
        sizes = card.get("tta_sizes") or []
        views = "mirrored views" if card.get("tta") else "views" if sizes else ""
        if sizes:
            views += f" at {card['input_size']} and {', '.join(map(str, sizes))} px"
        after += f" ({views})" if views else ""
        how = (f"Platt, T {cal['temperature']}, b {cal['bias']}" if cal.get("method") == "platt"
               else f"T {cal['temperature']}" if cal else "-")
        out.append(f"| {m} | {how}{after} | "
                   f"{cal.get('ece_validation_before', '-')} -> {cal.get('ece_validation', '-')} | "
                   f"{cal.get('ece_test', '-')} | " + " | ".join(eces) + " |")
    ev = b["ensemble_validation"]
    best = sorted(ev["candidates"], key=lambda c: -(c["score"] or 0))[:5]
    keys = [k for k in best[0] if k.endswith(" AUC") or k in ("other-source reals flagged", "fakes called fake")]
    out += ["", "| ensemble candidate (top 5 of " + str(len(ev["candidates"])) + ") | rule | " + " | ".join(keys)
            + " | score |", "|---|---|" + "---|" * (len(keys) + 1)]
    for c in best:
        out.append(f"| {', '.join(c['models'])} | {c.get('rule', 'mean')} | " + " | ".join(_fmt(c[k]) for k in keys)
                   + f" | {c['score']} |")
    comb = ev.get("combiner") or {"type": "mean"}
    margin = ""
    if best[0].get("beats runner-up (bootstrap)") is not None:
        ru = best[0]["runner-up"]
        margin = (f". The chosen candidate scores above the runner-up ({', '.join(ru['models'])}, {ru['rule']}) in "
                  f"{best[0]['beats runner-up (bootstrap)']:.0%} of 1,000 paired bootstrap resamples of the validation "
                  f"files.")
    out += ["", f"Chosen rule: {comb['type']}; thresholds: {ev['thresholds']}{margin}", "",
            json.loads((weights / "ensemble.json").read_text())["scope"]]
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(Path(sys.argv[1] if len(sys.argv) > 1 else "weights")))
