"""The paper's flat table: ImageNet subsets from an ImageNet-layout folder, CC's STL-10 schedule
(instance-only pass over extra images), the presets of every flat-table data set, and the table of
finished runs (hiclust.reproduce)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hiclust import ContrastiveClustering
from hiclust.cli import main, validate_estimator
from hiclust.data import augmentation_preset, load_dataset
from hiclust.data.datasets import DatasetNotFoundError
from hiclust.data.imagenet import IMAGENET10_CLASSES, IMAGENET_DOGS_CLASSES
from hiclust.methods import make_estimator
from hiclust.reproduce import (
    FLAT_PRESETS, PUBLISHED_FLAT, available_presets, collect_runs, format_flat_markdown, smoke_run,
    synthetic_stand_in,
)
from hiclust.runs import load_config_file


def _jpeg_folder(base: Path, wnids: list[str], per_class: int = 2, size: tuple[int, int] = (48, 64)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, w in enumerate(wnids):
        (base / w).mkdir(parents=True)
        for j in range(per_class):
            # class i has mean level 16 * i: the decoded pixels must follow the file, not the order read
            a = np.clip(rng.normal(16 * i, 3, (size[0], size[1] + 8 * j, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(base / w / f"{w}_{j}.JPEG", quality=95)


@pytest.mark.parametrize("name,classes", [("imagenet10", IMAGENET10_CLASSES), ("imagenet_dogs", IMAGENET_DOGS_CLASSES)])
def test_imagenet_subsets_read_their_wnids_from_the_train_folder(tmp_path: Path, name: str, classes: dict) -> None:
    _jpeg_folder(tmp_path / "train", list(classes) + ["n01440764"])  # an extra class is ignored
    ds = load_dataset(name, root=tmp_path, image_size=24)
    k = len(classes)
    assert ds.images.shape == (2 * k, 3, 24, 24) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [i for i in range(k) for _ in range(2)]
    assert ds.class_names == list(classes.values()) and len(set(ds.class_names)) == k
    means = ds.images.float().mean((1, 2, 3)).view(k, 2).mean(1)
    assert torch.allclose(means, 16 * torch.arange(k).float(), atol=3)  # label i ↔ wnid i's images
    assert load_dataset(name, root=tmp_path / "train", split="all", image_size=24).images.equal(ds.images)


def test_imagenet_default_size_is_the_centre_square_of_the_shorter_side(tmp_path: Path) -> None:
    from PIL import Image

    wnids = list(IMAGENET10_CLASSES)
    for w in wnids:
        (tmp_path / "train" / w).mkdir(parents=True)
    a = np.zeros((112, 336, 3), np.uint8)  # 3:1 landscape: left third black, middle white, right third black
    a[:, 112:224] = 255
    for w in wnids:
        Image.fromarray(a).save(tmp_path / "train" / w / "x.png")
    ds = load_dataset("imagenet10", root=tmp_path)
    assert ds.images.shape == (10, 3, 224, 224)
    assert ds.images.float().mean() > 250  # only the white centre square survives the crop


def test_imagenet_missing_classes_are_named(tmp_path: Path) -> None:
    wnids = list(IMAGENET_DOGS_CLASSES)
    _jpeg_folder(tmp_path / "train", wnids[:-2], per_class=1)
    with pytest.raises(DatasetNotFoundError, match=f"2 of its 15 .*{wnids[-2]}, {wnids[-1]}"):
        load_dataset("imagenet_dogs", root=tmp_path)
    with pytest.raises(ValueError, match="train split only"):
        load_dataset("imagenet_dogs", root=tmp_path, split="test")
    with pytest.raises(ValueError, match="cannot be downloaded"):
        load_dataset("imagenet_dogs", root=tmp_path, download=True)


def test_cc_augmentation_presets_follow_the_dataset_family_not_the_crop_size() -> None:
    cifar, stl, inet = (augmentation_preset(n, 224, 3) for n in ("cc_cifar", "cc_stl10", "cc_imagenet"))
    assert cifar.jitter[0] == pytest.approx(0.4) and cifar.blur_p == 0.0  # s = 0.5
    assert stl.jitter[0] == pytest.approx(0.8) and stl.blur_p == 0.0  # s = 1
    assert inet.jitter[0] == pytest.approx(0.8) and inet.blur_p == 0.5 and inet.blur_kernel_size == 23


def test_cc_instance_only_pass_trains_on_the_extra_images_without_the_cluster_head() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 1, 8, 8), generator=gen, dtype=torch.uint8)
    extra = torch.randint(0, 256, (48, 1, 8, 8), generator=gen, dtype=torch.uint8)
    kw = dict(n_clusters=3, epochs=2, batch_size=16, backbone="smallcnn", device="cpu", verbose=False)
    with_extra = ContrastiveClustering(**kw).fit(x, instance_data=extra)
    plain = ContrastiveClustering(**kw).fit(x)
    rec = with_extra.history_[-1]
    assert {"instance_only_loss", "instance", "cluster", "entropy", "loss"} <= set(rec)
    assert "instance_only_loss" not in plain.history_[-1]
    assert with_extra.labels_.shape == (32,)
    assert not torch.equal(with_extra.model_.backbone.state_dict()["features.0.weight"]
                           if "features.0.weight" in with_extra.model_.backbone.state_dict() else
                           next(iter(with_extra.model_.backbone.parameters())),
                           next(iter(plain.model_.backbone.parameters())))
    with pytest.raises(ValueError, match="per-sample shape of X"):
        ContrastiveClustering(**kw).fit(x, instance_data=extra[:, :, :6])
    with pytest.raises(ValueError, match="fewer than batch_size"):
        ContrastiveClustering(**kw).fit(x, instance_data=extra[:8])


@pytest.mark.parametrize("preset", FLAT_PRESETS, ids=lambda p: p.name)
def test_flat_preset_validates_and_trains_one_step_on_data_of_its_shape(preset) -> None:
    config = load_config_file(preset.name)
    assert (config["method"], config["dataset"]) == (preset.method, preset.dataset)
    assert (preset.method, preset.dataset) in PUBLISHED_FLAT
    params = config["params"]
    model = make_estimator(preset.method, dict(params, device="cpu", verbose=False))
    validate_estimator(model)  # the preset's own values (batch, schedule, pruning) against a data set of its size
    model.check_params(synthetic_stand_in(preset, max(params["batch_size"], 2 * params["n_clusters"])))
    # One step at the preset's image shape, network, crop size and augmentation: a batch of 2 and,
    # so that one step is a whole fit, a one-level tree / two clusters.
    tiny = {"n_clusters": 2, "epochs": 1}
    if preset.method == "cohiclust":
        tiny.update(depth=1, pretrain_epochs=0, prune_start=None)
    rec = smoke_run(preset.name, steps_per_epoch=1, batch_size=2, device="cpu", overrides=tiny)
    assert rec["steps"] == (2 if config.get("instance_split") else 1)
    assert rec["crop"] == params.get("image_size", preset.shape[-1])
    assert rec["images_per_s"] > 0 and rec["full_recipe_hours"] > 0


def test_available_presets_and_the_flat_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)
    for f in ("data_batch_1", "test_batch"):
        (data / "cifar-10-batches-py" / f).write_bytes(b"x")
    for w in IMAGENET10_CLASSES:
        (data / "train" / w).mkdir(parents=True)
    assert [p.name for p in available_presets(data)] == ["cifar10", "cc_cifar10", "imagenet10", "cc_imagenet10"]
    assert main(["flat-table", "available", str(data)]) == 0
    assert capsys.readouterr().out.split() == ["cifar10", "cc_cifar10", "imagenet10", "cc_imagenet10"]

    runs = tmp_path / "runs"
    (runs / "cifar10").mkdir(parents=True)
    (runs / "cifar10" / "metrics.json").write_text(json.dumps({"nmi": 0.5, "acc": 0.6, "ari": 0.4}))
    (runs / "cifar10" / "history.jsonl").write_text('{"seconds": 1800}\n{"seconds": 1800}\n')
    (runs / "cc_stl10").mkdir()
    (runs / "cc_stl10" / "run.json").write_text("{}")
    rows = {r["preset"]: r for r in collect_runs(runs)}
    assert rows["cifar10"]["status"] == "done" and rows["cifar10"]["hours"] == 1.0
    assert rows["cc_stl10"]["status"] == "unfinished" and rows["imagenet10"]["status"] == "missing"
    md = format_flat_markdown(list(rows.values()))
    assert "| CIFAR-10 | CoHiClust | 0.500 | 0.600 | 0.400 | 0.779 | 0.839 | 0.731 | 1.0 | done |" in md
    assert "| STL-10 | CC | – | – | – | 0.764 | 0.850 | 0.726 | – | unfinished |" in md
    assert main(["flat-table", "table", str(runs)]) == 0
    assert (runs / "table.md").read_text().count("\n| ") == len(FLAT_PRESETS) + 2  # header, rule, one row each
    assert main(["flat-table", "table", str(tmp_path / "nope")]) == 2


def test_reproduce_script_skips_finished_runs_resumes_checkpoints_and_writes_the_table(tmp_path: Path) -> None:
    """The script's control flow, with a stand-in for the `hiclust` command that logs its calls."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_flat_table.sh"
    fake = tmp_path / "fake_hiclust.py"
    log = tmp_path / "calls.log"
    fake.write_text(
        "import sys, pathlib\n"
        f"log = pathlib.Path({str(log)!r})\n"
        "args = sys.argv[1:]\n"
        "log.open('a').write(' '.join(args) + '\\n')\n"
        "if args[:2] == ['flat-table', 'available']:\n"
        "    print('cifar10\\ncc_cifar10\\nstl10\\ncc_stl10')\n"
        "elif args[0] == 'train':\n"
        "    out = pathlib.Path(args[args.index('--out') + 1] if '--out' in args else args[args.index('--resume') + 1])\n"
        "    if 'stl10' in str(out) and 'cc_' not in str(out):\n"
        "        sys.exit(3)  # a failing run: the others go on, the script exits 1 at the end\n"
        "    out.mkdir(parents=True, exist_ok=True)\n"
        "    (out / 'metrics.json').write_text('{}')\n"
    )
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    (runs / "cifar10").mkdir(parents=True)
    (runs / "cifar10" / "metrics.json").write_text("{}")  # finished: skipped
    (runs / "cc_cifar10").mkdir()
    (runs / "cc_cifar10" / "run.json").write_text("{}")
    (runs / "cc_cifar10" / "checkpoint.pt").write_bytes(b"")  # interrupted: resumed
    (runs / "cc_stl10").mkdir()
    (runs / "cc_stl10" / "run.json").write_text("{}")  # stopped before a checkpoint: restarted
    env = {"HICLUST": f"{sys.executable} {fake}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(script), str(data), str(runs)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "failed: stl10" in proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"flat-table available {data}"
    assert calls[1] == f"train --resume {runs}/cc_cifar10"
    assert calls[2] == f"train --config stl10 --root {data} --out {runs}/stl10"
    assert calls[3] == f"train --config cc_stl10 --root {data} --out {runs}/cc_stl10 --overwrite"
    assert calls[4] == f"flat-table table {runs}" and len(calls) == 5
    bad = subprocess.run(["bash", str(script), str(tmp_path / "missing")], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def _fake_stl10(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """STL-10's binary files (column-major uint8, 1-based labels) with 16 train, 16 test, 32 unlabeled images."""
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.stl10, "check_integrity", lambda fpath, md5=None: Path(fpath).is_file())
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 16), ("unlabeled", 32)):
        a = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        (base / f"{split}_X.bin").write_bytes(np.ascontiguousarray(a.transpose(0, 1, 3, 2)).tobytes())
        if split != "unlabeled":
            (base / f"{split}_y.bin").write_bytes((np.arange(n) % 10 + 1).astype(np.uint8).tobytes())
    (base / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")


def test_stl10_recipes_train_on_one_split_and_report_on_another(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CoHiClust's STL-10 recipe trains on the unlabeled split and is evaluated on train+test; CC's
    adds an instance-only pass over the unlabeled split to every epoch over train+test."""
    _fake_stl10(monkeypatch, tmp_path / "data")
    common = ["--dataset", "stl10", "--root", str(tmp_path / "data"), "--image-size", "16", "--epochs", "2",
              "--batch-size", "8", "--backbone", "smallcnn", "--device", "cpu"]
    assert main(["train", "--method", "cohiclust", *common, "--split", "unlabeled", "--eval-split", "all",
                 "--n-clusters", "2", "--depth", "1", "--out", str(tmp_path / "co")]) == 0
    run = json.loads((tmp_path / "co" / "run.json").read_text())
    assert (run["split"], run["eval_split"]) == ("unlabeled", "all")
    history = [json.loads(line) for line in (tmp_path / "co" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and "acc" not in history[-1]  # the training split has no labels
    assert set(json.loads((tmp_path / "co" / "metrics.json").read_text())) >= {"acc", "nmi", "ari"}  # 32 labeled
    assert main(["evaluate", str(tmp_path / "co")]) == 0
    evaluation = json.loads((tmp_path / "co" / "evaluation.json").read_text())
    assert (evaluation["split"], evaluation["n_samples"]) == ("all", 32)

    assert main(["train", "--method", "cc", *common, "--split", "all", "--instance-split", "unlabeled",
                 "--n-clusters", "3", "--out", str(tmp_path / "cc")]) == 0
    history = [json.loads(line) for line in (tmp_path / "cc" / "history.jsonl").read_text().splitlines()]
    assert {"instance_only_loss", "instance", "cluster"} <= set(history[-1])
    assert main(["train", "--method", "cohiclust", *common, "--instance-split", "unlabeled",
                 "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()  # refused before anything was written
