"""Issue 9: is the bar what sends crossed sevens to another class's leaf? For each finished
full-MNIST run (``hiclust train --config mnist``): the 7s' own leaf and the leaf holding most of the
other 7s; the row where those differ most from the 7s in their own leaf (the bar's row); then the
run's model routes (a) 2,000 plain 7s with a bar drawn at that row (9 px long, 2 px thick, centred
on the stem) and (b) the misplaced 7s with that band blanked outside the stem. One JSON line per run.
``--bar-row R`` fixes the row instead (for runs whose few misplaced 7s are not crossed ones).

    python benchmarks/probe_crossed_sevens.py RUN [RUN ...] --root /tmp/mnistroot
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch


def _shares(pred: np.ndarray, leaves: dict[int, str]) -> dict[str, float]:
    counts = pd.Series(pred).value_counts(normalize=True)
    return {leaves.get(int(k), str(k)): round(float(v), 3) for k, v in counts.items() if v >= 0.005}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--root", required=True)
    p.add_argument("--bar-row", type=int, default=None,
                   help="draw the bar at this row (a run without misplaced crossed 7s has no row of its own; "
                        "the preset's runs gave 16)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from hiclust import CoHiClust, load_dataset

    data = load_dataset("mnist", root=args.root, split="all")
    x = data.images
    for run in args.runs:
        a = pd.read_csv(f"{run}/assignments.csv")
        table = pd.crosstab(a["leaf"], a["label"])
        leaves = {int(leaf): f"{cls}s' leaf" for leaf, cls in table.idxmax(axis=1).items()}  # leaf -> majority class
        sevens = a[a["label"] == 7]
        counts = sevens["leaf"].value_counts()
        own, other = int(counts.index[0]), int(counts.index[1])
        ok = sevens[sevens["leaf"] == own]["item"].to_numpy()
        odd = sevens[sevens["leaf"] == other]["item"].to_numpy()
        diff = x[odd].float().mean(0)[0] - x[ok].float().mean(0)[0]
        row = int(diff.sum(1).argmax()) if args.bar_row is None else args.bar_row  # the bar's row (28 px images)
        model = CoHiClust.load(f"{run}/model.pt", device="cpu")
        pick = np.random.default_rng(0).choice(ok, min(2000, len(ok)), replace=False)
        barred = x[pick].clone()
        stem = barred[:, 0, row].float().argmax(1)  # brightest column of the bar's row: the stem
        for i, c in enumerate(stem.tolist()):
            barred[i, 0, row - 1:row + 1, max(0, c - 4):c + 5] = 255
        blanked = x[odd].clone()
        stem_below = blanked[:, 0, min(27, row + 4)].float().argmax(1)
        for i, c in enumerate(stem_below.tolist()):
            keep = torch.zeros(28, dtype=torch.bool)
            keep[max(0, c - 2):c + 3] = True
            blanked[i, 0, row - 2:row + 3, ~keep] = 0
        print(json.dumps({
            "run": run, "sevens_own_leaf": len(ok), "sevens_in_other_leaf": len(odd),
            "other_leaf": leaves.get(other), "bar_row": row,
            "plain_sevens_as_is": _shares(model.predict(x[pick]), leaves),
            "plain_sevens_with_a_bar_drawn": _shares(model.predict(barred), leaves),
            "misplaced_sevens_as_is": _shares(model.predict(x[odd]), leaves),
            "misplaced_sevens_with_the_bar_blanked": _shares(model.predict(blanked), leaves),
        }))


if __name__ == "__main__":
    main()
