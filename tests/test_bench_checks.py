"""hiclust bench checks its rows before it writes anything, and says what its tables hold: --set
keys no row reads are refused, a bad value or an --epochs too small for a row fails before --out
exists, IDEC follows the shared autoencoder's --set dec.X, a mean that leaves a seed out says so,
a stopped bench leaves a table marked incomplete, and warnings name their row and seed.
Nothing here trains a deep model (rows are stubbed where a run is needed)."""

from __future__ import annotations

import csv
import io
import json
import warnings

import pytest

from hiclust import bench
from hiclust.cli import main


def refused(capsys, tmp_path, *argv: str) -> str:
    out = tmp_path / "b"
    assert main(["bench", "--dataset", "digits", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not out.exists()
    return err


@pytest.mark.parametrize("argv,says", [
    (["--methods", "kmeans", "--set", "kmeans.n_init=2"], "kmeans is a baseline without settable parameters"),
    (["--methods", "kmeans", "--set", "foo.depth=3"], "there is no method 'foo'"),
    (["--methods", "cc", "--set", "cohiclust.epochs=2"], "no row of this bench uses cohiclust (--methods cc)"),
    (["--methods", "cohiclust", "--set", "cohiclust.depth=abc"], "cohiclust: The 'depth' parameter"),
    (["--methods", "kmeans,cohiclust", "--epochs", "3"], "cohiclust: pruning 6 leaves"),
    (["--methods", "cc", "--set", "cc.epoch=2"], "cc: "),
    (["--table", "ablation", "--epochs", "7"], "--epochs 7 leaves the full CoHiClust row no pre-training"),
    (["--seed", "5", "--seeds", "1,2", "--methods", "kmeans"], "give --seed or --seeds, not both"),
])
def test_what_no_row_could_use_is_refused_before_anything_is_written(capsys, tmp_path, argv, says):
    err = refused(capsys, tmp_path, *argv)
    assert says in err
    if "cohiclust:" in says or "cc:" in says:
        assert "--set" in err and "--epochs N" in err  # said in bench terms


def test_the_smallest_ablation_that_keeps_pretraining_is_accepted():
    params = bench.ablation_params("digits", 10, epochs=8)
    assert params["cohiclust"]["pretrain_epochs"] == 1 and params["cohiclust_no_pretrain"]["pretrain_epochs"] == 0


def test_idec_follows_the_shared_autoencoders_set_dec_values():
    kw = dict(seed=0, device="cpu", verbose=False, epochs=None)
    overrides = {"dec": {"pretrain_epochs": 3, "lr": 0.5}}
    _, shared, _ = bench._row_params("idec", "digits", 10, overrides=overrides, **kw)
    assert shared["pretrain_epochs"] == 3  # a pre-training parameter: follows dec.X
    assert shared.get("lr") != 0.5  # not a pre-training parameter: DEC's own
    _, own, _ = bench._row_params("idec", "digits", 10, overrides={**overrides, "idec": {"pretrain_epochs": 4}}, **kw)
    assert own["pretrain_epochs"] == 4  # --set idec.X wins
    _, apart, _ = bench._row_params("idec", "digits", 10, overrides=overrides, share_autoencoder=False, **kw)
    assert apart["pretrain_epochs"] != 3  # --separate-autoencoders: dec.X is DEC's alone


def test_a_mean_that_leaves_a_seed_out_says_so():
    rows = [{"method": "idec_complete", "name": "IDEC", "seed": 0, "dp": 0.4, "nmi": 0.5, "acc": 0.6, "seconds": 1.0},
            {"method": "idec_complete", "name": "IDEC", "seed": 1, "dp": None, "nmi": 0.3, "acc": 0.2, "seconds": 1.0}]
    md = bench.format_hierarchical_markdown(rows, "digits")
    assert "| 0.400 (1 of 2 seeds) | 0.400 ± 0.141 |" in md
    assert "(1 of 2 seeds)" in bench.format_seeds_markdown(rows)
    line = next(csv.DictReader(io.StringIO(bench.format_seeds_csv(rows))))
    assert (line["dp_n"], line["nmi_n"], line["worst_seed"]) == ("1", "2", "1")


def stub_rows(monkeypatch, stop_at: int | None = None) -> None:
    calls = {"n": 0}

    def run_one(name, data, n_clusters, **kw):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        warnings.warn("2 of the 10 clusters hold no training item", UserWarning)
        return {"method": name, "name": name, "nmi": 0.5, "acc": 0.5, "ari": 0.5, "dp": None, "seconds": 0.1}

    monkeypatch.setattr(bench, "_run_one", run_one)


def test_a_stopped_bench_leaves_a_table_marked_incomplete(monkeypatch, tmp_path):
    stub_rows(monkeypatch, stop_at=2)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench.run_bench("digits", ["kmeans", "nmf"], tmp_path / "b")
    assert "**Incomplete: 1 of 2 runs finished**" in (tmp_path / "b" / "table.md").read_text()
    stub_rows(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench.run_bench("digits", ["kmeans", "nmf"], tmp_path / "c")
    assert "Incomplete" not in (tmp_path / "c" / "table.md").read_text()


def test_warnings_name_their_row_and_seed(monkeypatch, tmp_path):
    stub_rows(monkeypatch)
    with pytest.warns(UserWarning) as record:
        bench.run_bench("digits", ["kmeans"], tmp_path / "b", seeds=[3, 4])
    said = [str(w.message) for w in record if "clusters hold" in str(w.message)]
    assert said == ["kmeans (seed 3): 2 of the 10 clusters hold no training item",
                    "kmeans (seed 4): 2 of the 10 clusters hold no training item"]


def test_a_baselines_record_says_how_to_reproduce_it(tmp_path):
    bench.run_bench("digits", ["kmeans"], tmp_path / "b", seed=2)
    record = json.loads((tmp_path / "b" / "results.jsonl").read_text())
    assert record["params"] == {"n_clusters": 10, "random_state": 2}
