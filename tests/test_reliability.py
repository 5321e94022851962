"""Reliability guarantees (issue 5): atomic checkpoints and resume, safe loading, input
validation before anything is written, numerical safety, determinism.

Everything trains a tiny CoHiClust (smallcnn on 8×8 digits, a few epochs of a few batches) on the
CPU. The kill-and-resume test runs ``python -m hiclust train`` in subprocesses and SIGKILLs one.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hiclust.checkpoint as ckmod
import hiclust.losses.modules as lossmod
import hiclust.methods.base as basemod
from hiclust import cli
from hiclust.checkpoint import FORMAT, CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from hiclust.data import load_dataset
from hiclust.data.datasets import CorruptImageError, DatasetNotFoundError
from hiclust.hierarchy import Hierarchy
from hiclust.losses import cohiloss, tree_balance_loss
from hiclust.methods import CoHiClust
from hiclust.metrics import dendrogram_purity
from hiclust.runs import RunConfig, RunDirError
from hiclust.train import NonFiniteLossError

SRC = Path(__file__).resolve().parents[1] / "src"

# 256 digits, batch 64: 4 steps per epoch. Pruning 1 leaf (4 → 3) at the end of epoch 2.
TINY = dict(
    n_clusters=3, depth=2, backbone="smallcnn", epochs=4, pretrain_epochs=1, batch_size=64,
    device="cpu", seed=0, verbose=False, eval_every=100,
)


@pytest.fixture(scope="module")
def digits_u8() -> tuple[np.ndarray, np.ndarray]:
    """(600, 8, 8) uint8 digits images and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images[:600] * (255 / 16)).astype(np.uint8)
    return x, d.target[:600].astype(np.int64)


@pytest.fixture(scope="module")
def small(digits_u8) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits_u8
    return x[:256, None], y[:256]


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory) -> tuple[CoHiClust, Path, Path]:
    """A tiny fitted model with its final training checkpoint and saved model."""
    d = tmp_path_factory.mktemp("trained")
    x, y = small
    model = CoHiClust(**TINY).fit(x, y, checkpoint=d / "checkpoint.pt", checkpoint_every=2)
    model.save(d / "model.pt")
    return model, d / "checkpoint.pt", d / "model.pt"


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` (hidden ones included) → hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


# ================================================================ 3. input validation
def _png(path: Path, size: int, value: int = 128) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), mode="L").save(path)


@pytest.fixture()
def inputs(tmp_path, digits_u8) -> Path:
    """Good and bad inputs under tmp_path/in; the run directories go to tmp_path/out*."""
    x, _ = digits_u8
    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "good.npy", x[:64])
    np.save(d / "few.npy", x[:6])
    f = x[:16].astype(np.float32) / 255
    f[3, 2, 2] = np.nan
    np.save(d / "nan.npy", f)
    f = x[:16].astype(np.float32) / 255
    f[5, 1, 1] = np.inf
    np.save(d / "inf.npy", f)
    np.save(d / "empty.npy", np.zeros((0, 8, 8), np.uint8))
    np.save(d / "rank1.npy", np.zeros(64, np.uint8))
    np.save(d / "chan5.npy", np.zeros((16, 8, 8, 5), np.uint8))
    np.save(d / "tiny_px.npy", np.zeros((16, 3, 3), np.uint8))
    for i in range(3):
        _png(d / "mixed" / f"a{i}_8px.png", 8, 40 * i)
    _png(d / "mixed" / "b_10px.png", 10)
    for i in range(4):
        _png(d / "corrupt" / f"ok{i}.png", 8, 50 * i)
    _png(d / "corrupt" / "cut.png", 8)
    raw = (d / "corrupt" / "cut.png").read_bytes()
    (d / "corrupt" / "cut.png").write_bytes(raw[: len(raw) // 2])  # truncated file
    (d / "badparam.yaml").write_text("method: cohiclust\ndataset: digits\nparams:\n  n_clusters: 3\n  nope: 1\n")
    (d / "emptyroot").mkdir()
    # a finished run in out_taken, and a non-run folder in out_foreign
    taken = tmp_path / "out_taken"
    taken.mkdir()
    (taken / "run.json").write_text(json.dumps({"method": "cohiclust", "dataset": "digits", "params": {"depth": 2}}))
    foreign = tmp_path / "out_foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my files")
    return d


COMMON = ["--backbone", "smallcnn", "--n-clusters", "3", "--depth", "2", "--epochs", "2", "--batch-size", "16",
          "--device", "cpu"]

# (id, argv after "train" with {in}/{out}/{tmp} placeholders, error type, regex of the message)
CLI_CASES = [
    ("nan-pixels", ["--dataset", "npy:{in}/nan.npy", *COMMON], ValueError, r"1 NaN/Inf values"),
    ("inf-pixels", ["--dataset", "npy:{in}/inf.npy", *COMMON], ValueError, r"NaN/Inf values; clean"),
    ("empty-dataset", ["--dataset", "npy:{in}/empty.npy", *COMMON], ValueError, r"is empty"),
    ("wrong-rank", ["--dataset", "npy:{in}/rank1.npy", *COMMON], ValueError, r"must have 3 or 4 dimensions"),
    ("channel-count", ["--dataset", "npy:{in}/chan5.npy", *COMMON], ValueError, r"no channel axis of size 1 or 3"),
    ("mixed-sizes", ["--dataset", "folder:{in}/mixed", *COMMON], ValueError,
     r"2 different sizes .*8x8: 3 file\(s\), e\.g\. .*a0_8px\.png.*10x10: 1 file\(s\).*image_size"),
    ("truncated-strict", ["--dataset", "folder:{in}/corrupt", "--strict", *COMMON], CorruptImageError,
     r"1 of 5 image files .* could not be read: .*cut\.png"),
    ("k-above-samples", ["--dataset", "npy:{in}/few.npy", *COMMON[:2], "--n-clusters", "8", "--depth", "3",
                         "--batch-size", "2"], ValueError, r"--n-clusters 8 is larger than the number of samples \(6\); lower --n-clusters"),
    ("k-above-leaves", ["--dataset", "npy:{in}/good.npy", *COMMON, "--n-clusters", "5"], ValueError,
     r"--n-clusters 5 is larger than the 2\^depth = 4 leaves.*use --depth >= 3"),
    ("depth-0", ["--dataset", "npy:{in}/good.npy", *COMMON, "--n-clusters", "2", "--depth", "0"], ValueError,
     r"--depth must be an int in the range \[1, 10\]. Got 0 instead"),
    ("depth-11", ["--dataset", "npy:{in}/good.npy", *COMMON, "--depth", "11"], ValueError,
     r"--depth must be an int in the range \[1, 10\].*Got 11 instead"),
    ("batch-above-data", ["--dataset", "npy:{in}/good.npy", *COMMON, "--batch-size", "65"], ValueError,
     r"--batch-size 65 is larger than the dataset \(64 samples\); use --batch-size <= 64"),
    ("unknown-dataset", ["--dataset", "cifar11", *COMMON], ValueError,
     r"unknown dataset 'cifar11'; valid names: .*cifar10.*digits.*folder:<dir>"),
    ("unknown-backbone", ["--dataset", "npy:{in}/good.npy", *COMMON, "--backbone", "vgg16"], ValueError,
     r"--backbone must be a str among \{.*'smallcnn'.*\}\. Got 'vgg16' instead\.$"),  # nothing near: no guess
    ("misspelt-backbone", ["--dataset", "npy:{in}/good.npy", *COMMON, "--backbone", "resnt18"], ValueError,
     r"--backbone must be a str among \{[^}]*\}\. Got 'resnt18' instead\. Did you mean resnet18\?$"),
    ("unknown-method", ["--dataset", "npy:{in}/good.npy", "--method", "kmeans++", *COMMON], ValueError,
     r"unknown method 'kmeans\+\+'; choose one of .*cohiclust"),
    ("unknown-param", ["--config", "{in}/badparam.yaml", "--dataset", "npy:{in}/good.npy"], ValueError,
     r"CoHiClust has no parameter\(s\) nope"),
    ("epochs-0", ["--dataset", "npy:{in}/good.npy", *COMMON, "--epochs", "0"], ValueError, r"--epochs must be an int in the range \[1, inf\). Got 0 instead"),
    ("pretrain-too-long", ["--dataset", "npy:{in}/good.npy", *COMMON, "--pretrain-epochs", "2"], ValueError,
     r"--pretrain-epochs 2 must be in \[0, epochs\) .*\(--epochs 2\)"),
    ("checkpoint-every-0", ["--dataset", "npy:{in}/good.npy", *COMMON, "--checkpoint-every", "0"], ValueError,
     r"--checkpoint-every must be a positive number"),
    ("lr-schedule", ["--dataset", "npy:{in}/good.npy", *COMMON, "--lr-schedule", "step"], ValueError,
     r"--lr-schedule must be a str among \{'cosine'\}. Got 'step' instead"),
    ("images-too-small", ["--dataset", "npy:{in}/tiny_px.npy", *COMMON], ValueError, r"at least 4 px, got 3"),
    ("missing-files", ["--dataset", "mnist", "--root", "{in}/emptyroot", *COMMON], DatasetNotFoundError,
     r"dataset 'mnist' not found.*download=True"),
    ("run-dir-taken", ["--dataset", "npy:{in}/good.npy", *COMMON, "--out", "{tmp}/out_taken"], RunDirError,
     r"already holds a run \(cohiclust on digits\); use --resume .* --overwrite"),
    ("resume-other-run", ["--resume", "{tmp}/out_taken", "--depth", "5"], RunDirError,
     r"holds a different run than the one requested"),
    ("overwrite-bad-input", ["--dataset", "npy:{in}/good.npy", *COMMON, "--depth", "11", "--overwrite",
                             "--out", "{tmp}/out_taken"], ValueError, r"--depth must be an int in the range \[1, 10\]"),  # old run intact
    ("dir-not-a-run", ["--dataset", "npy:{in}/good.npy", *COMMON, "--out", "{tmp}/out_foreign"], RunDirError,
     r"exists and is not empty \(and is not a hiclust run\)"),
    ("resume-not-a-run", ["--resume", "{tmp}/out_foreign"], RunDirError, r"is not a hiclust run directory"),
]
if not torch.cuda.is_available():
    CLI_CASES.append(("no-cuda", ["--dataset", "npy:{in}/good.npy", *COMMON, "--device", "cuda"], ValueError,
                      r"CUDA is not available; use --device 'auto' or 'cpu'"))


@pytest.mark.parametrize("argv,exc,message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_rejects_bad_input_before_writing_anything(argv, exc, message, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("HICLUST_DEBUG", "1")  # re-raise instead of printing, to check the type
    argv = [a.format(**{"in": inputs, "out": tmp_path / "out", "tmp": tmp_path}) for a in argv]
    if "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    before = snapshot(tmp_path)
    with pytest.raises(exc, match=message):
        cli.main(["train", *argv])
    assert snapshot(tmp_path) == before  # nothing written, nothing removed
    assert not (tmp_path / "out").exists()


def test_cli_prints_one_line_and_exit_code_2(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HICLUST_DEBUG", raising=False)
    code = cli.main(["train", "--dataset", "npy:" + str(inputs / "good.npy"), *COMMON, "--depth", "11",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hiclust train: error: --depth must be") and err.count("\n") == 1


def _bad_api_inputs(x: np.ndarray, y: np.ndarray) -> list[tuple[str, object, object, dict, type, str]]:
    """(id, X, y, estimator overrides, error type, message regex) for CoHiClust.fit."""
    xf = x.astype(np.float32) / 255
    nan_feat = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    nan_feat[7, 2] = np.nan
    inf_img = xf.copy()
    inf_img[0, 0, 0, 0] = np.inf
    return [
        ("labels-length", x, y[:-1], {}, ValueError, r"got 63 labels for 64 samples"),
        ("nan-features", nan_feat, None, {"backbone": "auto"}, ValueError, r"NaN or infinite values \(row 7 \(0-based\)\)"),
        ("inf-images", inf_img, None, {}, ValueError, r"images contain NaN or infinite values"),
        ("float-range", xf * 255, None, {}, ValueError, r"float images must lie in \[0, 1\].*divide by 255"),
        ("empty", x[:0], None, {}, ValueError, r"dataset is empty"),
        ("rank-5", x[:, :, :, :, None], None, {}, ValueError, r"expected images \(N, C, H, W\)"),
        ("channels", np.repeat(x, 2, axis=1), None, {}, ValueError, r"1 or 3 channels"),
        ("not-an-array", {"a": 1}, None, {}, TypeError, r"expected an ImageDataset, a FeatureDataset, a torch.Tensor, a numpy array, a pandas DataFrame or a list"),
        ("k-one", x, None, {"n_clusters": 1}, ValueError, r"The 'n_clusters' parameter of CoHiClust must be an int in the range \[2, inf\)"),
        ("eval-every-0", x, None, {"eval_every": 0}, ValueError, r"The 'eval_every' parameter of CoHiClust must be an int in the range \[1, inf\)"),
        ("checkpoint-every-0", x, None, {"_checkpoint_every": 0}, ValueError, r"checkpoint_every must be a positive"),
    ]


def test_api_rejects_bad_input_before_writing_anything(small, tmp_path):
    x, y = small[0][:64], small[1][:64]
    cases = _bad_api_inputs(x, y)
    for name, X, labels, overrides, exc, message in cases:
        params = {**TINY, "batch_size": 16, **{k: v for k, v in overrides.items() if not k.startswith("_")}}
        every = overrides.get("_checkpoint_every", 1)
        with pytest.raises(exc, match=message):
            CoHiClust(**params).fit(X, labels, checkpoint=tmp_path / "run" / "ck.pt", checkpoint_every=every)
        assert not any(tmp_path.iterdir()), name


def test_corrupt_files_are_skipped_with_a_count_and_mixed_sizes_resize(inputs):
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\) of 5 .*cut\.png.*strict=True"):
        ds = load_dataset("folder:" + str(inputs / "corrupt"))
    assert ds.images.shape == (4, 1, 8, 8)
    # the kept images are the readable ones, in file order
    assert ds.images[:, 0, 0, 0].tolist() == [0, 50, 100, 150]
    ds = load_dataset("folder:" + str(inputs / "mixed"), image_size=8)
    assert ds.images.shape == (4, 1, 8, 8) and int(ds.images[3].float().mean().round()) == 128


# ================================================================ 1. atomic checkpoints
class _FullDiskFile(io.FileIO):
    """A file on a disk that fills up after 4 kB."""

    def write(self, b) -> int:
        super().write(bytes(b)[:4096])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDiskOs:
    """``os`` as seen by hiclust.checkpoint, with a disk that is full."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fdopen(fd, *args, **kwargs):
        return _FullDiskFile(fd, "wb")


def test_full_disk_keeps_previous_checkpoint_and_leaves_no_temp(small, tmp_path, monkeypatch):
    x, _ = small
    ck = tmp_path / "checkpoint.pt"
    seen: dict[str, bytes] = {}

    def fill_disk_at_epoch_2(record):
        if record["epoch"] == 2:  # called before epoch 2's checkpoint is written
            seen["previous"] = ck.read_bytes()
            monkeypatch.setattr(ckmod, "os", _FullDiskOs())

    with pytest.raises(OSError, match=r"no space left on the device while writing .*checkpoint\.pt.*previous version was kept") as info:
        CoHiClust(**TINY).fit(x, checkpoint=ck, checkpoint_every=1, callback=fill_disk_at_epoch_2)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert ck.read_bytes() == seen["previous"]
    _, state = load_checkpoint(ck, expected_class="CoHiClust")
    assert state["progress"]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # the partial temp file is gone

    # a first write on a full disk leaves nothing at all
    monkeypatch.setattr(ckmod, "os", _FullDiskOs())
    with pytest.raises(OSError, match="nothing was written"):
        atomic_write_text(tmp_path / "run.json", "{}" * 5000)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_checkpoint_holds_everything_needed_to_resume(trained):
    model, ck, _ = trained
    payload = torch.load(ck, weights_only=True)
    assert payload["format"] == FORMAT and payload["model_class"] == "CoHiClust"
    assert isinstance(payload["config_json"], str)  # config as JSON text, not pickled objects
    assert json.loads(payload["config_json"]) == model.get_params()
    state = payload["state"]
    assert state["progress"] == {"phase": "train", "epoch": TINY["epochs"]}
    for key in ("model", "optimizer", "rng", "generators", "leaf_mask", "pruned_leaves", "scheduler"):
        assert key in state
    assert set(state["rng"]) >= {"torch", "numpy_keys", "python_state"}
    assert set(state["generators"]) == {"shuffle", "augment"}
    assert state["pruned_leaves"] == model.pruned_leaves_ and len(model.pruned_leaves_) == 1
    assert torch.equal(state["leaf_mask"], model.leaf_mask_.cpu())
    assert state["optimizer"]["state"]  # Adam moments are there


def _interrupt_at(epoch: int):
    class Stop(Exception):
        pass

    def callback(record):
        if record["epoch"] == epoch:  # before this epoch's checkpoint: its work is lost, as in a kill
            raise Stop

    return Stop, callback


@pytest.mark.parametrize("lr_schedule", [None, "cosine"])
def test_interrupted_fit_resumes_to_identical_model(small, trained, tmp_path, lr_schedule):
    x, y = small
    params = {**TINY, "lr_schedule": lr_schedule}
    # `trained` is this run without interruption (and with other checkpoints, which change nothing)
    full = trained[0] if lr_schedule is None else CoHiClust(**params).fit(x, y)
    ck = tmp_path / "ck.pt"
    stop, callback = _interrupt_at(3)
    with pytest.raises(stop):
        CoHiClust(**params).fit(x, y, checkpoint=ck, checkpoint_every=1, callback=callback)
    _, state = load_checkpoint(ck)
    assert state["progress"]["epoch"] == 2
    if lr_schedule == "cosine":  # the schedule is live and its state travels with the checkpoint
        assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * (1 + math.cos(math.pi / 2)) / 2)
        assert state["scheduler"]["last_epoch"] == 2
    resumed = CoHiClust(**params).fit(x, y, checkpoint=ck, checkpoint_every=1, resume=True)
    assert np.array_equal(resumed.labels_, full.labels_)
    assert resumed.pruned_leaves_ == full.pruned_leaves_
    for (k, a), b in zip(full.model_.state_dict().items(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b), k
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "elapsed")} for r in full.history_]
    assert [{k: v for k, v in r.items() if k not in ("seconds", "elapsed")} for r in resumed.history_] == strip


def test_cosine_schedule_refuses_resume_with_other_epochs(small, tmp_path):
    x, _ = small
    ck = tmp_path / "ck.pt"
    stop, callback = _interrupt_at(2)
    with pytest.raises(stop):
        CoHiClust(**TINY, lr_schedule="cosine").fit(x, checkpoint=ck, checkpoint_every=1, callback=callback)
    with pytest.raises(CheckpointError, match=r"differs in epochs \(checkpoint 4, now 6\)"):
        CoHiClust(**{**TINY, "epochs": 6}, lr_schedule="cosine").fit(x, checkpoint=ck, resume=True)


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("HICLUST_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "hiclust", "train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_gives_identical_predictions(digits_u8, tmp_path):
    x, _ = digits_u8
    np.save(tmp_path / "d.npy", x)  # 600 images, 9 batches of 64 per epoch
    args = ["--dataset", f"npy:{tmp_path / 'd.npy'}", "--backbone", "smallcnn", "--n-clusters", "2", "--depth", "2",
            "--epochs", "6", "--pretrain-epochs", "1", "--batch-size", "64", "--device", "cpu", "--seed", "3",
            "--checkpoint-every", "1"]
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    full = _run_cli([*args, "--out", str(full_dir)])  # runs alongside the one we kill
    victim = _run_cli([*args, "--out", str(killed_dir)])
    history = killed_dir / "history.jsonl"
    deadline = time.monotonic() + 300
    # history line k is written just before checkpoint k: with 3 lines, checkpoint 2 is on disk and
    # epoch 3's checkpoint is being written; half an epoch later, epoch 4's batches are under way.
    while victim.poll() is None and time.monotonic() < deadline:
        lines = history.read_text().splitlines() if history.exists() else []
        if len(lines) >= 3:
            time.sleep(0.5 * json.loads(lines[-1])["seconds"])
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed_dir / "model.pt").exists()
    _, state = load_checkpoint(killed_dir / "checkpoint.pt", expected_class="CoHiClust")
    stopped_at = state["progress"]["epoch"]
    assert 2 <= stopped_at < 6
    (killed_dir / ".checkpoint.pt.leftover.tmp").write_bytes(b"torn")  # as a kill during a write leaves

    resumed = _run_cli(["--resume", str(killed_dir)])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    full_out, full_err = full.communicate(timeout=300)
    assert full.returncode == 0, full_err
    printed = [int(line.split("epoch=")[1].split()[0]) for line in err.splitlines() if "[CoHiClust] epoch=" in line]
    assert printed == list(range(stopped_at + 1, 7))  # continued, did not start over
    assert not list(killed_dir.glob("*.tmp")) and not list(killed_dir.glob(".*.tmp"))

    a = CoHiClust.load(full_dir / "model.pt", device="cpu")
    b = CoHiClust.load(killed_dir / "model.pt", device="cpu")
    images = x[:, None]
    assert np.array_equal(a.predict(images), b.predict(images))
    assert a.pruned_leaves_ == b.pruned_leaves_
    for (k, va), vb in zip(a.model_.state_dict().items(), b.model_.state_dict().values()):
        assert torch.equal(va, vb), k

    def losses(run: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "elapsed")}
                for line in (run / "history.jsonl").read_text().splitlines()]

    assert losses(killed_dir) == losses(full_dir) and len(losses(full_dir)) == 6

    # 5. the run directory records the seed and library versions
    record = json.loads((killed_dir / "run.json").read_text())
    assert record["seed"] == 3 and record["params"]["seed"] == 3
    assert record["versions"]["torch"] == torch.__version__ and record["versions"]["numpy"] == np.__version__
    assert {"python", "hiclust", "scikit-learn", "scipy"} <= set(record["versions"])


def test_resume_with_incompatible_checkpoint_is_refused_before_run_json_changes(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("HICLUST_DEBUG", "1")
    run = tmp_path / "out"
    params = {**TINY, "batch_size": 32, "epochs": 3, "lr_schedule": "cosine"}
    cli.run_training(run, RunConfig("cohiclust", "npy:" + str(inputs / "good.npy"), params=params), picture=False)
    before = snapshot(tmp_path)
    # the cosine schedule was planned over 3 epochs: more epochs are refused, naming the parameter
    with pytest.raises(CheckpointError, match=r"differs in epochs \(checkpoint 3, now 5\)"):
        cli.main(["train", "--resume", str(run), "--epochs", "5"])
    assert snapshot(tmp_path) == before


# ================================================================ 2. safe loading
class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model_class": "CoHiClust", "config_json": "{}",
                "state": {"model": _Payload(marker)}}, path)
    with pytest.raises(CheckpointError, match="refused without being executed"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused without being executed"):
        CoHiClust.load(path)
    with pytest.raises(CheckpointError, match="refused without being executed"):
        CoHiClust(**TINY).fit(np.zeros((64, 1, 8, 8), np.uint8), checkpoint=path, resume=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: an unsafe load does run it
    assert marker.is_dir()


def test_corrupt_and_foreign_files_are_refused(trained, tmp_path):
    _, ck, _ = trained
    raw = ck.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        CoHiClust.load(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a hiclust checkpoint"):
        CoHiClust.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        CoHiClust.load(tmp_path / "missing.pt")


def test_loading_into_another_method_names_the_mismatch(trained):
    cc = pytest.importorskip("hiclust.methods.cc")
    _, _, model_pt = trained
    with pytest.raises(CheckpointError, match=r"holds a CoHiClust checkpoint, not a ContrastiveClustering"):
        cc.ContrastiveClustering.load(model_pt)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"depth": 3, "epochs": 8}, r"differs in depth \(checkpoint 2, now 3\)"),
        ({"projection_dim": 64}, r"differs in projection_dim \(checkpoint 128, now 64\)"),
        ({"backbone": "resnet18"}, r"differs in backbone \(checkpoint 'smallcnn', now 'resnet18'\)"),
        ({"balance_weight": 0.5}, r"differs in balance_weight \(checkpoint left at its default, now 0.5\)"),
        ({"method": "cc"}, r"holds a CoHiClust checkpoint, not a ContrastiveClustering"),
    ],
)
def test_resume_into_another_model_names_the_mismatch(trained, small, tmp_path, change, message):
    _, ck, _ = trained
    copy = tmp_path / "ck.pt"
    copy.write_bytes(ck.read_bytes())
    x, _ = small
    if change.get("method") == "cc":
        cc = pytest.importorskip("hiclust.methods.cc")
        est = cc.ContrastiveClustering(n_clusters=3, backbone="smallcnn", epochs=2, batch_size=64, device="cpu", verbose=False)
    else:
        est = CoHiClust(**{**TINY, **change})
    with pytest.raises(CheckpointError, match=message):
        est.fit(x, checkpoint=copy, resume=True)
    assert copy.read_bytes() == ck.read_bytes()


def test_other_input_shape_or_layers_name_the_mismatch(trained, small, tmp_path):
    model, ck_shared, model_pt = trained
    ck = tmp_path / "ck.pt"
    ck.write_bytes(ck_shared.read_bytes())
    x, _ = small
    bigger = torch.nn.functional.interpolate(torch.from_numpy(x).float(), size=12).round().to(torch.uint8)
    with pytest.raises(CheckpointError, match=r"trained on inputs of shape \(1, 8, 8\); this run has \(1, 12, 12\)"):
        CoHiClust(**TINY).fit(bigger, checkpoint=ck, resume=True)
    with pytest.raises(CheckpointError, match="is a saved model, not a training checkpoint"):
        CoHiClust(**TINY).fit(x, checkpoint=model_pt, resume=True)
    loaded = CoHiClust.load(model_pt, device="cpu")
    assert np.array_equal(loaded.predict(x), model.labels_)
    with pytest.raises(ValueError, match=r"fitted on inputs of shape \(1, 8, 8\) per sample, got \(1, 12, 12\)"):
        loaded.predict(bigger)
    # a file whose config says one architecture and whose weights are of another
    config, state = load_checkpoint(model_pt)
    save_checkpoint(tmp_path / "wide.pt", model_class="CoHiClust", config={**config, "projection_dim": 64}, state=state)
    with pytest.raises(CheckpointError, match=r"(?s)does not fit this model's layers.*projection"):
        CoHiClust.load(tmp_path / "wide.pt")
    deeper = {**state, "depth": 3}
    save_checkpoint(tmp_path / "deep.pt", model_class="CoHiClust", config=config, state=deeper)
    with pytest.raises(CheckpointError, match=r"(?s)does not fit this model's layers.*tree"):
        CoHiClust.load(tmp_path / "deep.pt")


# ================================================================ 4. numerical safety
def _cohiloss_nan_at(call: int):
    count = {"n": 0}

    def fake(*args, **kwargs):
        count["n"] += 1
        value = cohiloss(*args, **kwargs)
        return value * math.nan if count["n"] == call else value

    return fake


def test_nan_loss_stops_with_step_and_term_and_keeps_last_checkpoint(inputs, tmp_path, capsys, monkeypatch):
    # tree losses start at epoch 2 (pretrain 1); 4 batches per epoch: call 6 = epoch 3, batch 2 = step 10
    monkeypatch.setattr(lossmod, "cohiloss", _cohiloss_nan_at(6))
    monkeypatch.delenv("HICLUST_DEBUG", raising=False)
    writes: list[tuple[int, bytes]] = []
    real_save = basemod.save_checkpoint

    def spy(path, **kw):
        real_save(path, **kw)
        writes.append((kw["state"]["progress"]["epoch"], Path(path).read_bytes()))

    monkeypatch.setattr(basemod, "save_checkpoint", spy)
    run = tmp_path / "out"
    code = cli.main(["train", "--dataset", "npy:" + str(inputs / "good.npy"), *COMMON, "--batch-size", "16",
                     "--epochs", "4", "--pretrain-epochs", "1", "--checkpoint-every", "1", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2
    assert "non-finite loss at epoch 3, batch 2 (global step 10): term 'cohiloss' = nan" in err
    assert f"The last good checkpoint {run / 'checkpoint.pt'} (epoch 2) was kept" in err
    assert [e for e, _ in writes] == [1, 2]
    assert (run / "checkpoint.pt").read_bytes() == writes[-1][1]
    _, state = load_checkpoint(run / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "model.pt").exists()
    assert len((run / "history.jsonl").read_text().splitlines()) == 2


def test_non_finite_gradient_and_weights_are_caught(small, tmp_path, monkeypatch):
    x, _ = small
    real = lossmod.nt_xent

    def sqrt_at_zero(z1, z2, t):  # finite value, but d sqrt(u)/du at u = 0 is infinite
        return real(z1, z2, t) + 0.0 * torch.sqrt((z1 - z1.detach()).sum())

    monkeypatch.setattr(lossmod, "nt_xent", sqrt_at_zero)
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient at epoch 1, batch 1 \(global step 1\).*No checkpoint had been written yet"):
        CoHiClust(**TINY).fit(x, checkpoint=tmp_path / "ck.pt")
    monkeypatch.undo()
    assert not (tmp_path / "ck.pt").exists()

    real_end = CoHiClust._on_epoch_end

    def poison(self, phase, epoch, record):  # weights that went bad between steps must not replace the checkpoint
        real_end(self, phase, epoch, record)
        if epoch + 1 == 2:
            with torch.no_grad():
                self.model_.tree.parameters().__next__().fill_(math.nan)

    monkeypatch.setattr(CoHiClust, "_on_epoch_end", poison)
    model = CoHiClust(**TINY)
    with pytest.raises(NonFiniteLossError, match=r"non-finite values in tree\..* after epoch 2.*(epoch 1\) was kept)"):
        model.fit(x, checkpoint=tmp_path / "ck.pt", checkpoint_every=1)
    assert load_checkpoint(tmp_path / "ck.pt")[1]["progress"]["epoch"] == 1
    assert not hasattr(model, "model_")  # a fit that failed leaves no half-trained model behind


decisions_st = st.integers(1, 4).flatmap(
    lambda depth: st.tuples(
        st.just(depth),
        st.integers(2, 6),
        st.data(),
    )
)


@settings(max_examples=60, deadline=None)
@given(decisions_st)
def test_tree_losses_finite_when_probabilities_hit_0_and_1(args):
    depth, n, data = args
    extremes = st.sampled_from([0.0, 1.0, 0.0, 1.0, 1e-30, 1 - 1e-7, 0.5])
    values = data.draw(st.lists(extremes, min_size=2 * n * (2**depth - 1), max_size=2 * n * (2**depth - 1)))
    mask = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=2**depth, max_size=2**depth))
    mask[data.draw(st.integers(0, 2**depth - 1))] = 1.0  # at least one leaf kept
    d = torch.tensor(values, dtype=torch.float32).reshape(2, n, 2**depth - 1).requires_grad_(True)
    m = torch.tensor(mask)
    for form in ("reference", "paper"):
        d.grad = None
        loss = cohiloss(d[0], d[1], m, form) + tree_balance_loss(d[0], d[1], m)
        loss.backward()
        assert torch.isfinite(loss), form
        assert torch.isfinite(d.grad).all(), form


# ================================================================ 5. determinism
def test_same_seed_same_model_other_seed_other_model(small):
    x, y = small
    short = {**TINY, "epochs": 2}
    first, again = CoHiClust(**short).fit(x, y), CoHiClust(**short).fit(x, y)
    other = CoHiClust(**{**short, "seed": 1}).fit(x, y)
    assert np.array_equal(again.labels_, first.labels_) and again.pruned_leaves_ == first.pruned_leaves_
    same = [torch.equal(a, b) for a, b in zip(first.model_.state_dict().values(), again.model_.state_dict().values())]
    assert all(same)
    differ = [torch.equal(a, b) for a, b in zip(first.model_.state_dict().values(), other.model_.state_dict().values())]
    assert not all(differ)


# ================================================================ metrics: DP of trees that separate classes
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.data())
def test_dp_is_one_for_any_tree_whose_subtrees_are_the_classes(depth, data):
    """Cut a complete tree into disjoint subtrees, give each its own class, spread points over its
    leaves (several leaves per class): DP = 1. Moving one point into another class's subtree
    makes it < 1. (tests/test_metrics.py covers one leaf per class.)"""
    n_leaves = 2**depth
    # a random frontier: split a node further with probability 1/2 until the leaves
    frontier, stack = [], [(0, n_leaves)]  # half-open leaf ranges of subtrees
    while stack:
        lo, hi = stack.pop()
        if hi - lo > 1 and data.draw(st.booleans()):
            mid = (lo + hi) // 2
            stack += [(lo, mid), (mid, hi)]
        else:
            frontier.append((lo, hi))
    class_of_leaf = np.empty(n_leaves, np.int64)
    for c, (lo, hi) in enumerate(sorted(frontier)):
        class_of_leaf[lo:hi] = c
    n = data.draw(st.integers(2 * len(frontier), 60))
    leaf_of = np.array(data.draw(st.lists(st.integers(0, n_leaves - 1), min_size=n, max_size=n)))
    leaf_of[: 2 * len(frontier)] = np.repeat([lo for lo, _ in sorted(frontier)], 2)  # ≥ 2 points per class
    y = class_of_leaf[leaf_of]
    Z = Hierarchy.from_complete_tree(depth, []).to_linkage()
    assert dendrogram_purity(y, Z, leaf_of=leaf_of) == pytest.approx(1.0)
    # relabeling the classes changes nothing
    perm = np.random.default_rng(depth).permutation(len(frontier))
    assert dendrogram_purity(perm[y], Z, leaf_of=leaf_of) == pytest.approx(1.0)
    if len(frontier) > 1:
        y_bad = y.copy()
        y_bad[0] = (y[0] + 1) % len(frontier)  # one point of another class inside this subtree
        assert dendrogram_purity(y_bad, Z, leaf_of=leaf_of) < 1.0
