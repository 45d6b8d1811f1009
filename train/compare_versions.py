"""Whether a retrained member should replace its shipped version, judged on the ensemble validation files only.

The default ensemble (members and combination rule of the shipped weights/ensemble.json) is scored with each
version of the member in turn, term by term as the ensemble selection scores a candidate
(train.evaluate_defaults.selection_terms: the AUC on validation videos, on GAN faces, on face-swap crops, and the
share of other-source real faces kept below the decision threshold, the share of fakes the verdict calls fake),
and each term's difference (candidate minus shipped) gets a paired bootstrap 95 % interval.

The rule (written on 2026-12-07, before that day's gan-face candidate was scored; train.evaluate_defaults then
re-chooses members, rule and verdict bands with the winner):
  the candidate replaces the shipped version when (1) the term its retraining targets (--target) is better on
  the validation files, and (2) no term is worse beyond noise: for none of them does the 95 % interval of the
  difference lie wholly below zero.
A single mean of terms lets a term measured on a handful of files (15 validation videos: 56 fake-real pairs)
outvote terms measured on hundreds; this rule asks the retraining to do what it was for and to cost nothing the
files can show.

    python -m train.evaluate_defaults --selection-only --weights W_SHIPPED --val-scores shipped.json
    python -m train.evaluate_defaults --selection-only --weights W_CANDIDATE --val-scores candidate.json
    python -m train.compare_versions shipped.json candidate.json --member gan-face --target "other-source reals kept"

The same rule judges a new default ensemble (say, one with an added model) against the shipped one: with
`--candidate-ensemble MEMBERS:RULE` the candidate side is scored with those members and rule (the shipped side
with the shipped ensemble, as always), and `--target score` asks that the selection's score be higher. The shipped
ensemble is read from `--ensemble` (default weights/ensemble.json), not from the score file, which records the
ensemble in force when it was written.

    python -m train.compare_versions shipped.json candidate.json --candidate-ensemble face-swap,face-swap-codec,gan-face:mean \
        --target score
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core.models.checkpoint import ModelCard, discover_models
from train.evaluate_defaults import (
    SELECTION_FAMILIES,
    candidate_scores,
    is_other_source_real,
    paired_bootstrap_terms,
    selection_family,
    selection_terms,
    term_names,
    term_values,
)
from train.stacking import family_weights


def ensemble_scores(scores: dict, members: list[str], rule: str) -> tuple[np.ndarray, dict]:
    """The ensemble's P(fake) on each validation file of a `--val-scores` file (out of fold for the logistic
    rule, as the selection scores it), and the files' selection data."""
    files = scores["files"]
    cards = {n: c for n, c in discover_models([Path(scores["weights"])]).items() if isinstance(c, ModelCard)}
    y = np.array([f["label"] == "fake" for f in files], int)
    fams = [selection_family(f) for f in files]
    probs = np.array([[f["models"][m] for m in members] for f in files], float)
    p, _, called = candidate_scores(probs, y, family_weights(fams, y), [f["group"] for f in files], members, cards,
                                    rule)
    return p, {"y": y, "fams": fams, "others": np.array([is_other_source_real(f) for f in files], bool),
               "called": called}


def rule_of(ens: dict) -> str:
    """The combination rule of an ensemble policy or a score file's ensemble (mean where none is named)."""
    return (ens.get("combiner") or {}).get("type", "mean")


def parse_ensemble(text: str) -> dict:
    """"m1,m2,...:rule" (rule mean, max or logistic; default mean) as {"models": [...], "rule": rule}."""
    from core.ensemble import COMBINERS

    names, _, rule = text.partition(":")
    models = [m.strip() for m in names.split(",") if m.strip()]
    rule = rule.strip() or "mean"
    if not models or rule not in COMBINERS:
        raise ValueError(f"--candidate-ensemble must read MEMBER[,MEMBER...][:RULE] with RULE one of "
                         f"{', '.join(COMBINERS)} (got {text!r})")
    return {"models": models, "rule": rule}


def with_shipped_ensemble(scores: dict, policy_path: Path) -> dict:
    """The shipped score file with the ensemble of `policy_path` (members and rule) in force, where that file
    exists: a score file records the ensemble in force when it was written, which a later selection may have
    changed (a file written under the logistic rule judged candidates under it after the mean was shipped). Says
    on stderr which ensemble scores the comparison."""
    recorded = scores.get("ensemble") or {}
    if policy_path.exists():
        policy = json.loads(policy_path.read_text())
        ens = {"models": policy.get("models"), "combiner": {"type": rule_of(policy)}}
        if (recorded.get("models"), rule_of(recorded)) != (ens["models"], rule_of(ens)):
            print(f"note: the shipped score file was written under {', '.join(recorded.get('models') or [])} "
                  f"({rule_of(recorded)}); scored under {policy_path}'s", file=sys.stderr)
        scores = {**scores, "ensemble": ens}
    print(f"shipped ensemble: {', '.join(scores['ensemble']['models'])} ({rule_of(scores['ensemble'])})",
          file=sys.stderr)
    return scores


def compare(shipped: dict, candidate: dict, target: str, n_boot: int = 2000, seed: int = 0,
            candidate_ensemble: dict | None = None) -> dict:
    """Terms of the shipped ensemble with each version (the files must be the same, in the same order), the
    differences' paired bootstrap 95 % intervals, and the rule's decision (see the module text). With
    `candidate_ensemble` ({"models", "rule"}) the candidate side is that ensemble instead of the shipped one."""
    if [f["path"] for f in shipped["files"]] != [f["path"] for f in candidate["files"]]:
        raise ValueError("the two score files hold different validation files")
    names = term_names()
    if target not in names + ["score"]:
        raise ValueError(f"unknown target term {target!r} (one of: {', '.join(names)}, score)")
    ens = shipped["ensemble"]
    members, rule = ens["models"], rule_of(ens)
    cand_members, cand_rule = ((candidate_ensemble["models"], candidate_ensemble["rule"]) if candidate_ensemble
                               else (members, rule))
    missing = [m for m in cand_members if all(m not in f["models"] for f in candidate["files"])]
    if missing:
        raise ValueError(f"the candidate score file has no scores of {', '.join(missing)}")
    keep = [i for i, (a, b) in enumerate(zip(shipped["files"], candidate["files"]))
            if all(a["models"].get(m) is not None for m in members)
            and all(b["models"].get(m) is not None for m in cand_members)]
    shipped, candidate = ({**s, "files": [s["files"][i] for i in keep]} for s in (shipped, candidate))
    pa, sel = ensemble_scores(candidate, cand_members, cand_rule)
    pb, sel_b = ensemble_scores(shipped, members, rule)
    y, fams, others = sel["y"], sel["fams"], sel["others"]
    fam_idx = {fam: [i for i, x in enumerate(fams) if x == fam] for fam in SELECTION_FAMILIES}
    point = {}
    for who, p, c in (("candidate", pa, sel["called"]), ("shipped", pb, sel_b["called"])):
        fam_auc, flagged, share, score = selection_terms(p, y, fam_idx, others, ndigits=None, called=c)
        point[who] = term_values(fam_auc, flagged, share) + [score]
    a, b = paired_bootstrap_terms(pa, pb, y, fams, others, n_boot, seed, sel["called"], sel_b["called"])
    rows = []
    for j, name in enumerate(names + ["score"]):
        ca, sb = point["candidate"][j], point["shipped"][j]
        d = np.round(a[:, j] - b[:, j], 9)  # equal terms summed in another order differ by ~1e-16, not by noise
        d = d[np.isfinite(d)]
        lo, hi = (np.percentile(d, [2.5, 97.5]).tolist() if len(d) else [None, None])
        rows.append({"term": name, "shipped": sb, "candidate": ca,
                     "difference": None if ca is None or sb is None else ca - sb, "ci95": [lo, hi],
                     "worse beyond noise": hi is not None and hi < 0})
    by = {r["term"]: r for r in rows}
    improved = by[target]["difference"] is not None and by[target]["difference"] > 0
    harmed = [r["term"] for r in rows[:-1] if r["worse beyond noise"]]
    return {"ensemble": {"models": members, "rule": rule},
            "candidate ensemble": {"models": cand_members, "rule": cand_rule}, "n_files": len(y), "target": target,
            "terms": rows,
            "target improved": improved, "worse beyond noise": harmed, "replace": improved and not harmed,
            "bootstrap": f"{n_boot} paired resamples within family x label x other-source strata, seed {seed}"}


def member_scores(scores: dict, member: str) -> dict:
    """{path: P(fake)} of one member in a score file. Equal weights (sha256) with other scores are a real
    candidate: the card changed how they are scored (test-time views, calibration)."""
    return {f["path"]: f["models"].get(member) for f in scores["files"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shipped", help="--val-scores file of the shipped weights")
    ap.add_argument("candidate", help="--val-scores file of the weights with the candidate in the member's place")
    ap.add_argument("--member", help="the retrained model (must be in the shipped ensemble; required unless "
                    "--candidate-ensemble is given)")
    ap.add_argument("--candidate-ensemble", metavar="MEMBERS:RULE",
                    help="score the candidate side with this ensemble (e.g. face-swap,face-swap-codec,gan-face:mean)")
    ap.add_argument("--target", required=True,
                    help=f"the term the change targets: {', '.join(term_names())}, or score")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--ensemble", default="weights/ensemble.json",
                    help="the shipped ensemble policy whose members and rule score the shipped side (default "
                         "weights/ensemble.json; where the file is missing, the ensemble recorded in the shipped "
                         "score file)")
    ap.add_argument("--out", help="also write the comparison as JSON here")
    args = ap.parse_args(argv)
    try:
        cand_ens = parse_ensemble(args.candidate_ensemble) if args.candidate_ensemble else None
        shipped, candidate = (json.loads(Path(p).read_text()) for p in (args.shipped, args.candidate))
        shipped = with_shipped_ensemble(shipped, Path(args.ensemble))
        if cand_ens is None:
            if not args.member:
                raise ValueError("give --member (a retrained member) or --candidate-ensemble")
            if args.member not in (shipped["ensemble"]["models"] or []):
                raise ValueError(f"{args.member} is not in the shipped ensemble {shipped['ensemble']['models']}")
            if (shipped["model_versions"].get(args.member) == candidate["model_versions"].get(args.member)
                    and member_scores(shipped, args.member) == member_scores(candidate, args.member)):
                raise ValueError(f"both score files hold the same {args.member} (sha256 and scores equal)")
        res = compare(shipped, candidate, args.target, args.n_boot, candidate_ensemble=cand_ens)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res["member"] = args.member
    for r in res["terms"]:
        fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
        print(f"{r['term']:>40}: shipped {fmt(r['shipped'])} candidate {fmt(r['candidate'])} "
              f"difference {fmt(r['difference'])} [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]"
              f"{'  worse beyond noise' if r['worse beyond noise'] else ''}")
    print(f"target ({args.target}) improved: {res['target improved']}; worse beyond noise: "
          f"{', '.join(res['worse beyond noise']) or 'none'}; replace: {res['replace']}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
