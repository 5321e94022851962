"""Data streamed from disk (hiclust.data.streaming): the same rows, the same training run and
the same predictions as the in-memory path; memory-mapped features never held whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hiclust
from hiclust.cli import main as cli_main
from hiclust.data import load_dataset
from hiclust.data.datasets import CorruptImageError
from hiclust.data.streaming import (FolderImages, NpyRows, column_stats, configure, memory_budget,
                                    parse_memory)
from hiclust.runs import check_same_data, data_fingerprint, RunDirError
from hiclust.train import train_loop


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two classes of 24 random 10x10 grayscale PNGs (class 1 brighter) and one RGB class of 12."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir()
        for i in range(24):
            Image.fromarray((rng.random((10, 10)) * 90 + 140 * c).astype(np.uint8)).save(root / f"c{c}" / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    """RGB images of two sizes (resized on load) plus one grayscale file."""
    root = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(1)
    for i in range(10):
        size = (12, 12) if i % 2 else (15, 9)
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / f"{i:02d}.png")
    Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(root / "gray.png")
    return root


def _streamed(name: str, **kw):
    ds = load_dataset(name, max_memory=1, workers=kw.pop("workers", 0), **kw)
    assert ds.is_streamed
    return ds


def test_streamed_folder_has_the_in_memory_pixels_labels_and_ids(folder, colour_folder):
    mem, st = load_dataset(f"folder:{folder}"), _streamed(f"folder:{folder}")
    assert isinstance(st.images, FolderImages) and not mem.is_streamed
    assert st.images.shape == mem.images.shape and st.images.dtype == torch.uint8
    assert torch.equal(st.images.to_tensor(batch_size=7), mem.images)
    assert torch.equal(st.labels, mem.labels) and st.ids() == mem.ids() and st.class_names == mem.class_names
    # resized on decode exactly as in memory; the grayscale file repeated on 3 channels, with the same warning
    with pytest.warns(UserWarning, match="mixes 1 grayscale and 10 colour"):
        mem_c = load_dataset(f"folder:{colour_folder}", image_size=8)
    with pytest.warns(UserWarning, match="mixes 1 grayscale and 10 colour"):
        st_c = _streamed(f"folder:{colour_folder}", image_size=8)
    assert st_c.images.shape == (11, 3, 8, 8)
    assert torch.equal(st_c.images.to_tensor(), mem_c.images)
    # mixed sizes without an image size: the in-memory loader's refusal, before anything is decoded
    with pytest.raises(ValueError, match="different sizes.*image_size"):
        _streamed(f"folder:{colour_folder}")


def test_rows_index_like_a_tensor(folder):
    mem = load_dataset(f"folder:{folder}").images
    rows = _streamed(f"folder:{folder}").images
    idx = torch.tensor([5, 0, 47, 5, -1])
    assert torch.equal(rows[idx], mem[idx])
    assert torch.equal(rows[3], mem[3]) and torch.equal(rows[-2], mem[-2])
    assert torch.equal(rows[10:20:3], mem[10:20:3])
    mask = torch.zeros(48, dtype=torch.bool)
    mask[[1, 30]] = True
    assert torch.equal(rows[mask], mem[mask])
    view = rows.take(np.arange(20, 40)).take([3, 0])  # a view of a view: rows 23 and 20
    assert view.shape == (2, 1, 10, 10) and torch.equal(view[:], mem[[23, 20]])
    with pytest.raises(IndexError, match="in \\[-48, 48\\)"):
        rows[torch.tensor([48])]
    batches = list(rows.batches([np.array([4, 2]), np.array([9])], workers=1))  # through a worker process
    assert torch.equal(torch.cat(batches), mem[[4, 2, 9]])


def test_fit_on_streamed_images_equals_the_in_memory_fit(folder):
    """Same seed → the same batches, augmentations, losses and predictions (bit for bit)."""
    mem, st = load_dataset(f"folder:{folder}"), _streamed(f"folder:{folder}", workers=1)
    kw = dict(n_clusters=2, epochs=2, batch_size=16, random_state=3, verbose=False, device="cpu", backbone="mlp")
    a, b = hiclust.CoHiClust(**kw).fit(mem), hiclust.CoHiClust(**kw).fit(st)
    assert [r["loss"] for r in a.history_] == [r["loss"] for r in b.history_]
    assert np.array_equal(a.predict_proba(mem), b.predict_proba(st))
    assert np.array_equal(b.predict_proba(st), b.predict_proba(mem))  # a streamed model predicts in memory too
    assert np.array_equal(a.labels_, b.labels_)


def test_fit_on_memory_mapped_features_equals_the_in_memory_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float64)  # float64 on disk: converted per batch
    x[:100] += 4
    np.save(tmp_path / "f.npy", x)
    mem, st = load_dataset(f"features:{tmp_path / 'f.npy'}"), _streamed(f"features:{tmp_path / 'f.npy'}")
    assert isinstance(st.features, NpyRows) and st.features.shape == (200, 6)
    assert torch.equal(st.features[np.arange(200)], mem.features)
    # backbone and augmentation given: "auto" would cluster the 200 in-memory rows in their input
    # space, and train an MLP on neighbour views; both need every row at once (nearest neighbours)
    kw = dict(n_clusters=2, epochs=3, batch_size=32, random_state=0, verbose=False, device="cpu", backbone="mlp",
              augmentation="noise")
    a, b = hiclust.CoHiClust(**kw).fit(mem.features), hiclust.CoHiClust(**kw).fit(st.features)
    assert np.array_equal(a.predict_proba(mem.features), b.predict_proba(st.features))
    y = np.repeat([0, 1], 100)
    assert max(np.mean(b.labels_ == y), np.mean(b.labels_ != y)) > 0.95  # it learned the two groups


def test_column_stats_match_brute_force_and_name_bad_rows(tmp_path):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(301, 4)) * [1, 10, 1e-9, 3] + [0, 5, 1, -2]).astype(np.float32)
    mean, std = column_stats(torch.from_numpy(x), chunk=64)
    assert np.allclose(mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    ref = np.maximum(x.astype(np.float64).std(0, ddof=1), 1e-6)
    assert np.allclose(std.numpy(), ref, rtol=1e-5)
    x[250, 1] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(ValueError, match=r"NaN or infinite values \(row 250 \(0-based\)\)"):
        column_stats(NpyRows(tmp_path / "bad.npy"), chunk=64)


def test_a_file_that_breaks_while_streaming_is_named(folder, tmp_path):
    import shutil

    copy = tmp_path / "imgs"
    shutil.copytree(folder, copy)
    ds = _streamed(f"folder:{copy}")
    (copy / "c1" / "07.png").write_bytes(b"not a png any more")
    with pytest.raises(CorruptImageError, match="c1/07.png could not be read while streaming"):
        ds.images[torch.arange(48)]


def test_memory_sizes_and_the_budget():
    assert parse_memory("800M") == 800 * 2**20 and parse_memory("2GiB") == 2 * 2**30 and parse_memory(7) == 7
    assert parse_memory(None) is None and parse_memory("auto") == memory_budget() > 0
    for bad in ("12Q", "G", "--1G"):
        with pytest.raises(ValueError, match="cannot read the memory size"):
            parse_memory(bad)
    with pytest.raises(ValueError, match="cannot be negative, got '-1G'"):
        parse_memory("-1G")
    try:
        configure(max_memory="3K", workers=2)
        assert memory_budget() == 3072
    finally:
        configure()
    assert memory_budget() != 3072


def test_cli_refuses_a_bad_budget_before_writing(tmp_path, capsys, folder):
    out = tmp_path / "run"
    assert cli_main(["train", "--dataset", f"folder:{folder}", "--out", str(out), "--max-memory", "lots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-memory" in err[0] and "800M" in err[0]
    assert cli_main(["evaluate", str(tmp_path), "--workers", "-1"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not out.exists()


def _exit_status(argv: list[str]) -> int:
    """cli_main's status, or argparse's (it exits by itself on input it cannot parse)."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("flag, value", [("--max-memory", "-5G"), ("--max-memory", "-1"), ("--max-memory", "-0.5G"),
                                         ("--workers", "-5G"), ("--workers", "abc"), ("--workers", "2.5")])
@pytest.mark.parametrize("joined", [False, True])
def test_cli_refuses_negative_or_garbage_streaming_values_in_one_line(tmp_path, capsys, folder, flag, value, joined):
    """A value that starts with "-" given with a space is no option to argparse's usage dump: the
    flag's own one-line error, exit 2, nothing written."""
    out = tmp_path / "run"
    given = [f"{flag}={value}"] if joined else [flag, value]
    assert _exit_status(["train", "--dataset", f"folder:{folder}", "--out", str(out), *given]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hiclust train: error: {flag}") and repr(value) in err[0], err
    assert "usage:" not in err[0]
    assert not out.exists()


def test_cli_notes_streaming_on_stderr_only_when_it_streams(folder, tmp_path, capsys, monkeypatch):
    """One note on stderr, naming the size, the budget and --max-memory, when the data is over the
    budget; none when it fits, and none from the Python API."""
    import hiclust.data.streaming as streaming

    assert cli_main(["shard", f"folder:{folder}", "--out", str(tmp_path / "st"), "--max-memory", "1K",
                     "--workers", "0"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "streaming" in line]
    assert notes == [f"hiclust shard: note: folder:{folder} takes 4.7 KiB in memory, more than the memory budget of "
                     "1.0 KiB (--max-memory 1K); streaming it from disk a batch at a time (to hold it in memory "
                     "instead, raise --max-memory above 4.7 KiB)"]
    assert cli_main(["shard", f"folder:{folder}", "--out", str(tmp_path / "mem")]) == 0  # 4.7 KiB fits "auto"
    assert "streaming" not in capsys.readouterr().err
    np.save(tmp_path / "f.npy", np.ones((50, 4), dtype=np.float32))
    _streamed(f"features:{tmp_path / 'f.npy'}")  # the Python API stays silent, also after a command ran
    assert capsys.readouterr().err == ""
    # the default budget ("auto") is named as such: a machine with 4 KiB of memory for data
    monkeypatch.setattr(streaming, "memory_budget", lambda: 1024)
    assert cli_main(["shard", f"folder:{folder}", "--out", str(tmp_path / "auto"), "--workers", "0"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "streaming" in line]
    assert len(notes) == 1 and "budget of 1.0 KiB (--max-memory auto: a quarter of this machine's memory)" in notes[0]


def test_fingerprints_agree_between_streamed_and_in_memory(folder):
    mem, st = load_dataset(f"folder:{folder}"), _streamed(f"folder:{folder}")
    fm, fs = data_fingerprint(mem), data_fingerprint(st)
    assert "blake2b" in fm and "blake2b" not in fs  # streamed data is hashed on a sample of rows
    assert fm["sample_blake2b"] == fs["sample_blake2b"] and fm["n"] == fs["n"] == 48
    check_same_data(fm, st, "here")  # the same data either way
    other = load_dataset(f"folder:{folder}")
    other.images[47, 0, 0, 0] ^= 1  # row 47 is in the sample (the last row always is)
    with pytest.raises(RunDirError, match="other content"):
        check_same_data(fs, other, "here")


def test_train_loop_shards_each_global_batch_by_rank():
    """Rank r of W steps on rows [r·B/W, (r+1)·B/W) of every global batch: the ranks together see
    exactly the single-process batches."""
    data = torch.arange(40).float()[:, None]
    model = torch.nn.Linear(1, 1)
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: [], -1: []}

    def run(shard, key):
        def step(batch, epoch):
            seen[key].append(batch[:, 0].clone())
            return {"loss": model(batch).sum() * 0}

        train_loop(model, step, data, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
                   batch_size=8, shuffle_generator=torch.Generator().manual_seed(5), progress=False, shard=shard)

    run((0, 1), -1)
    run((0, 2), 0)
    run((1, 2), 1)
    for b, whole in enumerate(seen[-1]):
        assert torch.equal(torch.cat((seen[0][b], seen[1][b])), whole)


_RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    import hiclust
    from hiclust.data import load_dataset
    torch.set_num_threads(1)
    kw = dict(n_clusters=2, epochs=2, batch_size=256, random_state=0, verbose=False, device="cpu")
    # A first fit on 512 rows of the same width pays what any fit costs once (the allocator's
    # pools, autograd's buffers: ~250 MB here), so that what follows is what the data costs.
    hiclust.CoHiClust(**kw).fit(np.random.default_rng(0).normal(size=(512, int(sys.argv[2]))))
    def peak_kib():  # this process's own high-water mark (see the test's docstring)
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    base = peak_kib()
    ds = load_dataset("features:" + sys.argv[1], max_memory="8M")
    model = hiclust.CoHiClust(**kw)
    model.fit(ds.features)
    pred = model.predict(ds.features)
    peak = peak_kib()
    print(json.dumps({"base_kib": base, "peak_kib": peak, "streamed": ds.is_streamed, "n": int(pred.shape[0]),
                      "groups": int(np.unique(pred).size)}))
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_memory_mapped_features_are_never_held_whole(tmp_path):
    """An 80 MB .npy matrix (float64) trains and predicts while the process's peak resident memory
    grows by less than a quarter of the file's size (loaded whole it grows by 1.5×: the float32
    copy plus the mapped file while it is converted). The peak is /proc's VmHWM of the child
    process itself: ``resource``'s ru_maxrss survives ``exec``, so a child started by a large
    pytest process would report pytest's peak and the test could not fail."""
    n, d = 20_000, 500
    path = tmp_path / "big.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    rng = np.random.default_rng(0)
    for s in range(0, n, 5000):  # written in blocks: this test process never holds it either
        block = rng.normal(size=(5000, d))
        block[:, 0] += np.where(np.arange(s, s + 5000) % 2, 6.0, -6.0)
        arr[s : s + 5000] = block
    arr.flush()
    del arr
    size_kib = path.stat().st_size // 1024
    # A fixed malloc mmap threshold: glibc's default raises it as large blocks are freed, after
    # which freed batch buffers stay in the heap and the peak drifts by tens of MB run to run.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path), str(d)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["streamed"] and res["n"] == n and res["groups"] == 2
    grown = res["peak_kib"] - res["base_kib"]
    assert grown < size_kib / 4, f"peak RSS grew by {grown} KiB for a {size_kib} KiB file"


def test_cli_run_on_a_streamed_folder_equals_the_in_memory_run(folder, tmp_path, capsys):
    """`hiclust train` with --max-memory below the folder's size: the same metrics, assignments
    and tree as the in-memory run; evaluate and report read the streamed data too."""
    common = ["train", "--dataset", f"folder:{folder}", "--n-clusters", "2", "--epochs", "2", "--batch-size", "16",
              "--backbone", "mlp", "--threads", "1"]
    assert cli_main([*common, "--out", str(tmp_path / "mem")]) == 0
    assert cli_main([*common, "--out", str(tmp_path / "st"), "--max-memory", "1K", "--workers", "1"]) == 0
    for name in ("metrics.json", "assignments.csv"):
        assert (tmp_path / "mem" / name).read_text() == (tmp_path / "st" / name).read_text()
    run = json.loads((tmp_path / "st" / "run.json").read_text())
    assert "blake2b" not in run["data"] and run["data"]["n"] == 48  # recorded as streamed data
    assert cli_main(["evaluate", str(tmp_path / "st"), "--max-memory", "1K"]) == 0
    mem_eval = json.loads((tmp_path / "st" / "evaluation.json").read_text())
    assert cli_main(["evaluate", str(tmp_path / "st")]) == 0  # the same run read in memory
    assert json.loads((tmp_path / "st" / "evaluation.json").read_text()) == mem_eval
    assert cli_main(["report", str(tmp_path / "st"), "--max-memory", "1K", "--no-figures"]) == 0
    assert (tmp_path / "st" / "report.html").stat().st_size > 1000
