"""precision= (issue 9, speed on the CPU): bfloat16 autocast of the training forward where asked,
refused on a CPU that would only emulate it; weights, losses and inference stay float32.
Tiny CoHiClust / CC fits on 8x8 digits; a CPU without bfloat16 instructions is simulated by
patching ``cpu_has_bf16`` (the fits themselves run on any CPU: autocast works everywhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hiclust.methods.base as basemod
from hiclust import CoHiClust, cli
from hiclust.methods.cc import ContrastiveClustering

pytestmark = pytest.mark.filterwarnings("ignore::hiclust.EmptyClusterWarning")  # 3 epochs: leaves may stay empty

TINY = dict(n_clusters=3, depth=2, backbone="smallcnn", epochs=3, pretrain_epochs=1, batch_size=64,
            device="cpu", seed=0, verbose=False, eval_every=100)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """(192, 1, 8, 8) uint8 digits."""
    from sklearn.datasets import load_digits

    return np.rint(load_digits().images[:192, None] * (255 / 16)).astype(np.uint8)


def forward_dtypes(model_cls, x, monkeypatch, **params) -> tuple[set, set, object]:
    """Dtypes of the backbone's output during training and during predict, and the fitted model."""
    seen: dict[str, set] = {"train": set(), "predict": set()}
    original = model_cls._build_model

    def build(self):
        net = original(self)
        backbone = net.backbone
        backbone.register_forward_hook(
            lambda mod, inp, out: seen["train" if mod.training else "predict"].add(out.dtype))
        return net

    monkeypatch.setattr(model_cls, "_build_model", build)
    model = model_cls(**params).fit(x)
    model.predict(x)
    return seen["train"], seen["predict"], model


@pytest.mark.parametrize("precision,trained_in", [("auto", torch.float32), ("float32", torch.float32),
                                                  ("bfloat16", torch.bfloat16)])
def test_the_training_forward_runs_in_the_precision_asked(small, monkeypatch, precision, trained_in):
    monkeypatch.setattr(basemod, "cpu_has_bf16", lambda: True)
    train, predict, model = forward_dtypes(CoHiClust, small, monkeypatch, **TINY, precision=precision)
    assert train == {trained_in}
    assert predict == {torch.float32}  # inference is never autocast
    assert all(p.dtype == torch.float32 for p in model.model_.parameters())
    assert np.isfinite([r["loss"] for r in model.history_]).all()


def test_cc_takes_the_same_option(small, monkeypatch):
    monkeypatch.setattr(basemod, "cpu_has_bf16", lambda: True)
    params = dict(n_clusters=3, backbone="smallcnn", epochs=1, batch_size=64, device="cpu", verbose=False)
    train, predict, _ = forward_dtypes(ContrastiveClustering, small, monkeypatch, **params, precision="bfloat16")
    assert (train, predict) == ({torch.bfloat16}, {torch.float32})


def test_bfloat16_on_a_cpu_without_it_is_refused_before_training(small, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(basemod, "cpu_has_bf16", lambda: False)
    model = CoHiClust(**TINY, precision="bfloat16")
    message = r"precision='bfloat16' needs a CPU with bfloat16 instructions .*use precision='float32'"
    with pytest.raises(ValueError, match=message):
        model.check_params(small)
    with pytest.raises(ValueError, match=message):
        model.fit(small)
    assert not hasattr(model, "model_")
    CoHiClust(**TINY, precision="float32").check_params(small)  # the alternative it names is accepted
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "digits", "--n-clusters", "3", "--precision", "bfloat16",
                     "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--precision 'float32'" in err
    assert not out.exists()


def test_an_unknown_precision_is_one_line_naming_the_choices(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "digits", "--precision", "float16", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "float16" in err and "bfloat16" in err and "float32" in err
    assert not (tmp_path / "o").exists()


def test_input_space_mode_says_bfloat16_has_nothing_to_speed_up_and_trains_in_float32(monkeypatch):
    """No network in input-space mode: precision='bfloat16' warns and changes nothing (the same
    tree and labels as float32, bit for bit)."""
    monkeypatch.setattr(basemod, "cpu_has_bf16", lambda: True)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 1.0, (60, 5)) for c in (-4.0, 0.0, 4.0)]).astype(np.float32)
    params = dict(n_clusters=3, epochs=12, tree_draws=1, seed=0, verbose=False, device="cpu")
    with pytest.warns(UserWarning, match="nothing to speed up in input-space mode"):
        bf16 = CoHiClust(**params, precision="bfloat16").fit(x)
    fp32 = CoHiClust(**params, precision="float32").fit(x)
    assert bf16.backbone_ == "input"
    np.testing.assert_array_equal(bf16.labels_, fp32.labels_)
    np.testing.assert_array_equal(bf16.predict_proba(x), fp32.predict_proba(x))
