"""tree_draws: several random draws of the tree head trained from the end of pre-training, the
one with the most even leaves kept (docs/methods.md, "Tree draws"). Tiny MLP fits on blobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiclust import CoHiClust, interrupt


def blobs(n: int = 120, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return ((rng.normal(size=(3, d)) * 3)[np.arange(n) % 3] + rng.normal(size=(n, d))).astype(np.float32)


PARAMS = dict(n_clusters=3, depth=2, backbone="mlp", epochs=8, pretrain_epochs=2, prune_start=3, batch_size=32,
              augmentation="noise", verbose=False, seed=3)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model_.state_dict().items()}


def test_the_draw_with_the_smallest_largest_leaf_trains_on(capsys):
    seen = []
    model = CoHiClust(**{**PARAMS, "verbose": True}, tree_draws=3, draw_epochs=3).fit(blobs(), callback=seen.append)
    # every draw trained epochs 3..5 (a pruning at the end of epoch 4), then the chosen one 6..8
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8]
    assert [r.get("tree_draw") for r in seen[2:11]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    ends = [seen[i]["leaf_mass"] for i in (4, 7, 10)]
    masses = [max(m) for m in ends]
    assert model.tree_draw_masses_ == pytest.approx(masses, abs=1e-5)
    assert model.tree_draw_ == int(np.argmin(masses)) and model.tree_draw_within_ss_ is None
    # the model's history is the chosen draw's: epochs 1..8 once each
    assert [h["epoch"] for h in model.history_] == list(range(1, 9))
    assert all(h.get("tree_draw") == model.tree_draw_ for h in model.history_[2:5])
    assert len(model.pruned_leaves_) == 1 and model.hierarchy_.n_leaves == 3
    # the log names the draws' masses and the one kept
    shown = " / ".join(f"{m:.3f}" for m in masses)
    kept = model.tree_draw_
    assert (f"[CoHiClust] tree draws: largest leaf mass {shown} at epoch 5; kept draw {kept} (numbered from 0; "
            f"mass {model.tree_draw_masses_[kept]:.3f}), epochs 6-8 go on from it") in capsys.readouterr().err
    assert masses[kept] == min(masses)


def test_draws_restart_from_exactly_the_pretrained_state(monkeypatch):
    """With the redraw disabled every draw repeats draw 0, ties go to draw 0, and the fit ends
    bit for bit where a single draw ends: the snapshot restores weights, optimizer, random
    streams and pruning state completely."""
    single = CoHiClust(**PARAMS).fit(blobs())
    monkeypatch.setattr(CoHiClust, "_redraw_tree", lambda self, draw: None)
    repeated = CoHiClust(**PARAMS, tree_draws=3, draw_epochs=3).fit(blobs())
    assert repeated.tree_draw_ == 0 and len(set(repeated.tree_draw_masses_)) == 1
    a, b = weights(single), weights(repeated)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(single.labels_, repeated.labels_) and single.pruned_leaves_ == repeated.pruned_leaves_


def test_fresh_draws_differ_and_leave_the_data_stream_alone():
    model = CoHiClust(**PARAMS, tree_draws=2, draw_epochs=3)
    model.fit(blobs())
    assert len(model.tree_draw_masses_) == 2 and model.tree_draw_masses_[0] != model.tree_draw_masses_[1]


def test_ctrl_c_during_the_search_stops_at_the_epoch_and_resumes_to_the_same_model(tmp_path, capsys):
    whole = CoHiClust(**PARAMS, tree_draws=3, draw_epochs=3).fit(blobs())
    ckpt = tmp_path / "ckpt.pt"

    def ctrl_c_in_draw_1(record):
        if record.get("tree_draw") == 1:
            interrupt._stop.set()

    model = CoHiClust(**{**PARAMS, "verbose": True}, tree_draws=3, draw_epochs=3)
    try:
        with pytest.raises(interrupt.TrainingInterrupted) as stopped:
            model.fit(blobs(), checkpoint=ckpt, callback=ctrl_c_in_draw_1)
    finally:
        interrupt._stop.clear()
    # at the end of that epoch, with the checkpoint of the end of pre-training: the search starts again
    assert stopped.value.progress == {"phase": "train", "epoch": 2}
    # and the log says that the search's epochs are not kept
    assert ("tree draws: stopped in draw 1 of 3; the search keeps no checkpoint of its own, so a resume searches "
            "again from epoch 2") in capsys.readouterr().err
    resumed = CoHiClust(**PARAMS, tree_draws=3, draw_epochs=3).fit(blobs(), checkpoint=ckpt, resume=True)
    assert resumed.tree_draw_ == whole.tree_draw_ and resumed.tree_draw_masses_ == whole.tree_draw_masses_
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_draws_refuse_a_cosine_schedule():
    with pytest.raises(ValueError, match="tree_draws=2 is not implemented with lr_schedule='cosine'; leave lr_sch"):
        CoHiClust(**PARAMS, tree_draws=2, lr_schedule="cosine").fit(blobs())


def test_input_space_mode_draws_five_finished_trees_by_default(capsys):
    """A small matrix split directly (input-space mode) keeps the best of 5 finished trees; one
    draw when asked, and one draw in MLP mode (the reference) unless asked otherwise."""
    x = blobs(60, 4)
    model = CoHiClust(n_clusters=3, epochs=12, seed=1, verbose=True).fit(x)
    assert model.backbone_ == "input" and model.tree_draws is None
    # there the criterion is the within-cluster sum of squares, not the largest leaf's mass
    assert len(model.tree_draw_masses_) == len(model.tree_draw_within_ss_) == 5
    assert model.tree_draw_ == int(np.argmin(model.tree_draw_within_ss_))
    err = capsys.readouterr().err
    assert "tree draws: within-cluster sum of squares per row (whitened coordinates)" in err
    # compared at the last epoch: the kept tree is the result, and the history is its own
    assert "at epoch 12; kept draw" in err and "it is the result" in err
    assert [h["epoch"] for h in model.history_] == list(range(1, 13))
    assert len(model.pruned_leaves_) == 1 and sorted(np.unique(model.labels_)) == [0, 1, 2]
    one = CoHiClust(n_clusters=3, epochs=12, seed=1, tree_draws=1, verbose=False).fit(x)
    assert not hasattr(one, "tree_draw_")
    mlp = CoHiClust(**PARAMS).fit(blobs())
    assert mlp.backbone_ == "mlp" and not hasattr(mlp, "tree_draw_")


def test_a_long_fit_logs_every_kth_epoch_and_every_event(capsys):
    """Input-space mode, 5 draws × 48 epochs = 240 epochs of a few milliseconds: INPUT_SPACE_LOG_LINES
    = 10 lines, every 24th epoch (each draw's 24th and 48th), no event lines. In MLP mode, 90
    epochs and one pruning: LOG_LINES = 40 less the pruning leaves 39 for the cadence, so every
    2nd epoch is logged, and the pruning's. The callback and history_ still get every epoch."""
    seen = []
    model = CoHiClust(n_clusters=3, epochs=48, seed=0, verbose=True).fit(blobs(60, 4), callback=seen.append)
    assert model.backbone_ == "input"
    assert len(seen) == 240 and [h["epoch"] for h in model.history_] == list(range(1, 49))
    logged = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[CoHiClust] epoch=")]
    epochs = [int(ln.split("epoch=")[1].split()[0]) for ln in logged]
    assert epochs == [24, 48] * 5 and sum("pruned_leaf" in r for r in seen) == 5
    seen.clear()
    mlp = CoHiClust(n_clusters=3, epochs=90, pretrain_epochs=2, seed=0, backbone="mlp", batch_size=60,
                    verbose=True).fit(blobs(60, 4), callback=seen.append)
    logged = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[CoHiClust] epoch=")]
    epochs = [int(ln.split("epoch=")[1].split()[0]) for ln in logged]
    pruned = [r["epoch"] for r in seen if "pruned_leaf" in r]
    assert len(seen) == 90 and len(mlp.history_) == 90 and len(pruned) == 1 and pruned[0] % 2 == 1  # off the cadence
    assert epochs == [r["epoch"] for r in seen if r["epoch"] % 2 == 0 or "pruned_leaf" in r]