"""WebDataset-style shards: writing, random access, streaming, failure safety, and `hiclust shard`."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hiclust.data import ImageDataset
from hiclust.data.shards import ShardImages, load_shards, write_shards
from hiclust.data.streaming import DiskRows


def _dataset(n: int = 37, channels: int = 3, labelled: bool = True, ids: bool = True, seed: int = 0,
             size: int = 8) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3 if labelled else None
    names = ["cat", "dog", "émeu"] if labelled else None
    item_ids = [f"class {i % 3}/img_{i}.png" for i in range(n)] if ids else None
    return ImageDataset(x, labels, names, "synthetic", item_ids)


class _TensorRows(DiskRows):
    """A tensor behind the DiskRows interface (a streamed dataset); ``fail_at``: raise when that row is read."""

    def __init__(self, x: torch.Tensor, fail_at: int | None = None) -> None:
        super().__init__(x.shape, torch.uint8)
        self.x, self.fail_at = x, fail_at

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        if self.fail_at is not None and (rows >= self.fail_at).any():
            raise OSError("disk vanished")
        return self.x[torch.from_numpy(rows)]


@pytest.mark.parametrize("channels,labelled,ids", [(3, True, True), (1, False, False), (1, True, False)])
def test_round_trip_png_exact(tmp_path, channels, labelled, ids):
    data = _dataset(channels=channels, labelled=labelled, ids=ids)
    out = tmp_path / "shards"
    done = write_shards(data, out, shard_size=10, progress=False)
    assert done["images"] == 37 and done["shards"] == 4
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json", "index.npz", "shard-000000.tar", "shard-000001.tar", "shard-000002.tar", "shard-000003.tar"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left

    # Every image exactly once, in row order, shard boundaries every 10 images.
    keys = []
    for s in range(4):
        with tarfile.open(out / f"shard-{s:06d}.tar") as tar:
            names = tar.getnames()
        imgs = [n for n in names if n.endswith(".png")]
        assert len(imgs) == (10 if s < 3 else 7)
        assert all(n.split(".", 1)[0].isdigit() for n in names)  # keys: row numbers, no dots
        assert sum(n.endswith(".cls") for n in names) == (len(imgs) if labelled else 0)
        assert sum(n.endswith(".id.txt") for n in names) == len(imgs)
        assert {n.split(".", 1)[1] for n in names} == ({"png", "cls", "id.txt"} if labelled else {"png", "id.txt"})
        keys += [int(n[:-4]) for n in imgs]
    assert keys == list(range(37))

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n"] == 37 and meta["image_shape"] == [channels, 8, 8] and meta["shards"] == 4
    assert meta["image_format"] == "png" and meta["name"] == "synthetic" and meta["hiclust_version"]

    back = load_shards(out, name="shards:x", max_memory=None)
    assert isinstance(back.images, torch.Tensor) and torch.equal(back.images, data.images)
    assert back.name == "shards:x"
    if labelled:
        assert torch.equal(back.labels, data.labels) and back.class_names == data.class_names
    else:
        assert back.labels is None and back.class_names is None
    assert back.item_ids == data.item_ids
    assert back.ids() == data.ids()


def test_index_offsets_match_tar_members(tmp_path):
    data = _dataset(n=23)
    write_shards(data, tmp_path / "s", shard_size=10, progress=False)
    index = np.load(tmp_path / "s" / "index.npz")
    for s in range(3):
        with tarfile.open(tmp_path / "s" / f"shard-{s:06d}.tar") as tar:
            members = {m.name: m for m in tar.getmembers()}
            for row in np.flatnonzero(index["shard"] == s):
                m = members[f"{row:06d}.png"]
                assert (m.offset_data, m.size) == (index["offset"][row], index["size"][row])
                assert tar.extractfile(members[f"{row:06d}.id.txt"]).read().decode() == data.item_ids[row]
                assert int(tar.extractfile(members[f"{row:06d}.cls"]).read()) == int(data.labels[row])


def test_random_access_order_and_streaming(tmp_path):
    data = _dataset(channels=3)
    write_shards(data, tmp_path / "s", shard_size=10, progress=False)
    rows = ShardImages(tmp_path / "s")
    assert rows.shape == (37, 3, 8, 8) and rows.dtype == torch.uint8
    assert "4 shards, 37 images under" in rows.describe()
    idx = np.random.default_rng(1).permutation(37)
    idx = np.concatenate([idx, idx[:5], [0, 36, 36]])  # repeats
    assert torch.equal(rows[idx], data.images[idx])
    assert torch.equal(rows[7], data.images[7]) and torch.equal(rows[-1], data.images[-1])
    assert torch.equal(rows[3:19], data.images[3:19])
    view = rows.take(idx[:12])
    assert torch.equal(view[::-1].flip(0), data.images[idx[:12]])

    # The DataLoader path (a worker process opens its own files) returns the same batches.
    batches = [idx[i : i + 8] for i in range(0, len(idx), 8)]
    got = list(rows.batches(batches, workers=1))
    assert all(torch.equal(g, data.images[b]) for g, b in zip(got, batches))


def test_load_streams_over_memory_budget(tmp_path):
    data = _dataset(channels=1, labelled=False, ids=False)
    write_shards(data, tmp_path / "s", shard_size=16, progress=False)
    streamed = load_shards(tmp_path / "s", name="shards", max_memory=37 * 64 - 1)
    assert isinstance(streamed.images, ShardImages) and streamed.is_streamed
    assert torch.equal(streamed.images.to_tensor(), data.images)
    in_memory = load_shards(tmp_path / "s", name="shards", max_memory=37 * 64)
    assert isinstance(in_memory.images, torch.Tensor)


def test_writes_from_a_streamed_dataset(tmp_path):
    x = _dataset(n=300, size=4).images  # more than one 256-row read batch
    data = ImageDataset(_TensorRows(x), None, None, "streamed")
    write_shards(data, tmp_path / "s", shard_size=128, progress=False)
    assert torch.equal(load_shards(tmp_path / "s", name="s", max_memory=None).images, x)


def test_jpeg_round_trip_close(tmp_path):
    # smooth images: JPEG is meant for photographs, not per-pixel noise
    yy, xx = np.mgrid[0:32, 0:32]
    base = np.stack([(xx * 8) % 256, (yy * 8) % 256, ((xx + yy) * 4) % 256]).astype(np.uint8)
    x = torch.from_numpy(np.stack([np.roll(base, k, axis=2) for k in range(12)]))
    data = ImageDataset(x, None, None, "smooth")
    write_shards(data, tmp_path / "j", shard_size=5, image_format="jpeg", quality=95, progress=False)
    assert json.loads((tmp_path / "j" / "dataset.json").read_text())["image_format"] == "jpg"
    with tarfile.open(tmp_path / "j" / "shard-000000.tar") as tar:
        assert any(n.endswith(".jpg") for n in tar.getnames())
    back = load_shards(tmp_path / "j", name="j", max_memory=None).images
    assert back.shape == x.shape
    assert (back.float() - x.float()).abs().mean() < 4.0


def test_refuses_non_empty_out_and_accepts_empty(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "theirs.txt").write_text("keep me")
    with pytest.raises(ValueError, match="empty or new directory"):
        write_shards(_dataset(), out, progress=False)
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--out"):
        write_shards(_dataset(), tmp_path / "file", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_shards(_dataset(), empty, progress=False)
    assert (empty / "dataset.json").is_file()


def test_failed_write_leaves_nothing(tmp_path):
    x = _dataset(n=600, size=4).images
    data = ImageDataset(_TensorRows(x, fail_at=300), None, None, "flaky")
    with pytest.raises(OSError, match="disk vanished"):
        write_shards(data, tmp_path / "out", shard_size=100, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither out nor a temporary directory


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--shard-size"):
        write_shards(_dataset(), tmp_path / "a", shard_size=0, progress=False)
    with pytest.raises(ValueError, match="--format"):
        write_shards(_dataset(), tmp_path / "a", image_format="gif", progress=False)
    with pytest.raises(ValueError, match="--quality"):
        write_shards(_dataset(), tmp_path / "a", image_format="jpg", quality=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_load_validates_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such shard directory"):
        load_shards(tmp_path / "nope", name="x", max_memory=None)
    write_shards(_dataset(), tmp_path / "s", shard_size=10, progress=False)
    (tmp_path / "s" / "shard-000002.tar").unlink()
    with pytest.raises(FileNotFoundError, match="shard-000002.tar"):
        load_shards(tmp_path / "s", name="x", max_memory=None)
    write_shards(_dataset(), tmp_path / "t", shard_size=10, progress=False)
    (tmp_path / "t" / "index.npz").unlink()
    with pytest.raises(FileNotFoundError, match="index.npz"):
        load_shards(tmp_path / "t", name="x", max_memory=None)
    write_shards(_dataset(), tmp_path / "u", shard_size=10, progress=False)
    (tmp_path / "u" / "dataset.json").unlink()
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        load_shards(tmp_path / "u", name="x", max_memory=None)
    (tmp_path / "u" / "dataset.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="does not describe hiclust shards"):
        load_shards(tmp_path / "u", name="x", max_memory=None)
    write_shards(_dataset(), tmp_path / "v", shard_size=10, progress=False)
    tar = tmp_path / "v" / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:2000])
    with pytest.raises(ValueError, match="shorter than index.npz"):
        load_shards(tmp_path / "v", name="x", max_memory=None)


def test_webdataset_reads_the_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    data = _dataset(n=12)
    write_shards(data, tmp_path / "s", shard_size=5, progress=False)
    urls = [str(tmp_path / "s" / f"shard-{i:06d}.tar") for i in range(3)]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8").to_tuple("png", "cls", "id.txt", "__key__"))
    assert [int(k) for *_, k in samples] == list(range(12))
    for img, cls, item_id, key in samples:
        i = int(key)
        assert np.array_equal(np.asarray(img).transpose(2, 0, 1), data.images[i].numpy())
        assert int(cls) == int(data.labels[i]) and item_id == data.item_ids[i]


# ----------------------------------------------------------------------------------------------
# hiclust shard
# ----------------------------------------------------------------------------------------------
@pytest.fixture()
def cli(monkeypatch):
    """``hiclust.cli.main`` with the shard command registered (as EXTENSIONS will list it)."""
    import hiclust.cli

    if "hiclust.shard_cli" not in hiclust.cli.EXTENSIONS:
        monkeypatch.setattr(hiclust.cli, "EXTENSIONS", [*hiclust.cli.EXTENSIONS, "hiclust.shard_cli"])
    return hiclust.cli.main


def _image_folder(root: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(3)
    images = {}
    for cls in ("cls_a", "cls_b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"im{i}.png")
            images[f"{cls}/im{i}.png"] = a
    return images


def test_cli_end_to_end(tmp_path, cli, capsys, monkeypatch):
    images = _image_folder(tmp_path / "photos")
    out = tmp_path / "shards"
    assert cli(["shard", f"folder:{tmp_path / 'photos'}", "--out", str(out), "--shard-size", "4"]) == 0
    line = capsys.readouterr().out.strip()
    assert "6 images" in line and "2 shard(s)" in line and str(out) in line
    back = load_shards(out, name="shards", max_memory=None)
    assert back.class_names == ["cls_a", "cls_b"] and back.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert back.item_ids == list(images)
    for i, key in enumerate(back.item_ids):
        assert np.array_equal(back.images[i].numpy().transpose(1, 2, 0), images[key])

    # a folder over --max-memory is streamed while it is written: same shards
    import hiclust.data.streaming as streaming

    import hiclust.data.shards as shards

    monkeypatch.setattr(streaming, "_SETTINGS", dict(streaming._SETTINGS))  # main() sets them process-wide
    seen = []
    real = shards.write_shards
    monkeypatch.setattr(shards, "write_shards", lambda data, *a, **k: seen.append(data.is_streamed) or real(data, *a, **k))
    assert cli(["shard", f"folder:{tmp_path / 'photos'}", "--out", str(tmp_path / "streamed"), "--shard-size", "4",
                "--max-memory", "1", "--workers", "0"]) == 0
    capsys.readouterr()
    assert seen == [True]
    again = load_shards(tmp_path / "streamed", name="shards", max_memory=None)
    assert torch.equal(again.images, back.images) and again.item_ids == back.item_ids

    # --image-size and jpg
    assert cli(["shard", f"folder:{tmp_path / 'photos'}", "--out", str(tmp_path / "small"), "--image-size", "4",
                "--format", "jpg", "--quality", "90"]) == 0
    assert load_shards(tmp_path / "small", name="s", max_memory=None).images.shape == (6, 3, 4, 4)


def test_streamed_folder_shards_like_the_in_memory_folder(tmp_path):
    from hiclust.data import load_dataset

    _image_folder(tmp_path / "photos")
    streamed = load_dataset(f"folder:{tmp_path / 'photos'}", split="all", max_memory=1, workers=0)
    assert streamed.is_streamed
    write_shards(streamed, tmp_path / "s", shard_size=4, progress=False)
    whole = load_dataset(f"folder:{tmp_path / 'photos'}", split="all", max_memory=None)
    back = load_shards(tmp_path / "s", name="s", max_memory=None)
    assert torch.equal(back.images, whole.images) and torch.equal(back.labels, whole.labels)
    assert back.item_ids == whole.item_ids and back.class_names == whole.class_names


def test_cli_bad_input_exit_2_before_writing(tmp_path, cli, capsys):
    _image_folder(tmp_path / "photos")
    src = f"folder:{tmp_path / 'photos'}"
    out = tmp_path / "shards"
    for flags, flag in ((["--shard-size", "0"], "--shard-size"), (["--quality", "50"], "--quality"),
                        (["--format", "jpg", "--quality", "101"], "--quality"), (["--image-size", "0"], "--image-size")):
        assert cli(["shard", src, "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hiclust shard: error:") and flag in err and "\n" not in err
        assert not out.exists()
    with pytest.raises(SystemExit) as e:  # argparse's choices
        cli(["shard", src, "--out", str(out), "--format", "gif"])
    assert e.value.code == 2
    out.mkdir()
    (out / "x").write_text("x")
    assert cli(["shard", src, "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["x"]
    assert cli(["shard", f"folder:{tmp_path / 'missing'}", "--out", str(tmp_path / "o2")]) == 2
    assert not (tmp_path / "o2").exists()
