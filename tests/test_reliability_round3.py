"""The last rows of issue 10's reliability round: Ctrl-C during training, bench outputs and
flags, one-line refusals and warnings, image folders that mix colour or link to themselves,
file modes and atomic pictures, and a ``hiclust --help`` that does not import torch.

Each table row names the error type (or exit status), a phrase of the message, and checks that
nothing was written or lost. Runs are tiny CoHiClust fits on a 60 x 4 feature matrix, except the
one real Ctrl-C, which trains on a folder of 8x8 digit images in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hiclust import cli
from hiclust.checkpoint import FORMAT, CheckpointError, atomic_write_text, load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
FEAT = ["--n-clusters", "3", "--batch-size", "8", "--device", "cpu", "--seed", "0"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` (hidden ones included) → hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def blobs(n: int = 60, d: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(3, d)) * 4)[np.arange(n) % 3] + rng.normal(size=(n, d))


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# ------------------------------------------------------------------ bad input: one table
def _inputs(d: Path, tmp: Path) -> None:
    np.save(d / "x.npy", blobs())
    (d / "file.txt").write_text("not a directory")
    (d / "loop_only").mkdir()
    (d / "loop_only" / "loop").symlink_to(d / "loop_only", target_is_directory=True)
    for name, content in (("results.jsonl", '{"method": "kmeans"}\n'), ("autoencoder.pt", "weights")):
        (tmp / f"bench_{name}").mkdir()
        (tmp / f"bench_{name}" / name).write_text(content)
    ok = tmp / "ok_run"
    ok.mkdir()
    (ok / "run.json").write_text(json.dumps({"method": "cohiclust", "dataset": "digits", "params": {"n_clusters": 3}}))
    evil = tmp / "evil_run"
    evil.mkdir()
    (evil / "run.json").write_text((ok / "run.json").read_text())
    torch.save({"format": FORMAT, "model_class": "CoHiClust", "config_json": "{}",
                "state": {"model": _Payload(tmp / "pwned")}}, evil / "model.pt")


BENCH = ["bench", "--dataset", "digits", "--methods", "kmeans"]
# (id, argv with {in}/{tmp}, error type, regex of the message)
ROUND3 = [
    ("bench-out-holds-results", [*BENCH, "--out", "{tmp}/bench_results.jsonl"], ValueError,
     r"already holds bench results \(results\.jsonl\); choose a new --out"),
    ("bench-out-holds-autoencoder", [*BENCH, "--out", "{tmp}/bench_autoencoder.pt"], ValueError,
     r"already holds bench results \(autoencoder\.pt\)"),
    ("bench-out-is-a-file", [*BENCH, "--out", "{in}/file.txt"], ValueError, r"--out .*file\.txt is a file"),
    ("bench-epochs-0", [*BENCH, "--epochs", "0", "--out", "{tmp}/new_bench"], ValueError,
     r"--epochs must be a positive number of epochs, got 0"),
    ("report-out-is-a-directory", ["report", "{tmp}/ok_run", "--out", "{in}"], IsADirectoryError,
     r"--out .* is a directory; give a file name, e\.g\. --out .*report\.html"),
    ("tree-out-is-a-directory", ["tree", "{tmp}/ok_run", "--out", "{in}"], IsADirectoryError,
     r"--out .* is a directory; give a file name, e\.g\. --out .*tree\.png"),
    ("predict-out-is-a-directory", ["predict", "{tmp}/ok_run", "--input", "{in}/x.npy", "--out", "{in}"],
     IsADirectoryError, r"--out .* is a directory"),
    ("model-needs-unsafe-unpickling", ["evaluate", "{tmp}/evil_run", "--device", "cpu"], CheckpointError,
     r"model\.pt holds objects other than tensors and plain data \(.*posix\.mkdir.*\); it was refused without "
     r"being executed"),
    ("folder-whose-only-subfolder-links-to-itself", ["train", "--dataset", "folder:{in}/loop_only", *FEAT],
     ValueError, r"loop_only contains no image files"),
]


def _argv(argv: list[str], d: Path, tmp: Path) -> list[str]:
    argv = [a.format(**{"in": d, "tmp": tmp}) for a in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp / "out")]
    return argv


@pytest.mark.parametrize("argv,exc,message", [c[1:] for c in ROUND3], ids=[c[0] for c in ROUND3])
def test_round3_bad_input_one_clear_error_nothing_written(argv, exc, message, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    _inputs(d, tmp_path)
    monkeypatch.setenv("HICLUST_DEBUG", "1")  # re-raise, to check the type
    before = snapshot(tmp_path)
    with pytest.raises(exc, match=message):
        cli.main(_argv(argv, d, tmp_path))
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists() and not (tmp_path / "new_bench").exists()
    assert not (tmp_path / "pwned").exists()


def test_round3_every_row_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    _inputs(d, tmp_path)
    monkeypatch.delenv("HICLUST_DEBUG", raising=False)
    for name, argv, _, message in ROUND3:
        assert cli.main(_argv(argv, d, tmp_path)) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"hiclust {argv[0]}: error: "), (name, err)
        assert "Traceback" not in err and "weights_only" not in err, name


# ------------------------------------------------------------------ Ctrl-C during train
def _signal_at_epoch(monkeypatch, epoch: int, times: int) -> None:
    """Sends ``times`` SIGINTs to this process when the history record of ``epoch`` is emitted."""
    from hiclust.methods.base import DeepClusterer

    emit = DeepClusterer._emit
    outside = signal.getsignal(signal.SIGINT)

    def emit_and_interrupt(self, record, **kwargs):
        emit(self, record, **kwargs)
        if record.get("epoch") == epoch:
            # without hiclust's handler a SIGINT would stop the test session itself
            assert signal.getsignal(signal.SIGINT) is not outside, "no Ctrl-C handler during training"
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(DeepClusterer, "_emit", emit_and_interrupt)


# (id, Ctrl-Cs at epoch 2, extra argv, message regex, epoch of the checkpoint left)
CTRL_C = [
    ("one-ctrl-c-checkpoints-the-epoch", 1, ["--checkpoint-every", "100"],
     r"interrupted; checkpoint written after epoch 2 \(.*checkpoint\.pt\); continue with: hiclust train --resume ", 2),
    ("second-ctrl-c-stops-now-keeping-the-last", 2, ["--checkpoint-every", "1"],
     r"interrupted; the last checkpoint was kept \(.*checkpoint\.pt, after epoch 1\); continue with: "
     r"hiclust train --resume ", 1),
]


@pytest.mark.parametrize("times,extra,message,epoch", [c[1:] for c in CTRL_C], ids=[c[0] for c in CTRL_C])
def test_ctrl_c_in_train_exits_130_with_one_resume_line(times, extra, message, epoch, tmp_path, capsys,
                                                        monkeypatch):
    np.save(tmp_path / "x.npy", blobs())
    out = tmp_path / "run"
    # one tree draw: with several, a Ctrl-C inside the search goes back to its start (tests/test_tree_draws.py)
    argv = ["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *FEAT, "--epochs", "5", "--tree-draws", "1", *extra,
            "--out", str(out)]
    _signal_at_epoch(monkeypatch, 2, times)
    assert cli.main(argv) == 130
    lines = capsys.readouterr().err.splitlines()
    resume = [line for line in lines if "--resume" in line]
    assert len(resume) == 1 and resume[0] == lines[-1] and not any("Traceback" in line for line in lines)
    import re

    assert re.fullmatch(r"hiclust train: " + message + re.escape(str(out)), lines[-1]), lines[-1]
    _, state = load_checkpoint(out / "checkpoint.pt", expected_class="CoHiClust")
    assert state["progress"]["epoch"] == epoch and not (out / "model.pt").exists()
    assert not (out / ".hiclust.lock").exists()
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(out)]) == 0  # the printed command goes on
    assert f"hiclust train: resuming {out} after epoch {epoch}, to epoch 5" in capsys.readouterr().err
    assert (out / "model.pt").exists() and len((out / "history.jsonl").read_text().splitlines()) == 5


def test_ctrl_c_during_overwrite_leaves_the_old_run(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "x.npy", blobs())
    out = tmp_path / "run"
    argv = ["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *FEAT, "--epochs", "3", "--out", str(out)]
    assert cli.main(argv) == 0
    before = snapshot(out)
    _signal_at_epoch(monkeypatch, 1, 1)
    assert cli.main([*argv[:-4], "--epochs", "4", "--out", str(out), "--overwrite"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"hiclust train: interrupted; the run in {out} was left as it was (run the same command again to replace it)")
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run", "x.npy"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_refused_train_leaves_a_stale_lock_as_it_was(tmp_path, capsys):
    # A directory that is not a run, holding the lock of a killed training: train refuses it and
    # must not change it (it used to take the stale lock over and then remove it).
    np.save(tmp_path / "x.npy", blobs())
    out = tmp_path / "notarun"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / ".hiclust.lock").write_text(str(_dead_pid()))
    before = snapshot(out)
    argv = ["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *FEAT, "--epochs", "3", "--out", str(out)]
    assert cli.main(argv) == 2
    assert "is not empty (and is not a hiclust run)" in capsys.readouterr().err
    assert snapshot(out) == before


def _png(path: Path, a: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(a).save(path)


@pytest.mark.slow
def test_real_sigint_on_a_folder_run_then_resume(tmp_path):
    """``python -m hiclust train`` on an image folder with a truncated file, one colour image and
    a link to itself: each warning is one clean line; SIGINT after the first epoch gives a
    checkpoint, one line with the --resume command, status 130; the command then goes on."""
    from sklearn.datasets import load_digits

    x = np.rint(load_digits().images[:160] * (255 / 16)).astype(np.uint8)
    folder = tmp_path / "digits"
    folder.mkdir()
    for i, a in enumerate(x):
        _png(folder / f"d{i:03d}.png", a)
    _png(folder / "d999_colour.png", np.stack([x[0], x[1], x[2]], axis=2))
    (folder / "cut.png").write_bytes((folder / "d000.png").read_bytes()[:30])
    (folder / "self").symlink_to(folder, target_is_directory=True)
    out = tmp_path / "run"
    args = ["train", "--dataset", f"folder:{folder}", "--backbone", "smallcnn", "--n-clusters", "3", "--depth", "2",
            "--epochs", "300", "--pretrain-epochs", "1", "--prune-start", "2", "--batch-size", "40", "--device", "cpu", "--threads", "1",
            "--checkpoint-every", "1000", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("HICLUST_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "hiclust", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    history = out / "history.jsonl"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not (history.exists() and history.read_text()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    lines = err.splitlines()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "UserWarning" not in err and "warnings.warn" not in err
    warned = [line for line in lines if "warning:" in line]
    assert [w.split(": ")[2].split()[0] for w in warned] == ["skipped", "skipped", folder.as_posix()], warned
    assert all(w.startswith("hiclust train: warning: ") for w in warned)
    assert "self in" in warned[0] and "cut.png" in warned[1] and "--strict" in warned[1]
    assert "the colour file(s): d999_colour.png" in warned[2]
    assert lines[-1].startswith("hiclust train: interrupted; checkpoint written after epoch ")
    assert lines[-1].endswith(f"continue with: hiclust train --resume {out}")
    assert sum("--resume" in line for line in lines) == 1
    _, state = load_checkpoint(out / "checkpoint.pt", expected_class="CoHiClust")
    stopped = state["progress"]["epoch"]
    assert stopped >= 1 and not (out / "model.pt").exists()
    mode = 0o666 & ~umask()  # run files follow the umask (not mkstemp's 0600)
    assert all(stat.S_IMODE((out / f).stat().st_mode) == mode for f in ("run.json", "checkpoint.pt", "history.jsonl"))
    # the printed command goes on (a shorter run here: --epochs may change on resume, down to the
    # run's last pruning, after epoch 3)
    epochs = max(stopped + 1, 3)
    with pytest.warns(UserWarning):
        assert cli.main(["train", "--resume", str(out), "--epochs", str(epochs)]) == 0
    assert (out / "model.pt").exists() and len(history.read_text().splitlines()) == epochs
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["n"] == 161 and run["data"]["shape"] == [3, 8, 8]


def test_stop_request_needs_a_first_ctrl_c_and_a_second_stops_at_once(capsys):
    from hiclust.interrupt import stop_at_epoch_boundary, stop_requested

    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with stop_at_epoch_boundary("finishing the epoch"):
            assert signal.getsignal(signal.SIGINT) is not previous
            signal.raise_signal(signal.SIGINT)
            assert stop_requested() and capsys.readouterr().err == "finishing the epoch\n"
            signal.raise_signal(signal.SIGINT)
    assert not stop_requested() and signal.getsignal(signal.SIGINT) is previous


# ------------------------------------------------------------------ image folders
def test_colour_image_in_a_grayscale_folder_is_named_and_loaded_consistently(tmp_path):
    from hiclust.data import load_dataset

    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    for i in range(3):
        _png(tmp_path / f"g{i}.png", g + i)
    rgb = np.stack([g, g * 2, g * 3], axis=2)
    _png(tmp_path / "colour.png", rgb)
    with pytest.warns(UserWarning, match=r"mixes 3 grayscale and 1 colour images: all were loaded as RGB .* the "
                                         r"colour file\(s\): colour\.png \(convert"):
        ds = load_dataset(f"folder:{tmp_path}")
    assert ds.images.shape == (4, 3, 4, 5)
    np.testing.assert_array_equal(ds.images[0].numpy(), np.stack([rgb[..., c] for c in range(3)]))
    np.testing.assert_array_equal(ds.images[1].numpy(), np.stack([g] * 3))  # grayscale repeated, nothing lost


def test_folder_link_to_itself_or_above_is_not_a_class(tmp_path):
    from hiclust.data import load_dataset
    from hiclust.report.cli import _folder_files

    root = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            _png(root / cls / f"{i}.png", np.full((4, 4), 60 * i, np.uint8))
    (root / "again").symlink_to(root, target_is_directory=True)
    (root / "dog" / "up").symlink_to(tmp_path, target_is_directory=True)  # a loop below a class: not followed
    with pytest.warns(UserWarning, match=r"skipped again in .*pets: a link to the folder itself"):
        ds = load_dataset(f"folder:{root}")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 4
    assert _folder_files(root) == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]


# ------------------------------------------------------------------ files: modes, atomic pictures
def test_atomic_writes_follow_the_umask_and_keep_a_replaced_files_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640
        (tmp_path / "mine.json").write_text("x")
        os.chmod(tmp_path / "mine.json", 0o604)
        atomic_write_text(tmp_path / "mine.json", "y")
        assert stat.S_IMODE((tmp_path / "mine.json").stat().st_mode) == 0o604
    finally:
        os.umask(old)


def test_pictures_are_written_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from hiclust.report import tree_plot

    fig = tree_plot._new_figure(1, 1)
    tree_plot._save(fig, tmp_path / "tree.png", 50)
    assert (tmp_path / "tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = snapshot(tmp_path)

    def torn(self, fname, **kwargs):
        fname.write(b"\x89PNG half a picture")
        raise OSError("killed while drawing")

    monkeypatch.setattr(Figure, "savefig", torn)
    with pytest.raises(OSError, match="killed while drawing"):
        tree_plot._save(fig, tmp_path / "tree.png", 50)
    assert snapshot(tmp_path) == before  # the old picture, and no temporary file


# ------------------------------------------------------------------ bench --epochs, --threads
def test_bench_epochs_sets_every_deep_methods_epochs(tmp_path, capsys):
    from hiclust.bench import with_epochs

    out = tmp_path / "bench"
    assert cli.main(["bench", "--dataset", "digits", "--methods", "cc", "--epochs", "1", "--device", "cpu",
                     "--out", str(out)]) == 0
    record = json.loads((out / "results.jsonl").read_text())
    assert record["params"]["epochs"] == 1 and record["preset"] == "cc_digits"
    # CoHiClust's pre-training keeps its share and leaves room for the prunings; --set wins
    assert with_epochs("cohiclust", {"n_clusters": 3, "depth": 2, "epochs": 100, "pretrain_epochs": 40,
                                     "prune_start": 60}, 10) == {"n_clusters": 3, "depth": 2, "epochs": 10,
                                                                  "pretrain_epochs": 4}
    parser = cli.build_parser()
    assert parser.parse_args(["bench", "--dataset", "d", "--out", "o", "--threads", "2"]).threads == 2
    assert parser.parse_args(["flat-table", "table", "runs", "--threads", "1"]).threads == 1


# ------------------------------------------------------------------ a light --help
def test_cli_module_and_help_do_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "import hiclust.cli as c\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
            "    try:\n"
            "        c.main(['--help'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0\n"
            "assert 'train' in f.getvalue() and 'bench' in f.getvalue()\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'matplotlib', 'sklearn') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    # the train flags are still there when asked for
    assert "--batch-size" in cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()


@pytest.mark.parametrize("argv", [
    ["predict", "RUN", "--input", "in.npy", "--out", "OUT"],
    ["tree", "RUN", "--out", "OUT"],
    ["report", "RUN", "--out", "OUT"],
])
def test_an_existing_out_file_is_never_replaced_without_overwrite(argv, tmp_path, capsys):
    from hiclust import cli as hcli

    out = tmp_path / "mine.txt"
    out.write_text("the user's own file")
    run = tmp_path / "run"  # a run directory, enough for the checks that come before the model loads
    run.mkdir()
    (run / "run.json").write_text('{"method": "cohiclust", "dataset": "digits"}')
    args = [str(run) if a == "RUN" else str(out) if a == "OUT" else a for a in argv]
    assert hcli.main(args) == 2
    assert "already exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "the user's own file"
    assert hcli.main(args + ["--overwrite"]) == 2  # accepted; now it is the missing model that stops it
    assert "already exists" not in capsys.readouterr().err and out.read_text() == "the user's own file"
    # a missing run is named before the --out it would have written
    missing = [str(tmp_path / "no-run") if a == str(run) else a for a in args]
    assert hcli.main(missing) == 2
    err = capsys.readouterr().err
    assert "is not a hiclust run directory" in err and "already exists" not in err
