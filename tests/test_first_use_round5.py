"""The fifth round of first-use fixes: a resumed run is never shortened and keeps its creation
date, a flag given without its value says which value, draw_epochs longer than the tree phase is
refused, empty clusters are warned about in the Python API, `hiclust evaluate --labels` scores data
stored without labels, and `hiclust predict` reads a feature file laid out like the training file
with the run's own label and id columns. Tiny CoHiClust fits on a 60 x 4 feature matrix."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from hiclust import CoHiClust, EmptyClusterWarning, cli

FEAT = ["--n-clusters", "3", "--batch-size", "8", "--device", "cpu", "--seed", "0"]


def blobs(n: int = 60, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    return ((rng.normal(size=(3, d)) * 4)[y] + rng.normal(size=(n, d))).astype(np.float32), y


def force_one_leaf(monkeypatch) -> None:
    """Every training item in cluster 0 at the end of CoHiClust fits (the empty-cluster case)."""
    original = CoHiClust._finish_fit

    def one_leaf(self, data):
        original(self, data)
        self.labels_ = np.zeros_like(self.labels_)

    monkeypatch.setattr(CoHiClust, "_finish_fit", one_leaf)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A `hiclust train` run on a CSV with an id column and a label column."""
    root = tmp_path_factory.mktemp("round5")
    x, y = blobs()
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    df.insert(0, "name", [f"item{i:02d}" for i in range(len(df))])
    df["kind"] = [f"k{v}" for v in y]
    df.to_csv(root / "train.csv", index=False)
    out = root / "run"
    assert cli.main(["train", "--dataset", f"features:{root / 'train.csv'}", "--label-column", "kind",
                     "--id-column", "name", *FEAT, "--epochs", "12", "--out", str(out)]) == 0
    return root, out, df


def test_a_resumed_run_keeps_its_creation_date(csv_run, capsys):
    _, out, _ = csv_run
    record = json.loads((out / "run.json").read_text())
    record["created"] = "2001-01-01T00:00:00+0000"  # as if trained long ago
    (out / "run.json").write_text(json.dumps(record))
    assert cli.main(["train", "--resume", str(out)]) == 0
    after = json.loads((out / "run.json").read_text())
    assert after["created"] == "2001-01-01T00:00:00+0000"
    assert after["resumed"] > "2026"  # the resume is dated on its own
    capsys.readouterr()


def test_a_flag_without_its_value_names_the_value(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--resume"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "expected one argument; give it a value: --resume RUN_DIR" in err[0] and "did you mean" not in err[0]


def test_draw_epochs_longer_than_the_tree_phase_is_refused(tmp_path, capsys):
    x, _ = blobs()
    with pytest.raises(ValueError, match=r"draw_epochs=50 is longer than the tree phase \(10 epochs"):
        CoHiClust(n_clusters=3, epochs=12, pretrain_epochs=2, tree_draws=2, draw_epochs=50, batch_size=8).fit(x)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *FEAT, "--epochs", "12",
                     "--pretrain-epochs", "2", "--tree-draws", "2", "--draw-epochs", "50", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--draw-epochs 50 is longer than the tree phase" in err[0] and "raise --epochs" in err[0]
    assert not out.exists()


def test_empty_clusters_are_warned_about_in_the_api(monkeypatch):
    model = CoHiClust(n_clusters=4)
    model.labels_ = np.array([0, 0, 3, 3, 0])
    with pytest.warns(EmptyClusterWarning, match=r"2 of the 4 clusters hold no training item \(cluster 1, 2\)"):
        model._warn_if_clusters_empty()
    model.labels_ = np.array([0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model._warn_if_clusters_empty()  # every cluster used: silent

    # Through fit: a fit whose items all land in one leaf (forced here) warns once.
    force_one_leaf(monkeypatch)
    x, _ = blobs()
    with pytest.warns(EmptyClusterWarning, match="2 of the 3 clusters"):
        CoHiClust(n_clusters=3, epochs=8, batch_size=8, verbose=False).fit(x)


def test_the_command_line_leaves_empty_leaves_to_its_summary(tmp_path, monkeypatch, capsys):
    # The summary reports empty leaves in command-line terms (report.summary.leaf_warnings, from
    # the routed items); the API's warning (in parameter names) is silenced there.
    force_one_leaf(monkeypatch)
    x, _ = blobs()
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *FEAT, "--epochs", "8",
                     "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "items in 3 leaves" in text  # the summary was printed
    assert "no training item" not in text  # but not the API's warning


def test_evaluate_labels_scores_data_stored_without_labels(tmp_path, capsys):
    x, y = blobs()
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", X=x, y=y)
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *FEAT, "--epochs", "12",
                     "--out", str(run)]) == 0
    assert cli.main(["evaluate", str(run)]) == 0
    assert "metrics" not in json.loads((run / "evaluation.json").read_text())  # no labels: none
    # The reference: the same rows with their labels in an .npz (the run's data moved there).
    assert cli.main(["evaluate", str(run), "--dataset", f"features:{tmp_path / 'xy.npz'}"]) == 0
    reference = json.loads((run / "evaluation.json").read_text())["metrics"]
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "y.txt").write_text("".join(f"class {['a', 'b', 'c'][v]}\n" for v in y))
    for labels in ("y.npy", "y.txt"):
        assert cli.main(["evaluate", str(run), "--labels", str(tmp_path / labels)]) == 0
        got = json.loads((run / "evaluation.json").read_text())
        assert got["metrics"] == pytest.approx(reference), labels
    assert "class a" in capsys.readouterr().out  # the text file's names label the table
    before = (run / "evaluation.json").read_bytes()
    (tmp_path / "short.txt").write_text("a\nb\n")
    assert cli.main(["evaluate", str(run), "--labels", str(tmp_path / "short.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 2 labels but the run has 60 items" in err[0]
    assert (run / "evaluation.json").read_bytes() == before  # refused before anything was written


def test_predict_reads_the_runs_label_and_id_columns(csv_run, capsys):
    root, out, df = csv_run
    df.iloc[:10].to_csv(root / "new.csv", index=False)
    df.iloc[:10].drop(columns=["kind"]).to_csv(root / "new_unlabelled.csv", index=False)
    assert cli.main(["predict", str(out), "--input", str(root / "new.csv"), "--out", str(root / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert "--label-column kind and --id-column name read as the run was trained" in err
    p = pd.read_csv(root / "p.csv")
    assert p["input"].tolist() == df["name"].iloc[:10].tolist() and p["label"].tolist() == df["kind"].iloc[:10].tolist()
    assert cli.main(["predict", str(out), "--input", str(root / "new_unlabelled.csv"), "--out",
                     str(root / "p2.csv")]) == 0
    assert "--id-column name read as the run was trained" in capsys.readouterr().err
    p2 = pd.read_csv(root / "p2.csv")
    assert "label" not in p2.columns and p2["cluster"].tolist() == p["cluster"].tolist()


def test_a_csv_header_names_the_wide_column_in_the_scale_warning(tmp_path, capsys):
    x, _ = blobs()
    df = pd.DataFrame(x, columns=["height", "width", "depth", "weight_mg"])
    df["weight_mg"] = df["weight_mg"] * 1000.0  # one column in much larger units
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(UserWarning, match=r"feature column 'weight_mg' \(sd [0-9.e+-]+, [0-9,]+× the median\) spreads more than 100 times"):
        assert cli.main(["train", "--dataset", f"features:{tmp_path / 't.csv'}", *FEAT, "--epochs", "12",
                         "--tree-draws", "1", "--out", str(tmp_path / "run")]) == 0
    model = CoHiClust.load(tmp_path / "run" / "model.pt", device="cpu")
    assert list(model.feature_names_in_) == ["height", "width", "depth", "weight_mg"]


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    """`hiclust evaluate RUN | head -3`: the closed pipe ends the command quietly (exit 141, as a
    shell reports SIGPIPE), without an 'error:' line."""
    import subprocess
    import sys

    script = (
        "import sys, hiclust.cli as cli\n"
        "def chatty(args):\n"
        "    for i in range(200000):\n"
        "        print('line', i)\n"
        "    return 0\n"
        "cli._cmd_evaluate = chatty\n"
        "sys.exit(cli.main(['evaluate', 'some-run']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "error" not in err and "Traceback" not in err, err


def test_resuming_a_finished_run_with_the_estimators_own_epochs_says_so(tmp_path, capsys):
    x, _ = blobs()
    np.save(tmp_path / "x.npy", x)
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"features:{tmp_path / 'x.npy'}", "--n-clusters", "3", "--tree-draws", "1",
                     "--device", "cpu", "--out", str(run)]) == 0  # epochs left to the estimator: 100
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"{run} is already trained to epoch 100, so there is nothing left to train" in err
    assert "train: resuming" not in err


def test_hints_name_what_the_command_at_hand_takes(tmp_path, capsys):
    """A data folder given as the run: no advice to train into it. A feature matrix given to
    predict for an image run: no advice to use train's --dataset features:."""
    (tmp_path / "photos").mkdir()
    assert cli.main(["evaluate", str(tmp_path / "photos")]) == 2
    err = capsys.readouterr().err
    assert "is not a hiclust run directory" in err and "give the directory that 'hiclust train --out RUN_DIR' wrote" in err
    rng = np.random.default_rng(0)
    np.save(tmp_path / "imgs.npy", rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"npy:{tmp_path / 'imgs.npy'}", "--n-clusters", "2", "--epochs", "2",
                     "--batch-size", "8", "--device", "cpu", "--out", str(run)]) == 0
    np.save(tmp_path / "m.npy", rng.normal(size=(5, 3)))
    capsys.readouterr()
    assert cli.main(["predict", str(run), "--input", str(tmp_path / "m.npy"), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a 2-D feature matrix, but the run's model was fitted on images" in err[0]
    assert "--dataset" not in err[0] and not (tmp_path / "p.csv").exists()
    (tmp_path / "m.csv").write_text("1,2,3\n4,5,6\n")  # a header-less CSV: the loader would warn of it first
    assert cli.main(["predict", str(run), "--input", str(tmp_path / "m.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.csv is a feature file (.csv), but the run's model was fitted on images" in err[0]
    assert not (tmp_path / "p.csv").exists()


def test_predict_matches_a_feature_files_columns_by_name(csv_run, capsys):
    """(Round 6) The same rows with the header's columns in another order land where they did in
    the training order; a file with other columns is refused, naming them, before writing."""
    root, out, df = csv_run
    features = [c for c in df.columns if c not in ("kind", "name")]
    df.iloc[:10].to_csv(root / "same.csv", index=False)
    df.iloc[:10][["name", *features[::-1]]].to_csv(root / "reordered.csv", index=False)
    assert cli.main(["predict", str(out), "--input", str(root / "same.csv"), "--out", str(root / "a.csv")]) == 0
    capsys.readouterr()
    assert cli.main(["predict", str(out), "--input", str(root / "reordered.csv"), "--out", str(root / "b.csv")]) == 0
    assert "in another order; they are matched by name" in capsys.readouterr().err
    a, b = pd.read_csv(root / "a.csv"), pd.read_csv(root / "b.csv")
    assert b["cluster"].tolist() == a["cluster"].tolist()
    assert b["leaf_probability"].tolist() == pytest.approx(a["leaf_probability"].tolist())
    df.iloc[:10][["name", *features[:-1]]].assign(extra=1.0).to_csv(root / "other.csv", index=False)
    assert cli.main(["predict", str(out), "--input", str(root / "other.csv"), "--out", str(root / "c.csv")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"not in the training file: extra; missing: {features[-1]}" in errors[0]
    assert not (root / "c.csv").exists()
