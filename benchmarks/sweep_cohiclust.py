"""Hyperparameter sweep: many small CoHiClust runs as parallel processes (made for one GPU).

    python benchmarks/sweep_cohiclust.py CONFIGS.json [N_PROCESSES]

Reads datasets from .sweepdata/{digits,mnist5k}.npz (arrays x: uint8 N×1×H×W, y: labels; write
them with load_dataset(...).images/.labels), runs each config of CONFIGS.json (a list of
{"name", "data", "params": CoHiClust parameters, optional "width": SmallCNN width, optional
"aug": digits-preset overrides}) and prints one JSON line per run (also to $OUT/sweep.jsonl).
The configurations of the H200 sweep in RESULTS.md are in results/sweep_digits_h200_configs.json.
"""
import json, os, sys, time
import multiprocessing as mp
import numpy as np

def run(cfg):
    try:
        return _run(cfg)
    except Exception as e:
        return {'name': cfg['name'], 'error': str(e)[:200]}

def _run(cfg):
    import torch
    torch.set_num_threads(1)
    from hiclust import CoHiClust
    from hiclust.data import ImageDataset
    from hiclust.data.augment import augmentation_preset
    from hiclust.nn import SmallCNN
    from hiclust.metrics import evaluate
    d = np.load(f".sweepdata/{cfg['data']}.npz")
    ds = ImageDataset(torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long(), [str(i) for i in range(10)], cfg["data"])
    params = dict(cfg["params"])
    size = params.get("image_size") or ds.images.shape[-1]
    if "width" in cfg:
        params["backbone"] = SmallCNN(1, size, cfg["width"])
    if "aug" in cfg:
        params["augmentation"] = augmentation_preset("digits", size, 1, **cfg["aug"])
    t = time.time()
    m = CoHiClust(n_clusters=10, depth=4, verbose=False, eval_every=25, **params).fit(ds)
    res = evaluate(ds.labels.numpy(), m.labels_, m.linkage_, m.labels_)
    hist = [(h["epoch"], round(h.get("acc", -1), 3)) for h in m.history_ if "acc" in h]
    return {"name": cfg["name"], **res, "sec": round(time.time() - t, 1), "hist": hist}

if __name__ == "__main__":
    cfgs = json.load(open(sys.argv[1]))
    out = os.path.join(os.environ.get("OUT", "."), "sweep.jsonl")
    ctx = mp.get_context("spawn")
    with ctx.Pool(int(sys.argv[2]) if len(sys.argv) > 2 else 14) as pool, open(out, "w") as f:
        for r in pool.imap_unordered(run, cfgs):
            line = json.dumps(r); print(line, flush=True); f.write(line + "\n"); f.flush()
