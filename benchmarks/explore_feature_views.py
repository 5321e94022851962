"""Exploration behind CoHiClust's input-space mode for feature matrices (issue 13; summarized in
benchmarks/RESULTS.md, "Feature matrices"). A self-contained prototype, not the library's code
path: a linear tree head (optionally on an MLP) trained full-data-sampled on standardized
scikit-learn data with CoHiLoss (negative term weighted by --kw neg_w) plus a balance term whose
targets are proportional to the kept leaves under each child (bal_w), views = a row and one of its
knn nearest neighbours, each plus Gaussian noise (noise), optional initialisation of the tree from
k-means or Ward (init) with, optionally, its cluster sizes as the negative term's size target
(prior "init": each node's (Σ r)² divided by L·q, q its share in the initialising partition),
rows whitened by the covariance of neighbour differences (white = k > 0, shrink) or only the
noise shaped by it (white = −k), and pruning of the least-used leaf from 30 % of the steps.

    python benchmarks/explore_feature_views.py --data wine,iris --seeds 0,1,2 --kw '{"bal_w": 0, "noise": 1.0}'

Prints one JSON line per seed and a "## dataset ... worst acc ... nmi ..." summary per dataset.
"""
import argparse, json, math, sys, time
import numpy as np
import torch
from torch import nn
import sklearn.datasets as skd
from sklearn.preprocessing import StandardScaler
from sklearn.cluster import KMeans, AgglomerativeClustering
from sklearn.neighbors import NearestNeighbors
from hiclust.losses.tree import level_probabilities, cohiloss
from hiclust.metrics import clustering_accuracy, nmi

torch.set_num_threads(1)
DEBUG = False


def load(name):
    b = getattr(skd, f"load_{name}")()
    x = StandardScaler().fit_transform(b.data).astype(np.float32)
    return x, b.target, len(np.unique(b.target))


def balance(levels, mask, leaves_under):
    """Cross-entropy of each sibling pair's mass split against a target proportional to kept leaves."""
    tot = 0.0
    T = len(levels)
    for t, p in enumerate(levels, start=1):
        m = p.mean(0).clamp_min(1e-12)
        if t == T:
            m = m * mask
        pair = m.reshape(-1, 2)
        w = leaves_under[t].reshape(-1, 2).float()  # kept leaves under each node at level t
        s = w.sum(1)
        keep = (w > 0).all(1)
        target = w / s.clamp_min(1)[:, None]
        share = pair / pair.sum(1, keepdim=True).clamp_min(1e-12)
        ce = -(target * torch.log(share.clamp_min(1e-12))).sum(1)
        tot = tot + (ce[keep] * s[keep] / s.sum()).sum() / T
    return tot


def leaves_under_levels(mask, T):
    out = {T: mask.clone()}
    cur = mask.clone()
    for t in range(T - 1, 0, -1):
        cur = cur.reshape(-1, 2).sum(1)
        out[t] = cur
    return out


def wcohiloss(da, db, mask, neg_w, prior=None):
    n = da.shape[0]
    levels = level_probabilities(torch.cat([da, db]))
    levels[-1] = levels[-1] * mask
    tot = 0.0
    n_rows = 2 * n; n_neg = n_rows * n_rows - n_rows
    for t, p in enumerate(levels, start=1):
        r = torch.sqrt(p + 1e-8)
        if prior is None:
            allp = r.sum(0).square().sum()
        else:
            q = prior[t]; L = (q > 0).sum()
            w = torch.where(q > 0, L * q, torch.ones_like(q))
            allp = (r.sum(0).square() / w).sum()
        pos = 2.0 * (r[:n] * r[n:]).sum()
        tot = tot + neg_w * (allp - pos) / n_neg - pos / n_rows
    return tot


def run(x, y, k, seed, variant, neg_w=1.0, steps=1500, knn=10, bal_w=1.0, noise=0.1, hidden=0, lr=1e-2, init="none", prior="none", init_steps=300, bs=256, white=0, shrink=0.0):
    Lc = None
    if white < 0:  # standardized rows, noise shaped like the neighbour differences (k = -white)
        idx = NearestNeighbors(n_neighbors=-white+1).fit(x).kneighbors(x, return_distance=False)[:,1:]
        dd = (x[:,None,:]-x[idx]).reshape(-1,x.shape[1]).astype(np.float64)
        Lc = torch.from_numpy(np.linalg.cholesky(dd.T@dd/len(dd)).astype(np.float32))
    if white > 0:  # the rows themselves whitened by their neighbour differences (k = white)
        idx = NearestNeighbors(n_neighbors=white + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
        dd = (x[:, None, :] - x[idx]).reshape(-1, x.shape[1]).astype(np.float64)
        c = dd.T @ dd / len(dd)
        c = (1 - shrink) * c + shrink * np.trace(c) / len(c) * np.eye(len(c))
        ev, vec = np.linalg.eigh(c)
        x = (x @ (vec / np.sqrt(ev))).astype(np.float32)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n, d = x.shape
    X = torch.from_numpy(x)
    T = max(1, math.ceil(math.log2(k)))
    nn_idx = NearestNeighbors(n_neighbors=knn + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    NN = torch.from_numpy(nn_idx)
    if hidden:
        back = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        fd = hidden
    else:
        back = nn.Identity(); fd = d
    head = nn.Linear(fd, 2**T - 1)
    params = list(back.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    mask = torch.ones(2**T)
    prune_at = set()
    n_prune = 2**T - k
    # prune one leaf every 50 steps after 30% of training
    start = int(steps * 0.3)
    schedule = [start + 50 * i for i in range(n_prune)]
    pri = None
    if init != "none":
        if init == "kmeans":
            lab = KMeans(k, n_init=10, random_state=0).fit_predict(x)
        else:
            lab = AgglomerativeClustering(k).fit_predict(x)
        # arrange clusters on leaves: recursive split of centroids by 2-means into complete tree
        cent = np.stack([x[lab == c].mean(0) for c in range(k)])
        sizes = np.bincount(lab, minlength=k)
        leaf_of_cluster = {}
        def place(clusters, node_level, pos):
            if len(clusters) == 1:
                leaf = pos * 2 ** (T - node_level)
                leaf_of_cluster[clusters[0]] = leaf
                return
            cap = 2 ** (T - node_level - 1)
            if len(clusters) == 2:
                a, b = [clusters[0]], [clusters[1]]
            else:
                sub = KMeans(2, n_init=10, random_state=0).fit(cent[clusters], sample_weight=sizes[clusters]).labels_
                a = [c for c, s in zip(clusters, sub) if s == 0]; b = [c for c, s in zip(clusters, sub) if s == 1]
                while len(a) > cap:
                    b.append(a.pop()); 
                while len(b) > cap:
                    a.append(b.pop())
            place(a, node_level + 1, 2 * pos); place(b, node_level + 1, 2 * pos + 1)
        place(list(range(k)), 0, 0)
        mask = torch.zeros(2**T)
        for c, l in leaf_of_cluster.items():
            mask[l] = 1
        target_leaf = torch.tensor([leaf_of_cluster[c] for c in lab])
        n_prune = 0; schedule = []
        shares = torch.zeros(2**T)
        for c, l in leaf_of_cluster.items():
            shares[l] = sizes[c] / n
        pri = {T: shares}
        cur = shares
        for t in range(T - 1, 0, -1):
            cur = cur.reshape(-1, 2).sum(1); pri[t] = cur
        for it in range(init_steps):
            dec = torch.sigmoid(head(back(X)))
            P = level_probabilities(dec)[-1] * mask
            loss = nn.functional.nll_loss(torch.log(P.clamp_min(1e-9)), target_leaf)
            opt.zero_grad(); loss.backward(); opt.step()
    for it in range(steps):
        if it in schedule:
            with torch.no_grad():
                back.eval()
                P = level_probabilities(torch.sigmoid(head(back(X))))[-1] * mask
                back.train()
                mass = P.mean(0); mass[mask == 0] = float("inf")
                mask[int(mass.argmin())] = 0
        i = torch.randint(0, n, (min(n, bs),), generator=g)
        j = NN[i, torch.randint(0, knn, (len(i),), generator=g)]
        ea = torch.randn(len(i), d, generator=g); eb = torch.randn(len(i), d, generator=g)
        if Lc is not None:
            ea = ea @ Lc.T; eb = eb @ Lc.T
        xa = X[i] + noise * ea
        xb = X[j] + noise * eb
        dec = torch.sigmoid(head(back(torch.cat([xa, xb]))))
        da, db = dec[: len(i)], dec[len(i):]
        levels = level_probabilities(torch.cat([da, db]))
        L = wcohiloss(da, db, mask, neg_w, pri if prior == "init" else None) + bal_w * balance(levels, mask, leaves_under_levels(mask, T))
        opt.zero_grad(); L.backward(); opt.step()
    back.eval()
    with torch.no_grad():
        P = level_probabilities(torch.sigmoid(head(back(X))))[-1] * mask
    pred = P.argmax(1).numpy()
    if DEBUG: print("sizes", np.bincount(pred, minlength=2**T), "true", np.bincount(y))
    return clustering_accuracy(y, pred), nmi(y, pred)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="wine,breast_cancer,iris,digits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variant", default="x")
    ap.add_argument("--kw", default="{}")
    a = ap.parse_args()
    kw = json.loads(a.kw)
    for name in a.data.split(","):
        x, y, k = load(name)
        res = []
        for s in map(int, a.seeds.split(",")):
            t = time.time()
            acc, nm = run(x, y, k, s, a.variant, **kw)
            res.append((acc, nm))
            print(json.dumps({"data": name, "seed": s, "acc": round(acc, 3), "nmi": round(nm, 3), "s": round(time.time() - t, 1), **kw}), flush=True)
        r = np.array(res)
        print(f"## {name} {kw} worst acc {r[:,0].min():.3f} nmi {r[:,1].min():.3f} mean {r[:,0].mean():.3f}", flush=True)
