"""The user with an unlabeled collection (issue 10): feature files from the command line, the
answer at the end of every run (assignments.csv, the summary, label-free evaluation), defaults
that fit the data, runs that move, and the bad inputs of "reliability round 2" (one table).

Every run here is a tiny CoHiClust on a 60 x 4 feature matrix (MLP backbone, a few epochs)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hiclust import cli
from hiclust.data import FeatureDataset, load_dataset
from hiclust.runs import RunConfig, RunDirError

TINY = ["--n-clusters", "3", "--epochs", "3", "--batch-size", "8", "--device", "cpu", "--seed", "0"]


def blobs(n: int = 60, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float64 points around 3 centres, and their centre ids."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = rng.normal(size=(3, d)) * 4
    return centres[y] + rng.normal(size=(n, d)), y


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The same matrix as .npy (float16), .npz (with text labels) and .csv (ids and labels)."""
    d = tmp_path_factory.mktemp("files")
    x, y = blobs()
    names = np.array(["ant", "bee", "cat"])[y]
    np.save(d / "x16.npy", x.astype(np.float16))
    np.save(d / "x.npy", x)
    np.savez(d / "x.npz", X=x, y=names)
    ids = [f"=cmd{i}" if i == 0 else f"item{i:02d}" for i in range(len(x))]  # a formula-like id
    lines = ["id,f0,f1,f2,f3,kind"] + [f"{ids[i]},{','.join(map(str, x[i]))},{names[i]}" for i in range(len(x))]
    (d / "x.csv").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def feature_run(files, tmp_path_factory) -> Path:
    """A finished feature run (CSV with labels and ids)."""
    out = tmp_path_factory.mktemp("runs") / "feat"
    assert cli.main(["train", "--dataset", f"features:{files / 'x.csv'}", "--label-column", "kind", "--id-column",
                     "id", *TINY, "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------ 1. feature files
def test_feature_files_load_alike_and_keep_labels_and_ids(files):
    a = load_dataset(f"features:{files / 'x16.npy'}", split="all")
    b = load_dataset(f"features:{files / 'x.npz'}")
    c = load_dataset(f"features:{files / 'x.csv'}", label_column="kind", id_column="id")
    assert isinstance(a, FeatureDataset) and a.features.dtype == torch.float32 and a.features.shape == (60, 4)
    assert a.labels is None and a.ids()[:2] == ["0", "1"]
    np.testing.assert_allclose(a.features.numpy(), np.load(files / "x.npy").astype(np.float16), rtol=0, atol=0)
    np.testing.assert_array_equal(b.features.numpy(), c.features.numpy())
    assert b.class_names == c.class_names == ["ant", "bee", "cat"]
    assert b.labels.tolist() == c.labels.tolist() == (np.arange(60) % 3).tolist()
    assert c.item_ids[1] == "item01"


def test_feature_run_writes_the_answer_and_every_command_reads_it(feature_run, files, tmp_path, capsys):
    rows = read_csv(feature_run / "assignments.csv")
    assert [r["item"] for r in rows[:2]] == ["'=cmd0", "item01"]  # formula-like cells escaped
    assert {r["label"] for r in rows} == {"ant", "bee", "cat"}
    assert all(r["path"].replace(" ", "") in ("LL", "LR", "RL", "RR", "L", "R") for r in rows)
    p = np.array([float(r["leaf_probability"]) for r in rows])
    assert ((p > 0) & (p <= 1)).all()
    # evaluate: label metrics and the label-free numbers
    assert cli.main(["evaluate", str(feature_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Label-free" in out and "silhouette" in out and "NMI=" in out
    ev = json.loads((feature_run / "evaluation.json").read_text())
    assert sum(ev["label_free"]["sizes"]) == 60 and 0 <= ev["label_free"]["balance"] <= 1
    # predict on a feature file: the same leaves as training
    pred = tmp_path / "p.csv"
    assert cli.main(["predict", str(feature_run), "--input", str(files / "x.csv"), "--label-column", "kind",
                     "--id-column", "id", "--out", str(pred), "--device", "cpu"]) == 0
    prow = read_csv(pred)
    assert [r["cluster"] for r in prow] == [r["leaf"] for r in rows] and prow[0]["input"] == "'=cmd0"
    # the report lists item ids per node instead of images
    html = tmp_path / "r.html"
    assert cli.main(["report", str(feature_run), "--out", str(html), "--device", "cpu", "--no-figures",
                     "--max-images-per-node", "60"]) == 0
    text = html.read_text()
    assert '"kind":"features"' in text and all(f'"item{i:02d}"' in text for i in range(1, 60))
    payload = json.loads(text.split('id="report-data">')[1].split("</script>")[0])
    assert "item59" in payload["images"] and "<image href" not in text  # ids, no pictures
    # and it speaks of items and features, not images
    assert "Click a node to see its items" in text and " images</title>" not in text
    assert re.search(r"60 items of \d+ features", text)


def test_unlabeled_run_summary_and_label_free_evaluation(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"features:{files / 'x16.npy'}", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "60 items in 3 leaves" in printed and "(root)  60" in printed and "assignments.csv" in printed
    assert not (out / "metrics.json").exists()
    result = cli.evaluate_run(out, device="cpu")
    assert "metrics" not in result and result["label_free"]["silhouette_items"] in (0, 60)
    assert [lv["n_groups"] for lv in result["label_free"]["levels"]][-1] == 3
    # 60 rows are split directly (input-space mode): the silhouette is on the whitened rows, a
    # fixed map, and the text does not call them a learned representation
    assert result["label_free"]["representation"] == "whitened rows"
    from hiclust.report.summary import format_label_free

    text = format_label_free(dict(result["label_free"], silhouette=0.5, silhouette_items=60))
    assert "silhouette of the leaves on the whitened rows (cosine, 60 items)" in text


def test_summary_warns_of_empty_tiny_and_dominant_leaves():
    from hiclust.hierarchy import Hierarchy
    from hiclust.report.summary import format_summary, leaf_warnings

    assert leaf_warnings(np.array([20, 20, 20])) == []
    w = leaf_warnings(np.array([597, 3, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert [s.split(":")[0] for s in w] == ["empty leaves", "tiny leaf", "dominant leaf"]
    assert "--epochs" in w[0] and "--balance-weight" in w[0] and "597 of 600" in w[2]
    assert "1 (3) holds" in w[1] and "hiclust report" in w[1] and "--n-clusters" in w[1]  # where to look, what to try

    class M:
        hierarchy_ = Hierarchy.from_complete_tree(2)

    table = {"leaf": np.array([0] * 9 + [1]), "leaf_probability": np.full(10, 0.5), "path": None}
    text = format_summary(M(), table)
    assert "leaf 3  0  0.0%  (empty)" in text and "warning: dominant leaf: leaf 0 holds 9 of 10" in text
    assert "passed nodes of one child" not in text  # a complete tree skips no level

    class Pruned:
        hierarchy_ = Hierarchy.from_complete_tree(2, [1])  # leaf LR pruned: LL moves up under the root

    text = format_summary(Pruned(), {"leaf": np.array([0, 1, 2]), "leaf_probability": None, "path": None})
    assert "passed nodes of one child, left out" in text and "├─ L L  leaf 0" in text


# ------------------------------------------------------------------ 3. defaults that fit the data
def test_defaults_fit_small_data_and_leave_given_values_alone():
    from hiclust.methods import CoHiClust
    from hiclust.runs import load_config_file

    params, notes = cli.derive_defaults(RunConfig("cohiclust", "folder:x", params={"n_clusters": 3}), 178)
    assert params["batch_size"] <= 178 // 4 and "--batch-size 32" in notes
    CoHiClust(**params)._schedule()  # a schedule that fits
    # a small feature matrix in input-space mode keeps the estimator's own defaults
    assert cli.derive_defaults(RunConfig("cohiclust", "features:x.npy", params={"n_clusters": 3}), 178,
                               input_space=True) == ({"n_clusters": 3}, [])
    # a larger one (MLP mode): CoHiClust resolves its own epochs (about 600 steps); batch as usual
    assert cli.derive_defaults(RunConfig("cohiclust", "features:x.npy", params={"n_clusters": 10}), 70_000,
                               feature_matrix=True) == ({"n_clusters": 10}, [])
    # K = 10 (depth 4: 6 prunings) with --epochs 6: pre-training shortened so that they fit
    params, _ = cli.derive_defaults(RunConfig("cohiclust", "digits", params={"n_clusters": 10, "epochs": 6}), 1797)
    assert params["pretrain_epochs"] == 0 and CoHiClust(**params)._schedule() == (4, 0, 0)
    # any N >= 2K trains: K = 600 needs a depth-10 tree with 424 prunings
    params, _ = cli.derive_defaults(RunConfig("cohiclust", "x", params={"n_clusters": 600}), 1200)
    CoHiClust(**params)._schedule()
    # K left out: not derived, but the note says which K the run assumes
    assert cli.derive_defaults(RunConfig("cohiclust", "features:x.npy", params={}), 178, input_space=True) == (
        {}, ["--n-clusters 10 (not given: set it to the number of groups you expect)"])
    # presets: every value given, nothing derived
    preset = load_config_file("digits")
    params, notes = cli.derive_defaults(RunConfig("cohiclust", "digits", params=dict(preset["params"])), 1797)
    assert params == preset["params"] and notes == []


# ------------------------------------------------------------------ 4. runs that move
def test_run_with_its_data_inside_moves_and_resume_checks_the_data(files, tmp_path, monkeypatch, capsys):
    run = tmp_path / "a" / "run"
    run.mkdir(parents=True)
    shutil.copy(files / "x.npz", run / "data.npz")
    monkeypatch.chdir(tmp_path / "a")
    assert cli.main(["train", "--dataset", "features:run/data.npz", *TINY, "--out", "run"]) == 0
    stored = json.loads((run / "run.json").read_text())
    assert stored["dataset"] == "features:data.npz" and stored["data"]["n"] == 60  # relative to the run
    moved = tmp_path / "b" / "moved"
    shutil.move(str(run), moved)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", str(moved), "--device", "cpu"]) == 0
    capsys.readouterr()
    # other data at the same place: resume is refused before anything changes
    np.savez(moved / "data.npz", X=blobs(seed=1)[0])
    before = snapshot(moved)
    monkeypatch.setenv("HICLUST_DEBUG", "1")
    with pytest.raises(RunDirError, match=r"not what this run was trained on \(the same count and shape but other"):
        cli.main(["train", "--resume", str(moved), "--epochs", "4"])
    with pytest.raises(RunDirError, match=r"59 items instead of the run's 60"):
        np.save(tmp_path / "fewer.npy", blobs()[0][:59])
        cli.main(["evaluate", str(moved), "--dataset", f"features:{tmp_path / 'fewer.npy'}"])
    assert snapshot(moved) == before
    # pointed at the right data elsewhere, resume goes on
    monkeypatch.delenv("HICLUST_DEBUG")
    assert cli.main(["train", "--resume", str(moved), "--epochs", "4", "--dataset", f"features:{files / 'x.npz'}"]) == 0
    assert json.loads((moved / "run.json").read_text())["dataset"] == f"features:{files / 'x.npz'}"


# ------------------------------------------------------------------ round 2: bad input, one table
def _bad_inputs(d: Path, tmp: Path) -> None:
    x, _ = blobs()
    np.save(d / "empty_cols.npy", np.zeros((10, 0), np.float32))
    x_nan = x.copy()
    x_nan[4, 1] = np.nan
    np.save(d / "nan.npy", x_nan)
    np.save(d / "matrix.npy", x)
    np.save(d / "imgs.npy", np.zeros((20, 8, 8), np.uint8))
    np.save(d / "bools.npy", x > 0)
    (d / "text.csv").write_text("a,b,name\n1,2,x\n3,4,y\n")
    (d / "x.txt").write_text("1 2 3\n")
    np.savez(d / "noX.npz", Z=x)
    (d / "bad.yaml").write_text("method: cohiclust\nparams: [1, 2\n")
    (d / "t0.yaml").write_text("method: cohiclust\nparams:\n  temperature: 0\n")
    (d / "typo.yaml").write_text("method: cohiclust\ndatset: digits\n")
    (d / "tag.yaml").write_text(f"method: !!python/object/apply:os.system ['touch {d}/pwned']\n")
    (d / "plist.yaml").write_text("method: cohiclust\ndataset: digits\nparams: [1, 2]\n")
    (d / "run_badjson").mkdir()
    (d / "run_badjson" / "run.json").write_text("{not json")
    (d / "run_types").mkdir()
    (d / "run_types" / "run.json").write_text(json.dumps({"method": "cohiclust", "dataset": 3, "params": {}}))
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "model.pt").write_text("the user's own file")
    locked = tmp / "locked_run"
    locked.mkdir()
    (locked / "run.json").write_text(json.dumps({"method": "cohiclust", "dataset": "digits", "params": {}}))
    (locked / ".hiclust.lock").write_text(str(os.getpid()))  # a live process holds it
    ok = tmp / "ok_run"
    ok.mkdir()
    (ok / "run.json").write_text(json.dumps({"method": "cohiclust", "dataset": "digits", "params": {"n_clusters": 3}}))


FEAT = ["--device", "cpu", "--epochs", "3", "--batch-size", "16", "--n-clusters", "3"]
# (id, argv with {in}/{tmp}, error type, regex of the message)
ROUND2 = [
    ("npy-matrix-points-to-features", ["train", "--dataset", "npy:{in}/matrix.npy", *FEAT], ValueError,
     r"not images; to cluster its rows as feature vectors use --dataset features:"),
    ("features-no-columns", ["train", "--dataset", "features:{in}/empty_cols.npy", *FEAT], ValueError, r"no columns"),
    ("features-nan", ["train", "--dataset", "features:{in}/nan.npy", *FEAT], ValueError, r"NaN or infinite .* in row 4 \(0-based\);"),
    ("features-bool", ["train", "--dataset", "features:{in}/bools.npy", *FEAT], ValueError, r"unsupported dtype bool"),
    ("features-suffix", ["train", "--dataset", "features:{in}/x.txt", *FEAT], ValueError,
     r"must end in \.npy, \.npz, \.csv, \.parquet"),
    ("features-missing", ["train", "--dataset", "features:{in}/nope.npy", *FEAT], FileNotFoundError, r"no such file"),
    ("csv-text-column", ["train", "--dataset", "features:{in}/text.csv", *FEAT], ValueError,
     r"column\(s\) name are not numeric; name the labels with label_column=NAME"),
    ("csv-unknown-label-column", ["train", "--dataset", "features:{in}/text.csv", "--label-column", "kind", *FEAT],
     ValueError, r"--label-column 'kind': text.csv has no such column; its columns: a, b, name"),
    ("npz-without-X", ["train", "--dataset", "features:{in}/noX.npz", *FEAT], ValueError, r"save the matrix as 'X'"),
    ("label-column-on-images", ["train", "--dataset", "digits", "--label-column", "y", *FEAT], ValueError,
     r"--label-column and --id-column apply to features:PATH"),
    ("image-size-on-features", ["train", "--dataset", "features:{in}/matrix.npy", "--image-size", "8", *FEAT],
     ValueError, r"feature vectors, not images; leave out --image-size"),
    ("batch-above-data-flag-name", ["train", "--dataset", "npy:{in}/imgs.npy", *FEAT, "--batch-size", "21"],
     ValueError, r"--batch-size 21 is larger than the dataset \(20 samples\); use --batch-size <= 20"),
    ("epochs-too-few-to-prune", ["train", "--dataset", "npy:{in}/imgs.npy", *FEAT, "--n-clusters", "10",
                                 "--epochs", "4"], ValueError,
     r"pruning 6 leaves one per epoch .* needs --pretrain-epochs \(0\) <= --prune-start .* <= --epochs \(4\); "
     r"raise --epochs \(to at least 6 with these settings\)"),  # 6 trains: pre-training is then shortened to 0
    ("demo-epochs-too-few", ["demo", "--epochs", "4", "--out", "{tmp}/out"], ValueError,
     r"--epochs must be at least 6 for the demo"),
    ("run-json-invalid", ["evaluate", "{in}/run_badjson"], RunDirError, r"run\.json is not valid JSON"),
    ("run-json-wrong-type", ["evaluate", "{in}/run_types"], RunDirError, r"'dataset' must be str, got int"),
    ("resume-with-config", ["train", "--resume", "{tmp}/ok_run", "--config", "digits"], ValueError,
     r"--config cannot change the run being resumed"),
    ("resume-with-other-out", ["train", "--resume", "{tmp}/ok_run", "--out", "{tmp}/elsewhere"], ValueError,
     r"--out cannot change the run being resumed"),
    ("resume-with-other-split", ["train", "--resume", "{tmp}/ok_run", "--split", "test"], ValueError,
     r"--split cannot change the run being resumed"),
    ("predict-before-training", ["predict", "{tmp}/ok_run", "--input", "{in}/matrix.npy"], FileNotFoundError,
     r"has no model\.pt or checkpoint\.pt yet; train it first"),
    ("lr-nan", ["train", "--dataset", "features:{in}/matrix.npy", *FEAT, "--lr", "nan"], ValueError,
     r"--lr must be a float in the range \(0.0, inf\). Got nan"),
    ("lr-negative", ["train", "--dataset", "features:{in}/matrix.npy", *FEAT, "--lr", "-1"], ValueError,
     r"--lr must be a float in the range \(0.0, inf\). Got -1.0"),
    ("weight-decay-negative", ["train", "--dataset", "features:{in}/matrix.npy", *FEAT, "--weight-decay", "-1"],
     ValueError, r"--weight-decay must be a float in the range \[0.0, inf\)"),
    ("temperature-0-in-yaml", ["train", "--config", "{in}/t0.yaml", "--dataset", "features:{in}/matrix.npy", *FEAT],
     ValueError, r"--temperature must be a float in the range \(0.0, inf\). Got 0"),
    ("device-absent", ["train", "--dataset", "features:{in}/matrix.npy", *FEAT, "--device", "mps"], ValueError,
     r"device 'mps' was requested but this machine has no mps device; use --device 'auto' or 'cpu'"),
    ("crop-size-0", ["train", "--dataset", "digits", *FEAT, "--crop-size", "0"], ValueError,
     r"--crop-size must be an int in the range \[4, inf\)"),
    ("yaml-top-level-typo", ["train", "--config", "{in}/typo.yaml", *FEAT], ValueError,
     r"unknown key\(s\) datset \(did you mean dataset\?\)"),
    ("yaml-syntax-error", ["train", "--config", "{in}/bad.yaml", *FEAT], ValueError,
     r"bad\.yaml: not valid YAML \(line 3, column 1\)"),
    ("yaml-unsafe-tag", ["train", "--config", "{in}/tag.yaml", *FEAT], ValueError,
     r"not valid YAML .*could not determine a constructor for the tag .*python/object/apply"),
    ("overwrite-foreign-folder", ["train", "--dataset", "features:{in}/matrix.npy", *FEAT, "--overwrite",
                                  "--out", "{tmp}/foreign"], RunDirError, r"is not empty \(and is not a hiclust run\)"),
    ("demo-into-foreign-folder", ["demo", "--out", "{tmp}/foreign", "--epochs", "6"], RunDirError,
     r"foreign exists and is not empty"),
    ("run-dir-locked", ["train", "--dataset", "features:{in}/matrix.npy", *FEAT, "--overwrite", "--out",
                        "{tmp}/locked_run"], RunDirError, r"another hiclust process \(pid \d+\) is training into"),
    ("yaml-params-not-mapping", ["train", "--config", "{in}/plist.yaml", *FEAT], ValueError,
     r"'params' must be a mapping"),
]


@pytest.mark.parametrize("argv,exc,message", [c[1:] for c in ROUND2], ids=[c[0] for c in ROUND2])
def test_round2_bad_input_one_clear_error_nothing_written(argv, exc, message, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    _bad_inputs(d, tmp_path)
    monkeypatch.setenv("HICLUST_DEBUG", "1")  # re-raise, to check the type
    argv = [a.format(**{"in": d, "tmp": tmp_path}) for a in argv]
    if argv[0] == "train" and "--resume" not in argv and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    before = snapshot(tmp_path)
    with pytest.raises(exc, match=message):
        cli.main(argv)
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_round2_error_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HICLUST_DEBUG", raising=False)
    np.save(tmp_path / "m.npy", np.zeros((5, 3)))
    assert cli.main(["train", "--dataset", f"npy:{tmp_path / 'm.npy'}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "features:" in err and not (tmp_path / "o").exists()


def test_failed_overwrite_leaves_the_old_run_intact(files, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", f"features:{files / 'x.npy'}", *TINY, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)

    def broken(data):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_label_names", broken)  # fails after the new model was trained and saved
    monkeypatch.setenv("HICLUST_DEBUG", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(["train", "--dataset", f"features:{files / 'x.npy'}", *TINY, "--epochs", "4", "--out", str(out),
                  "--overwrite"])
    assert snapshot(out) == before  # the old run, untouched, and no lock left
    monkeypatch.undo()
    assert cli.main(["train", "--dataset", f"features:{files / 'x.npy'}", *TINY, "--epochs", "4", "--out", str(out),
                     "--overwrite"]) == 0
    after = snapshot(out)
    assert after["notes.txt"] == before["notes.txt"] and after["model.pt"] != before["model.pt"]
    assert json.loads((out / "run.json").read_text())["params"]["epochs"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the temporary sibling is gone


def test_version_and_threads_on_every_run_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("hiclust ")
    parser = cli.build_parser()
    for argv in (["evaluate", "r"], ["tree", "r"], ["report", "r"], ["predict", "r", "--input", "x"],
                 ["train", "--dataset", "digits"], ["demo"]):
        assert parser.parse_args([*argv, "--threads", "1"]).threads == 1


def test_usage_errors_are_one_line_with_the_nearest_flag(tmp_path, capsys):
    """A misspelt flag is refused (no prefix matching), in one line naming the flag meant."""
    for argv, hint in ((["--n-cluster", "3"], "did you mean --n-clusters?"), (["--nclusters", "3"], "--n-clusters"),
                       (["--k", "3"], "unrecognized arguments: --k 3")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", "--dataset", "digits", *argv, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and hint in err and "usage:" not in err
        assert err.rstrip().endswith("(see hiclust train --help)")  # the subcommand given, not "COMMAND"
    assert not (tmp_path / "o").exists()


def test_messages_a_new_user_met(tmp_path, capsys):
    """Fresh-eyes findings: a CSV column named like labels is announced as a feature; a command
    without --strict does not offer it; a parameter left at its default is called so."""
    import pandas as pd

    from hiclust.methods.base import _shown

    csv = tmp_path / "m.csv"
    pd.DataFrame({"a": [0.1, 0.2, 0.3, 0.9, 1.1, 1.0], "b": [1.0, 2.0, 0.5, 0.2, 0.7, 0.1],
                  "label": [0, 0, 0, 1, 1, 1]}).to_csv(csv, index=False)
    with pytest.warns(UserWarning, match=r"m\.csv: column 'label' is clustered as a feature; if it holds the "
                                         r"classes, pass label_column='label'"):
        assert load_dataset(f"features:{csv}").feature_dim == 3
    assert cli.one_line("pass label_column='label'") == "pass --label-column 'label'"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # named: no warning
        assert load_dataset(f"features:{csv}", label_column="label").feature_dim == 2
    hint = "skipped 1 unreadable image file(s) of 5 in d: d/x.png (broken) (pass strict=True to make this an error)"
    assert cli.one_line(hint).endswith("(pass --strict to make this an error)")
    assert cli.one_line(hint, strict_flag=False) == "skipped 1 unreadable image file(s) of 5 in d: d/x.png (broken)"
    assert (_shown(None), _shown(0.01), _shown("mlp")) == ("left at its default", "0.01", "'mlp'")
    # a file where a folder is expected: said so, with the forms that read it; nothing written
    with pytest.raises(ValueError, match=r"m\.csv is a file, not a folder of images; for a feature matrix use "
                                         r"features:.*m\.csv"):
        load_dataset(f"folder:{csv}")
    from PIL import Image

    png = tmp_path / "one.png"  # one image file: put it in a folder, or predict it with a trained run
    Image.new("L", (8, 8)).save(png)
    with pytest.raises(ValueError, match=r"one\.png is one image file, not a folder of images; put the images to "
                                         r"cluster in a folder and pass folder:DIR \(to assign one image with a "
                                         r"trained run: hiclust predict RUN --input .*one\.png\)"):
        load_dataset(f"folder:{png}")
    png.unlink()
    before = csv.read_bytes()
    capsys.readouterr()
    assert cli.main(["train", "--dataset", f"features:{csv}", "--label-column", "label", "--n-clusters", "2",
                     "--out", str(csv)]) == 2
    assert "m.csv is a file, not a folder; choose another --out" in capsys.readouterr().err
    assert csv.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]
    # a FeatureDataset handed to fit is its matrix (with its labels and its header's column names)
    from hiclust import CoHiClust

    data = load_dataset(f"features:{csv}", label_column="label")
    params = dict(n_clusters=2, epochs=12, tree_draws=1, verbose=False)
    whole = CoHiClust(**params).fit(data)
    assert list(whole.feature_names_in_) == ["a", "b"]
    assert np.array_equal(whole.labels_, CoHiClust(**params).fit(data.features).labels_)


def test_train_says_when_the_crop_size_undoes_image_size(tmp_path, capsys):
    """--image-size resizes on load, --crop-size is what the network sees: when both are set and
    differ (a preset's crop beneath a larger resize), train says so and names the flag to change;
    when they agree it says nothing."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "imgs.npy", rng.integers(0, 256, (64, 1, 10, 10), dtype=np.uint8))
    small = ["--n-clusters", "2", "--depth", "1", "--backbone", "smallcnn", "--epochs", "2", "--pretrain-epochs", "1",
             "--batch-size", "32", "--device", "cpu", "--seed", "0"]
    capsys.readouterr()
    assert cli.main(["train", "--dataset", f"npy:{tmp_path / 'imgs.npy'}", "--image-size", "12", "--crop-size", "8",
                     *small, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert ("note: --image-size 12 resizes the images on load; the network sees 8 px crops of them "
            "(--crop-size 8); pass --crop-size 12 to train at 12 px") in err
    assert cli.main(["train", "--dataset", f"npy:{tmp_path / 'imgs.npy'}", "--image-size", "12", "--crop-size", "12",
                     *small, "--out", str(tmp_path / "b")]) == 0
    assert "--crop-size" not in capsys.readouterr().err
    assert cli.main(["train", "--dataset", f"npy:{tmp_path / 'imgs.npy'}", "--image-size", "8", "--crop-size", "12",
                     *small, "--out", str(tmp_path / "c")]) == 0
    assert ("the network sees 12 px crops of them (--crop-size 12) (upscaled: a crop larger than the image adds no "
            "detail, only computation); pass --crop-size 8 to train at 8 px") in capsys.readouterr().err
