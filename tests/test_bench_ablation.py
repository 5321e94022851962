"""``hiclust bench --table ablation``: the CoHiClust paper's ablation (CoHiLoss alone, + R1,
+ R1 + R2, without pre-training, SimCLR features + agglomerative) as one table over seeds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from hiclust import bench
from hiclust.methods import make_estimator
from hiclust.runs import load_config_file

# Parameters the ablation switches; every other parameter of a CoHiClust row is the preset's.
_SWITCHED = {"nt_xent_weight", "balance_weight", "pretrain_epochs"}


# ----------------------------------------------------------------------------------------------
# what each row trains with (no training)
# ----------------------------------------------------------------------------------------------
def test_ablation_rows_switch_off_exactly_the_paper_terms():
    preset = load_config_file("digits")["params"]
    rows = bench.ablation_params("digits", 10)
    assert list(rows) == list(bench.ABLATION_METHODS)
    alone, r1, full, no_pre = (rows[m] for m in ("cohiloss", "cohiloss_r1", "cohiclust", "cohiclust_no_pretrain"))
    assert (alone["nt_xent_weight"], alone["balance_weight"], alone["pretrain_epochs"]) == (0.0, 0.0, 0)
    assert (r1["nt_xent_weight"], r1["pretrain_epochs"]) == (0.0, 0) and "balance_weight" not in r1
    assert no_pre["pretrain_epochs"] == 0 and not ({"nt_xent_weight", "balance_weight"} & set(no_pre))
    # the full row ("+ R1 + R2") is the preset as is, pre-training included
    assert full["pretrain_epochs"] == preset["pretrain_epochs"] == 100
    assert {k: v for k, v in full.items() if k in preset} == preset
    for params in (alone, r1, no_pre):  # nothing else differs from the full row
        same = {k: v for k, v in params.items() if k not in _SWITCHED}
        assert same == {k: v for k, v in full.items() if k not in _SWITCHED}
    # the estimator resolves these to the intended loss weights and schedule
    for name, (nt, balance, pre) in {"cohiloss": (0.0, 0.0, 0), "cohiloss_r1": (0.0, None, 0),
                                     "cohiclust": (1.0, None, 100), "cohiclust_no_pretrain": (1.0, None, 0)}.items():
        est = make_estimator("cohiclust", rows[name])
        assert (est.nt_xent_weight, est.balance_weight) == (nt, balance), name
        assert est._schedule()[1] == pre and est.epochs == 200, name
    # SimCLR features + agglomerative: the SimCLR preset of the dataset (Ward on the features)
    simclr = load_config_file("simclr_digits")["params"]
    assert {k: v for k, v in rows["simclr_agglomerative"].items() if k in simclr and k != "n_clusters"} == \
        {k: v for k, v in simclr.items() if k != "n_clusters"}


def test_ablation_rows_with_epochs_and_overrides():
    rows = bench.ablation_params("digits", 10, epochs=8, overrides={
        "cohiclust": {"nt_xent_weight": 2.0, "pretrain_epochs": 3, "batch_size": 64},
        "cohiloss": {"lr": 0.01}, "simclr": {"batch_size": 32}})
    assert {m: rows[m]["epochs"] for m in rows} == {m: 8 for m in bench.ABLATION_METHODS}
    # --set cohiclust.X reaches every CoHiClust row, but not the terms a row switches off
    assert [rows[m]["batch_size"] for m in bench.ABLATION_VARIANTS] == [64, 64, 64]
    assert rows["cohiloss"]["nt_xent_weight"] == rows["cohiloss_r1"]["nt_xent_weight"] == 0.0
    assert rows["cohiclust_no_pretrain"]["nt_xent_weight"] == rows["cohiclust"]["nt_xent_weight"] == 2.0
    assert rows["cohiclust"]["pretrain_epochs"] == 3 and rows["cohiclust_no_pretrain"]["pretrain_epochs"] == 0
    # --set <row>.X reaches that row only
    assert rows["cohiloss"]["lr"] == 0.01 and rows["cohiloss_r1"]["lr"] == rows["cohiclust"]["lr"] == 0.003
    assert rows["simclr_agglomerative"]["batch_size"] == 32
    # bench --epochs alone: the full row keeps its pre-training share, the others none
    plain = bench.ablation_params("digits", 10, epochs=20)
    assert [plain[m]["pretrain_epochs"] for m in bench.ABLATION_VARIANTS] == [0, 0, 0]
    assert plain["cohiclust"]["pretrain_epochs"] == 10  # half, as the preset
    # CIFAR-10: the reference recipe; rows without pre-training keep its 1,500 epochs and prune start
    cifar = bench.ablation_params("cifar10", 10)
    assert cifar["cohiclust"]["pretrain_epochs"] == 1000
    assert all(cifar[m]["pretrain_epochs"] == 0 and cifar[m]["epochs"] == 1500 and cifar[m]["prune_start"] == 1050
               and cifar[m]["backbone"] == "resnet50" for m in bench.ABLATION_VARIANTS)


# ----------------------------------------------------------------------------------------------
# the table, on hand-made records
# ----------------------------------------------------------------------------------------------
def _records(dataset: str) -> list[dict]:
    values = {  # method: [(nmi, acc, ari, dp, seconds) for seeds 0, 1, 2]
        "cohiloss": [(0.50, 0.40, 0.30, 0.20, 10.0), (0.56, 0.52, 0.34, 0.26, 12.0), (0.53, 0.46, 0.32, 0.23, 11.0)],
        "cohiclust": [(0.80, 0.85, 0.70, 0.60, 20.0), (0.70, 0.75, 0.60, 0.50, 22.0), (0.90, 0.95, 0.80, 0.70, 24.0)],
        "simclr_agglomerative": [(0.30, 0.40, 0.20, None, 5.0), (0.32, 0.38, 0.22, None, 5.0),
                                 (0.31, 0.39, 0.21, None, 5.0)],
    }
    rows = []
    for seed in (0, 1, 2):
        for method, per_seed in values.items():
            nmi, acc, ari, dp, seconds = per_seed[seed]
            rows.append({"method": method, "name": bench.ABLATION_NAMES[method], "dataset": dataset, "seed": seed,
                         "nmi": nmi, "acc": acc, "ari": ari, "dp": dp, "seconds": seconds})
    return rows


def _md_rows(md: str) -> dict[str, list[str]]:
    out = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| Variant") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0]] = cells[1:]
    return out


def test_ablation_markdown_means_worst_seed_and_published_numbers():
    rows = _records("cifar10")
    md = bench.format_ablation_markdown(rows, "cifar10", title="**cifar10**")
    assert md.startswith("**cifar10**\n\n")
    assert ("| Variant | NMI | ACC | ARI | DP | Time (s) | Worst seed (NMI / ACC / ARI) | NMI (paper) | ACC (paper) "
            "| ARI (paper) |") in md
    cells = _md_rows(md)
    assert list(cells) == ["CoHiLoss alone", "CoHiLoss + R1 + R2 (CoHiClust)", "SimCLR features + agglomerative"]
    for method in ("cohiloss", "cohiclust"):
        mine = [r for r in rows if r["method"] == method]
        for col, key, digits in ((0, "nmi", 3), (1, "acc", 3), (2, "ari", 3), (3, "dp", 3), (4, "seconds", 1)):
            v = np.array([r[key] for r in mine])
            assert cells[bench.ABLATION_NAMES[method]][col] == f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
    assert cells["CoHiLoss + R1 + R2 (CoHiClust)"][:5] == ["0.800 ± 0.100", "0.850 ± 0.100", "0.700 ± 0.100",
                                                           "0.600 ± 0.100", "22.0 ± 2.0"]
    # worst seed = lowest ACC (seed 0 for CoHiLoss, seed 1 for the others)
    assert cells["CoHiLoss alone"][5] == "seed 0: 0.500 / 0.400 / 0.300"
    assert cells["CoHiLoss + R1 + R2 (CoHiClust)"][5] == "seed 1: 0.700 / 0.750 / 0.600"
    assert cells["SimCLR features + agglomerative"][5] == "seed 1: 0.320 / 0.380 / 0.220"
    assert cells["SimCLR features + agglomerative"][3] == "–"  # no tree given: no DP
    # published CIFAR-10 numbers, as quoted in the paper
    assert cells["CoHiLoss alone"][6:] == ["0.567", "0.569", "0.457"]
    assert cells["CoHiLoss + R1 + R2 (CoHiClust)"][6:] == ["0.767", "0.84", "0.72"]
    assert cells["SimCLR features + agglomerative"][6:] == ["0.265", "0.363", "0.147"]
    assert bench.published_ablation("CIFAR-10")["cohiclust_no_pretrain"] == ("0.59", "0.657", "0.50")
    assert bench.published_ablation("cifar10")["cohiloss_r1"] == ("0.629", "0.726", "0.549")
    # another dataset: no published numbers; one seed: the value alone
    other = _md_rows(bench.format_ablation_markdown([r for r in _records("digits") if r["seed"] == 2], "digits"))
    assert other["CoHiLoss alone"] == ["0.530", "0.460", "0.320", "0.230", "11.0", "seed 2: 0.530 / 0.460 / 0.320",
                                       "–", "–", "–"]


def test_ablation_csv_columns():
    rows = _records("cifar10")
    table = {r["method"]: r for r in csv.DictReader(bench.format_ablation_csv(rows, "cifar10").splitlines())}
    assert list(table) == ["cohiloss", "cohiclust", "simclr_agglomerative"]
    c = table["cohiclust"]
    assert c["name"] == "CoHiLoss + R1 + R2 (CoHiClust)" and c["n_seeds"] == "3" and c["seeds"] == "0 1 2"
    assert float(c["acc_mean"]) == pytest.approx(0.85) and float(c["acc_std"]) == pytest.approx(0.1)
    assert float(c["seconds_mean"]) == pytest.approx(22.0)
    assert (c["worst_seed"], c["worst_nmi"], c["worst_acc"], c["worst_ari"]) == ("1", "0.7", "0.75", "0.6")
    assert (c["paper_nmi"], c["paper_acc"], c["paper_ari"]) == ("0.767", "0.84", "0.72")
    assert table["simclr_agglomerative"]["dp_mean"] == "" and table["simclr_agglomerative"]["dp_std"] == ""
    plain = list(csv.DictReader(bench.format_ablation_csv(_records("mnist"), "mnist").splitlines()))
    assert all(r["paper_nmi"] == r["paper_acc"] == r["paper_ari"] == "" for r in plain)


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------
def test_methods_is_refused_with_the_ablation_table(tmp_path, capsys):
    from hiclust.cli import main

    out = tmp_path / "abl"
    assert main(["bench", "--table", "ablation", "--dataset", "digits", "--methods", "kmeans", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--methods does not apply to --table ablation" in err
    assert not out.exists()  # refused before anything is written


@pytest.fixture
def digits_subset(monkeypatch):
    """``load_dataset`` answers every 9th digits image (200), so the bench finishes in seconds;
    torch's thread count is restored after the bench's --threads."""
    import hiclust.data

    data = hiclust.data.load_dataset("digits", split="all").subset(np.arange(0, 1797, 9))
    monkeypatch.setattr(hiclust.data, "load_dataset", lambda *args, **kwargs: data)
    threads = torch.get_num_threads()
    yield data
    torch.set_num_threads(threads)


def test_bench_cli_ablation_end_to_end(tmp_path, capsys, digits_subset):
    from hiclust.cli import main

    out = tmp_path / "ablation"
    rc = main(["bench", "--table", "ablation", "--dataset", "digits", "--epochs", "8", "--seeds", "0",
               "--threads", "1", "--device", "cpu", "--out", str(out),
               "--set", "cohiclust.batch_size=100", "--set", "simclr.batch_size=100"])
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == list(bench.ABLATION_METHODS)
    by = {r["method"]: r for r in rows}
    for r in rows:
        assert r["seed"] == 0 and r["n_samples"] == 200 and r["seconds"] > 0 and 0 <= r["acc"] <= 1
        assert r["name"] == bench.ABLATION_NAMES[r["method"]] and 0 < r["dp"] <= 1
    for m in bench.ABLATION_VARIANTS:  # what each CoHiClust row trained with
        assert by[m]["params"]["pretrain_epochs"] == 0 and by[m]["params"]["epochs"] == 8
    assert by["cohiclust"]["params"]["pretrain_epochs"] == 1  # 8 epochs: its share, leaving room for 6 prunings
    assert by["cohiloss"]["params"]["balance_weight"] == 0.0 and by["cohiloss_r1"]["params"]["nt_xent_weight"] == 0.0
    assert by["simclr_agglomerative"]["preset"] == "simclr_digits"

    md = (out / "table.md").read_text()
    assert "N = 200 images" in md.splitlines()[0] and "seed 0" in md.splitlines()[0]
    cells = _md_rows(md)
    assert list(cells) == [bench.ABLATION_NAMES[m] for m in bench.ABLATION_METHODS]
    for method, row in zip(bench.ABLATION_METHODS, cells.values()):
        assert row[0] == f"{by[method]['nmi']:.3f}" and row[5].startswith("seed 0: ")
        assert row[6:] == ["–", "–", "–"]  # no published numbers for digits
    assert "8 epochs each (the first 1 of NT-Xent alone in the full row" in md
    table = list(csv.DictReader((out / "table.csv").open()))
    assert [r["method"] for r in table] == list(bench.ABLATION_METHODS)
    assert float(table[2]["acc_mean"]) == pytest.approx(by["cohiclust"]["acc"], rel=1e-5)
