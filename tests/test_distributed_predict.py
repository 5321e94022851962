"""`hiclust predict` on shard directories, and split over torchrun ranks (gloo on CPU).

One tiny run is trained once (41 random 8x8 PNGs in two class folders: an odd count, so the
ranks' blocks are uneven) and written as shards. One torchrun launch (2 processes running this
file as a script, see the ``__main__`` block) runs several predicts through ``hiclust.cli.main``
in the same process group: streamed shards, a one-row input (rank 1 gets no rows), and a
failure on rank 1 alone before and after the first collective (both ranks must exit with an
error, not hang). Each rank records its exit codes, what it printed and what it wrote.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORLD = 2
N_IMAGES = 41
LAUNCH_TIMEOUT_S = 240


# ------------------------------------------------------------------------------ worker side
def _worker(out: Path, run: str, shards: str, one: str) -> None:
    import hiclust.cli as cli
    import hiclust.report.cli as report_cli
    from hiclust import distributed as D

    assert D.init_from_env() and D.world_size() == WORLD  # one group for every predict below
    rank = D.rank()
    writes: list[str] = []
    root = str(out.parent)

    def audit(event: str, args: tuple) -> None:
        # Every file this rank creates, opens for writing, renames or removes under the test's folder.
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and path.startswith(root):
                writes.append(path)
        elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.unlink", "shutil.rmtree"):
            writes.extend(p for p in (os.fsdecode(a) for a in args if isinstance(a, (str, bytes, os.PathLike)))
                          if p.startswith(root))

    def predict(*argv: str) -> dict:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["predict", run, *argv, "--threads", "1"])
        return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}

    results: dict = {}
    sys.addaudithook(audit)
    results["shards"] = predict("--input", shards, "--out", str(out / "preds.csv"), "--max-memory", "1K",
                                "--workers", "1")
    results["one"] = predict("--input", one, "--out", str(out / "one.csv"))

    # rank 1 alone fails while loading (before any collective), then while predicting (after one)
    original_load, original_table = report_cli.load_prediction_input, report_cli.predict_table

    def failing_load(*a, **k):
        raise OSError("the disk vanished on rank 1")

    def failing_table(*a, **k):
        raise RuntimeError("the network broke on rank 1")

    if rank == 1:
        report_cli.load_prediction_input = failing_load
    results["fail_load"] = predict("--input", shards, "--out", str(out / "fail_load.csv"), "--max-memory", "1K")
    report_cli.load_prediction_input = original_load
    if rank == 1:
        report_cli.predict_table = failing_table
    results["fail_predict"] = predict("--input", shards, "--out", str(out / "fail_predict.csv"), "--max-memory", "1K")
    report_cli.predict_table = original_table
    results["writes"] = writes[:]
    (out.parent / f"rank{rank}.json").write_text(json.dumps(results))


# ------------------------------------------------------------------------------ test side
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Image folder (41 PNGs, classes a/ and b/), a run trained on it, and its shards."""
    from PIL import Image

    import hiclust.cli as cli

    tmp = tmp_path_factory.mktemp("dpredict")
    rng = np.random.default_rng(0)
    imgs = tmp / "imgs"
    for i in range(N_IMAGES):
        cls = "ab"[i % 2]
        (imgs / cls).mkdir(parents=True, exist_ok=True)
        pixels = np.clip(rng.normal(70 if cls == "a" else 180, 50, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(imgs / cls / f"img {i:02d}.png")
    run, shards = tmp / "run", tmp / "shards"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--dataset", f"folder:{imgs}", "--n-clusters", "2", "--epochs", "2",
                         "--batch-size", "8", "--out", str(run)]) == 0
        assert cli.main(["shard", f"folder:{imgs}", "--out", str(shards), "--shard-size", "10"]) == 0
    one = tmp / "one.npy"
    np.save(one, rng.integers(0, 256, (1, 8, 8), dtype=np.uint8))
    return {"tmp": tmp, "imgs": imgs, "run": run, "shards": shards, "one": one}


def _predict(run: Path, *argv: str) -> str:
    import hiclust.cli as cli
    from hiclust.data.streaming import configure

    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert cli.main(["predict", str(run), *argv]) == 0
    finally:
        configure()  # --max-memory / --workers are process-wide: back to the defaults
    return printed.getvalue()


@pytest.fixture(scope="module")
def single(trained) -> dict[str, bytes]:
    """Single-process predictions (the reference): folder, shards, shards streamed, one row."""
    tmp, run = trained["tmp"], trained["run"]
    out = {}
    for key, argv in {
        "folder": ["--input", str(trained["imgs"])],
        "shards": ["--input", str(trained["shards"])],
        "streamed": ["--input", str(trained["shards"]), "--max-memory", "1K", "--workers", "0"],
        "one": ["--input", str(trained["one"])],
    }.items():
        printed = _predict(run, *argv, "--out", str(tmp / f"single_{key}.csv"))
        assert printed.startswith(f"wrote {tmp / f'single_{key}.csv'}: ")
        out[key] = (tmp / f"single_{key}.csv").read_bytes()
    return out


def test_shard_directory_predicts_like_the_folder(trained, single):
    import csv

    from hiclust.data import load_dataset
    from hiclust.report.cli import load_prediction_input

    assert single["shards"] == single["folder"] == single["streamed"]
    rows = list(csv.DictReader(io.StringIO(single["shards"].decode())))
    assert len(rows) == N_IMAGES
    names = sorted(f"{'ab'[i % 2]}/img {i:02d}.png" for i in range(N_IMAGES))
    assert [r["input"] for r in rows] == names  # class folders in order, files sorted within
    assert [r["label"] for r in rows] == [n[0] for n in names]
    data, ids = load_prediction_input(trained["shards"])
    assert ids == names and data.class_names == ["a", "b"]
    streamed = load_dataset(f"shards:{trained['shards']}", split="all", max_memory=1024)
    assert streamed.is_streamed  # --max-memory 1K streams these 41 images


@pytest.fixture(scope="module")
def torchrun(trained) -> list[dict]:
    tmp = trained["tmp"]
    out = tmp / "ranks"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    env.pop("HICLUST_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--max_restarts=0",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(Path(__file__).resolve()), str(out),
           str(trained["run"]), str(trained["shards"]), str(trained["one"])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks (a hung collective)
        log, _ = proc.communicate()
        pytest.fail(f"torchrun predict did not finish in {LAUNCH_TIMEOUT_S} s (hung collective?):\n{log[-6000:]}")
    assert proc.returncode == 0, f"torchrun predict failed:\n{log[-6000:]}"
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_torchrun_predict_writes_the_single_process_csv(trained, single, torchrun):
    out = trained["tmp"] / "ranks"
    for key, reference in (("shards", single["streamed"]), ("one", single["one"])):
        assert [r[key]["code"] for r in torchrun] == [0, 0], [r[key]["stderr"] for r in torchrun]
        assert (out / f"{key if key == 'one' else 'preds'}.csv").read_bytes() == reference, key
    # only rank 0 prints the summary and writes, through a temporary file renamed over --out
    first = torchrun[0]["shards"]["stdout"]
    assert first.startswith(f"wrote {out / 'preds.csv'}: {N_IMAGES} rows;"), first
    assert all(r[k]["stdout"] == "" for r in torchrun[1:] for k in ("shards", "one"))
    assert torchrun[1]["writes"] == []
    written = {Path(p).name for p in torchrun[0]["writes"] if Path(p) != out}  # (mkdir -p of --out's folder)
    assert {"preds.csv", "one.csv"} <= written
    assert {n for n in written if not n.endswith(".tmp")} == {"preds.csv", "one.csv"}
    assert sorted(p.name for p in out.iterdir()) == ["one.csv", "preds.csv"]  # no temporary file left


def test_a_failure_on_one_rank_ends_every_rank(torchrun):
    for key, message in (("fail_load", "OSError: the disk vanished on rank 1"),
                         ("fail_predict", "RuntimeError: the network broke on rank 1")):
        assert [r[key]["code"] for r in torchrun] == [2, 2], key
        assert f"rank 1 of 2 failed: {message}" in torchrun[0][key]["stderr"], torchrun[0][key]["stderr"]
        assert message.split(": ", 1)[1] in torchrun[1][key]["stderr"]
        assert all(r[key]["stdout"] == "" for r in torchrun)


if __name__ == "__main__":  # one torchrun rank: OUT RUN SHARDS ONE_NPY
    _worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
    from hiclust import distributed as _D

    _D.shutdown()  # both ranks done: leave the group before exit (see hiclust.distributed.shutdown)
