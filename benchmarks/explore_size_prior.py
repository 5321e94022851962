"""Issue 13, wine: does weakening CoHiLoss's pull towards equal leaves help? The negative term's
per-node sum (Σ_a r_a)² is divided by (L·m)^γ, m the node's detached share of the batch's mass
and L the number of nodes with mass (γ = 0: the library's loss; γ = 1 removes the size
preference, and with it the term's resistance to collapse). CoHiClust with defaults (input-space
mode) on the standardized scikit-learn matrices, seeds 0, 1, 2; prints per seed (ACC, NMI, leaf sizes).

    python benchmarks/explore_size_prior.py 0.5 wine,iris,breast_cancer
"""
import sys, json, numpy as np, torch
import hiclust.losses.modules as mods
from hiclust.losses import tree as T
from hiclust import CoHiClust
from hiclust.metrics import clustering_accuracy
from sklearn.metrics import normalized_mutual_info_score as nmi
from sklearn import datasets
from sklearn.preprocessing import StandardScaler
torch.set_num_threads(1)
gamma = float(sys.argv[1])
def weighted(da, db, leaf_mask=None, form="reference"):
    n = da.shape[0]
    levels = T._masked_levels(da, db, leaf_mask)
    total = da.new_zeros(())
    n_rows = 2*n; n_neg = n_rows*n_rows - n_rows
    for p in levels:
        r = torch.sqrt(p + 1e-8)
        L = (p.detach().sum(0) > 0).sum().clamp_min(1)
        m = p.detach().mean(0)
        w = (L*m).clamp_min(1e-2)**gamma
        all_pairs = (r.sum(0).square()/w).sum()
        pos_w = 2.0*((r[:n]*r[n:])/w).sum()
        positives = 2.0*(r[:n]*r[n:]).sum()
        total = total + (all_pairs - pos_w)/n_neg - positives/n_rows
    return total
if gamma > 0:
    mods.cohiloss = weighted
for name in sys.argv[2].split(","):
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    k = len(set(y))
    res = []
    for seed in (0, 1, 2):
        m = CoHiClust(n_clusters=k, seed=seed, verbose=False, device="cpu").fit(X)
        res.append((round(clustering_accuracy(y, m.labels_), 3), round(nmi(y, m.labels_), 3), np.bincount(m.labels_).tolist()))
    print(gamma, name, res, flush=True)
