"""Issue 9, goal 2: clustering quality against wall time, from the ``history.jsonl`` of
``hiclust train`` runs (the records with labels carry ACC / NMI / ARI every ``--eval-every``
epochs, and every record the wall seconds since the fit began, ``elapsed``).

    python benchmarks/plot_time_to_quality.py RUN_A RUN_B --label float32 --label bfloat16 \\
        --out benchmarks/results/time_to_quality.png

Writes one PNG (ACC and NMI against minutes, one line per run) and prints one JSON line per run:
the minutes at which ACC first reached each of --thresholds (null where it never did), the final
ACC / NMI and the total minutes. Runs written before records had ``elapsed`` are refused (their
per-epoch ``seconds`` leave out the evaluations, so a sum of them would understate the time).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_curve(run: Path) -> list[dict]:
    """The history records of ``run`` (a run directory or a history.jsonl) that hold ACC."""
    path = run / "history.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise SystemExit(f"{run}: no history.jsonl (give a run directory that 'hiclust train --out' wrote)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if records and "elapsed" not in records[-1]:
        raise SystemExit(f"{path}: its records have no 'elapsed' (written by an older hiclust); rerun the training")
    curve = [r for r in records if "acc" in r]
    if not curve:
        raise SystemExit(f"{path}: no record holds ACC (was the run trained with labels and --eval-every?)")
    return curve


def first_time(curve: list[dict], threshold: float) -> float | None:
    """Minutes at which ACC first reached ``threshold`` (None if never)."""
    return next((r["elapsed"] / 60 for r in curve if r["acc"] >= threshold), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or their history.jsonl)")
    p.add_argument("--label", action="append", default=[], help="a legend label per run, in order")
    p.add_argument("--thresholds", default="0.9,0.95,0.98,0.99")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write (an existing file is not replaced)")
    args = p.parse_args()
    if args.label and len(args.label) != len(args.runs):
        raise SystemExit(f"give one --label per run ({len(args.runs)} runs, {len(args.label)} labels)")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another --out (this script does not replace files)")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    curves = [load_curve(r) for r in args.runs]
    labels = args.label or [r.name for r in args.runs]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for curve, label in zip(curves, labels):
        minutes = [r["elapsed"] / 60 for r in curve]
        for ax, key in zip(axes, ("acc", "nmi")):
            ax.plot(minutes, [r[key] for r in curve], marker="o", markersize=3, label=label)
    for ax, key in zip(axes, ("ACC", "NMI")):
        ax.set_xlabel("wall time (minutes)")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    for t in thresholds:
        axes[0].axhline(t, color="grey", linewidth=0.6, linestyle=":")
    axes[0].legend()
    fig.tight_layout()
    tmp = args.out.with_name(args.out.name + ".partial.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(args.out)
    for curve, label, run in zip(curves, labels, args.runs):
        line = {"run": str(run), "label": label, "minutes_total": round(curve[-1]["elapsed"] / 60, 2),
                "final_acc": round(curve[-1]["acc"], 4), "final_nmi": round(curve[-1]["nmi"], 4),
                **{f"minutes_to_acc_{t}": (None if (m := first_time(curve, t)) is None else round(m, 2))
                   for t in thresholds}}
        print(json.dumps(line), flush=True)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
