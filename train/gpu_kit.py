"""Pack face-crop manifests into a folder small enough to travel to a GPU machine with the repository.

The device tool copies the working tree (tracked files and untracked, not ignored ones) plus the folders named in
its `carry`, "64 MiB" in all; a tree of 63.3 MiB (66.4 MB) was refused, so the limit is taken as 64,000,000 bytes.
The repository's own files take most of that (the shipped weights alone are about 47 MB), so the kit, its manifests
and landmarks included, is budgeted against what is left: every crop is re-encoded as JPEG at `--quality`, optionally
thinned to N crops per group and split, and the manifests and cached 68-point landmarks are rewritten to the new
file names. Nothing is written unless the whole kit fits.

    python -m train.gpu_kit --manifest .cache/faces/real/manifest.csv --manifest .cache/faces/gan/manifest.csv \\
        --out .gpu --quality 85 --max-per-group 6
    # then, on the device:  carry [".gpu"],  python3 -m train.train_image --manifest .gpu/real/manifest.csv ... \\
    #                         --device cuda --init-from weights/sbi-frame.json --out $OUT/runs --ship $OUT/weights
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from .common import limit_per_group, read_manifest
from .landmarks import SIDE_FILE

__all__ = ["DEVICE_LIMIT", "repo_transfer_bytes", "build_kit"]

DEVICE_LIMIT = 64_000_000  # the device tool's "64 MiB" (tree plus carry), read as 10**6 bytes to be safe
MARGIN = 2**20
MARKER = ".tbd-gpu-kit"  # only a folder holding this is ever replaced by a new kit


class KitError(ValueError):
    pass


def repo_transfer_bytes(repo: Path, leave_out: Path | None = None) -> int:
    """Bytes of the files that travel with the repository: tracked and untracked-but-not-ignored ones."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, check=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise KitError(f"{repo} is not a git checkout: cannot tell what travels with it") from None
    total = 0
    for name in filter(None, out.decode().split("\0")):
        p = repo / name
        if leave_out is not None and leave_out in p.resolve().parents:
            continue
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def build_kit(manifests: list[Path], out: Path, budget: int, quality: int = 90, max_per_group: int = 0) -> dict:
    """Write the kit to `out` (replacing an earlier kit there) if it fits in `budget` bytes; a summary."""
    names = [Path(m).parent.name for m in manifests]
    if len(set(names)) != len(names):
        raise KitError(f"manifests need distinct folder names (got {', '.join(names)})")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise KitError(f"{out} exists and is not a GPU kit: choose another --out (nothing there is replaced)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-")
    try:
        total, parts = 0, {}
        for m, name in zip(manifests, names):
            rows = read_manifest(m)
            keep = [r for s in ("train", "val", "test")
                    for r in limit_per_group([r for r in rows if r["split"] == s], max_per_group)]
            dest = Path(tmp) / name
            (dest / "crops").mkdir(parents=True)
            side = Path(m).parent / SIDE_FILE
            old_lm = json.loads(side.read_text()) if side.exists() else None
            new_lm = {"points": {}, "estimated": [], "missing": []}
            fields = [f for f in rows[0] if f != "crop_path"] if rows else ["crop"]
            new_rows = []
            for r in keep:
                crop = f"crops/{Path(r['crop']).stem}.jpg"
                with Image.open(r["crop_path"]) as im:
                    im.convert("RGB").save(dest / crop, quality=quality)
                total += (dest / crop).stat().st_size
                if total > budget:
                    raise KitError(f"the kit passes its budget of {budget / 2**20:.1f} MiB at {name} (row "
                                   f"{len(new_rows) + 1} of {len(keep)}): lower --quality, set --max-per-group, or "
                                   "pack fewer manifests")
                if old_lm is not None:
                    for key in ("estimated", "missing"):
                        if r["crop"] in old_lm[key]:
                            new_lm[key].append(crop)
                    if r["crop"] in old_lm["points"]:
                        new_lm["points"][crop] = old_lm["points"][r["crop"]]
                new_rows.append({**{k: r[k] for k in fields}, "crop": crop})
            with open(dest / "manifest.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(new_rows)
            if old_lm is not None:
                (dest / SIDE_FILE).write_text(json.dumps(new_lm))
                total += (dest / SIDE_FILE).stat().st_size
            total += (dest / "manifest.csv").stat().st_size
            if total > budget:  # the manifest and landmarks travel too
                raise KitError(f"the kit passes its budget of {budget / 2**20:.1f} MiB with {name}'s manifest and "
                               "landmarks: lower --quality, set --max-per-group, or pack fewer manifests")
            parts[name] = {"crops": len(new_rows), "of": len(rows)}
        (Path(tmp) / MARKER).write_text(json.dumps({"quality": quality, "max_per_group": max_per_group,
                                                     "manifests": [str(m) for m in manifests]}))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    Path(tmp).rename(out)
    return {"out": str(out), "bytes": total, "budget": budget, "quality": quality, "manifests": parts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, action="append", help="manifest.csv (repeatable)")
    ap.add_argument("--out", default=".gpu", help="kit folder inside the repository, ignored by git (.gpu)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the packed crops (90)")
    ap.add_argument("--max-per-group", type=int, default=0, help="at most N crops per group in each split (0 = all)")
    ap.add_argument("--budget-mib", type=float, default=0,
                    help="size limit; default: 64,000,000 bytes minus what the repository carries, minus 1 MiB")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    out = Path(args.out).resolve()
    try:
        if not 1 <= args.quality <= 100:
            raise KitError("--quality must be between 1 and 100")
        repo_bytes = repo_transfer_bytes(repo, leave_out=out)
        budget = int(args.budget_mib * 2**20) if args.budget_mib else DEVICE_LIMIT - repo_bytes - MARGIN
        if budget <= 0:
            raise KitError(f"the repository alone carries {repo_bytes / 2**20:.1f} MiB: no room for a kit")
        for m in args.manifest:
            if not Path(m).is_file():
                raise KitError(f"manifest {m} not found")
        summary = build_kit([Path(m) for m in args.manifest], out, budget, args.quality, args.max_per_group)
    except (KitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary["repository_bytes"] = repo_bytes
    print(json.dumps(summary, indent=1))
    print(f"kit {summary['bytes'] / 1e6:.1f} MB + repository {repo_bytes / 1e6:.1f} MB = "
          f"{(summary['bytes'] + repo_bytes) / 1e6:.1f} MB of the device's 64 MB; carry [\"{args.out}\"]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
