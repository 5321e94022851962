"""Issue 9, robustness: does pruning without emptying a sub-tree help? ``seed_spread.py`` with
CoHiClust's pruning rule changed to "the lowest-mass leaf among those whose sibling leaf is still
kept" (the library prunes the lowest-mass leaf whatever its sibling; when both leaves of a pair go,
their items must move to the neighbouring sub-tree). Same arguments as seed_spread.py, e.g.

    python benchmarks/explore_pruning_rule.py --config digits --seeds 1,3,0 --threads 1 --out rule.jsonl

The lines are seed_spread.py's, with "remedy": "sibling_kept".
"""
import json
import math
import runpy
import sys
from pathlib import Path

import torch

from hiclust import distributed as dist_utils
from hiclust.methods.cohiclust import CoHiClust


def _on_epoch_end(self, phase, epoch, record):
    """CoHiClust._on_epoch_end with the pruning candidates limited to leaves whose sibling is kept."""
    dist_utils.all_reduce_sum(self._mass)
    total = float(self._mass.sum())
    if total > 0:
        record["leaf_mass"] = [round(float(m), 5) for m in (self._mass / total).cpu()]
    n_prune = 2**self.depth_ - self.n_clusters
    if self._prune_start <= epoch < self._prune_start + n_prune:
        kept = self.leaf_mask_ > 0
        sibling_kept = kept[torch.arange(kept.numel(), device=kept.device) ^ 1]
        candidates = kept & sibling_kept if bool((kept & sibling_kept).any()) else kept
        masked = torch.where(candidates, self._mass, torch.full_like(self._mass, math.inf))
        leaf = int(torch.argmin(masked))
        self.leaf_mask_[leaf] = 0
        self.pruned_leaves_.append(leaf)
        record["pruned_leaf"] = leaf
    self._mass.zero_()


if __name__ == "__main__":
    CoHiClust._on_epoch_end = _on_epoch_end
    out = None
    if "--out" in sys.argv:  # tag the lines: seed_spread.py writes to a temporary file first
        i = sys.argv.index("--out")
        out, sys.argv[i + 1] = sys.argv[i + 1], sys.argv[i + 1] + ".partial"
    sys.argv = ["seed_spread.py", *sys.argv[1:]]
    runpy.run_path(str(Path(__file__).with_name("seed_spread.py")), run_name="__main__")
    if out is not None:
        partial = Path(out + ".partial")
        with Path(out).open("a") as f:
            for line in partial.read_text().splitlines():
                f.write(json.dumps({**json.loads(line), "remedy": "sibling_kept"}) + "\n")
        partial.unlink()
