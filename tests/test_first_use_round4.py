"""What a new user met in a fresh clone (the fourth first-use run): the demo never replaces a
training run, Ctrl-C while the command line is still being built is one line, a resume is judged
by the schedule its run started with, a finished run says so, predict names a missing run before
its --out, a folder given as a dataset name is pointed at folder:, row numbers say they count from
0, a DataFrame is a feature matrix, and rows scaled otherwise than the training matrix are
warned about. Tiny CoHiClust fits on a 60 x 4 feature matrix."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hiclust import CoHiClust, cli
from hiclust.runs import RunConfig, made_by, prepare_run_dir

FEAT = ["--n-clusters", "3", "--batch-size", "8", "--device", "cpu", "--seed", "0"]


def blobs(n: int = 60, d: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(3, d)) * 4)[np.arange(n) % 3] + rng.normal(size=(n, d))


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished 6-epoch `hiclust train` run on the blobs (pre-training 2 epochs, 5 prunings
    from a depth-3 tree at epochs 3..)."""
    root = tmp_path_factory.mktemp("round4")
    np.save(root / "x.npy", blobs())
    out = root / "run"
    argv = ["train", "--dataset", f"features:{root / 'x.npy'}", *FEAT, "--depth", "3", "--epochs", "9",
            "--pretrain-epochs", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    return root, out


def test_demo_refuses_to_replace_a_training_run(trained_run, capsys):
    root, out = trained_run
    before = snapshot(out)
    assert made_by(out) == "train"
    assert cli.main(["demo", "--out", str(out), "--epochs", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run that the demo did not write" in err[0] and "choose another --out" in err[0]
    assert snapshot(out) == before


def test_a_run_records_the_command_that_wrote_it(tmp_path):
    config = RunConfig(method="cohiclust", dataset="digits", params={})
    prepare_run_dir(tmp_path / "a", config, command="demo")
    prepare_run_dir(tmp_path / "b", config)
    assert made_by(tmp_path / "a") == "demo" and made_by(tmp_path / "b") == "train"
    assert made_by(tmp_path / "none") is None
    # a run.json from before the command was recorded counts as a training run (never replaced by the demo)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps({"method": "cohiclust", "dataset": "digits"}))
    assert made_by(tmp_path / "old") == "train"


def test_ctrl_c_while_the_parser_is_built_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["train", "--help"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hiclust: interrupted before the command started; nothing was written"]


def test_resume_with_too_few_epochs_names_the_schedule_the_run_started_with(trained_run, tmp_path, capsys):
    import shutil

    from hiclust.checkpoint import load_checkpoint, save_checkpoint

    _, out = trained_run
    # The same run as if stopped after epoch 4 (only the checkpoint's progress differs).
    stopped = tmp_path / "stopped"
    shutil.copytree(out, stopped)
    config, state = load_checkpoint(stopped / "checkpoint.pt", expected_class="CoHiClust")
    state["progress"] = {**state["progress"], "epoch": 4}
    save_checkpoint(stopped / "checkpoint.pt", model_class="CoHiClust", config=config, state=state)
    before = snapshot(stopped)
    assert cli.main(["train", "--resume", str(stopped), "--epochs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    # pre-training 2 epochs, pruning 5 leaves one per epoch from its own prune start: not the
    # default a fresh 5-epoch run would get
    assert "started with 2 pre-training epochs" in err[0] and "--epochs" in err[0] and "default" not in err[0]
    assert snapshot(stopped) == before


def test_resume_with_fewer_epochs_than_done_says_a_run_is_not_shortened(trained_run, capsys):
    _, out = trained_run
    before = snapshot(out)
    assert cli.main(["train", "--resume", str(out), "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{out} is already trained to epoch 9, past --epochs 3: a run resumes from where it is" in err[0], err
    assert "pass --epochs N with N > 9" in err[0]
    assert snapshot(out) == before


def test_resuming_a_finished_run_says_there_is_nothing_left(trained_run, capsys):
    _, out = trained_run
    assert cli.main(["train", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{out} is already trained to epoch 9, so there is nothing left to train" in err
    assert "pass --epochs N with N > 9" in err and "resuming" not in err


def test_predict_names_a_missing_run_before_an_existing_out(tmp_path, capsys):
    np.save(tmp_path / "x.npy", blobs())
    (tmp_path / "predictions.csv").write_text("kept\n")
    code = cli.main(["predict", str(tmp_path / "nope"), "--input", str(tmp_path / "x.npy"),
                     "--out", str(tmp_path / "predictions.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not a hiclust run directory" in err and "already exists" not in err
    assert (tmp_path / "predictions.csv").read_text() == "kept\n"


def test_a_folder_given_as_a_dataset_name_is_pointed_at_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "imgs").mkdir()
    np.save(tmp_path / "m.npy", blobs())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--dataset", "imgs", "--out", "run"]) == 2
    assert "write folder:imgs" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "m.npy", "--out", "run"]) == 2
    assert "write features:m.npy" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_dataframe_is_a_feature_matrix_and_predicts_as_its_array(tmp_path):
    x = blobs()
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    model = CoHiClust(n_clusters=3, epochs=4, batch_size=16, verbose=False).fit(df)
    same = CoHiClust(n_clusters=3, epochs=4, batch_size=16, verbose=False).fit(x.astype(np.float32))
    assert np.array_equal(model.labels_, same.labels_)
    assert np.array_equal(model.predict(df), same.predict(x.astype(np.float32)))
    with pytest.raises(TypeError, match="DataFrame must hold numbers only"):
        same.predict(df.assign(name="a"))  # a model fitted without column names
    with pytest.raises(ValueError, match=r"not those fit saw \(not seen by fit: name\); .*X\[model\.feature_names_in_\]"):
        model.predict(df.assign(name="a"))  # the training table's id column left in: named
    with pytest.raises(ValueError, match=r"not those fit saw \(missing: f3\)"):
        model.predict(df.drop(columns="f3"))
    # scikit-learn's convention: the columns fit saw, and predict refuses them in another order
    assert list(model.feature_names_in_) == ["f0", "f1", "f2", "f3"] and not hasattr(same, "feature_names_in_")
    assert model.n_features_in_ == 4 == same.n_features_in_ and not hasattr(CoHiClust(), "n_features_in_")
    with pytest.raises(ValueError, match=r"X's columns are not those fit saw \(the same columns in another order\)"):
        model.predict(df[df.columns[::-1]])
    assert np.array_equal(model.predict(df[list(model.feature_names_in_)]), model.labels_)
    model.save(tmp_path / "m.pt")  # the names travel with the saved model
    assert list(CoHiClust.load(tmp_path / "m.pt", device="cpu").feature_names_in_) == ["f0", "f1", "f2", "f3"]


def test_the_scale_warning_names_a_dataframe_column():
    x = blobs()
    df = pd.DataFrame(x * np.array([1.0, 1.0, 1.0, 1000.0]), columns=["a", "b", "c", "proline"])
    with pytest.warns(UserWarning, match=r"feature column 'proline' \(sd [0-9.e+-]+, [0-9,]+× the median\) spreads"):
        CoHiClust(n_clusters=3, epochs=4, batch_size=16, verbose=False).fit(df)


def test_predict_warns_about_rows_scaled_otherwise_than_the_training_matrix():
    """scikit-learn's wine: raw rows to a model fitted on standardized ones (the new user's case:
    every row in one cluster, silently), and standardized rows to a model fitted on raw ones."""
    from sklearn.datasets import load_wine

    rng = np.random.default_rng(1)
    raw = load_wine().data.astype(np.float32)
    standardized = ((raw - raw.mean(0)) / raw.std(0)).astype(np.float32)
    on_standardized = CoHiClust(n_clusters=3, epochs=4, verbose=False).fit(standardized)
    with pytest.warns(UserWarning):  # the spread of raw wine's columns is warned about at fit
        on_raw = CoHiClust(n_clusters=3, epochs=4, verbose=False).fit(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rows like the training ones, even a single one: no warning
        on_standardized.predict(standardized[rng.permutation(178)[:20]])
        on_standardized.predict(standardized[:1])
        on_raw.predict(raw[:30])
    with pytest.warns(UserWarning, match="far from the training matrix"):
        on_standardized.predict(raw)
    with pytest.warns(UserWarning, match="far from the training matrix"):
        on_raw.predict(standardized)
