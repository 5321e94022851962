"""The one estimator lifecycle: parameters declared once drive validation, docs, resume and CLI
flags; fitted attributes appear only when fit completes; predict & co. are written once."""

from __future__ import annotations

import inspect
import re
from numbers import Integral

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, InvalidParameterError

import hiclust
import hiclust.cli as cli
from hiclust.methods import METHODS
from hiclust.methods.base import DeepClusterer

ESTIMATORS = sorted(METHODS.items())


def _tiny_images(n: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)


def _below(constraint: Interval):
    """A value just outside an Interval's lower bound, of its type."""
    if constraint.type is Integral:
        return int(constraint.left) - 1
    return float(constraint.left) - (0.0 if constraint.closed in ("right", "neither") else 1e-3)


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_every_parameter_is_declared_documented_and_constrained(name, cls):
    init_params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert list(cls._params) == init_params
    assert set(cls._parameter_constraints) == set(init_params)
    for p in init_params:  # numpydoc entry "name : type, default=..."
        assert f"\n{p} : " in cls.__doc__ and "default=" in cls.__doc__.split(f"\n{p} : ")[1].split("\n")[0], p


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_bad_values_raise_invalid_parameter_error_before_anything_is_written(name, cls, tmp_path):
    x = _tiny_images()
    checked = 0
    for param, constraints in cls._parameter_constraints.items():
        lows = [c for c in constraints if isinstance(c, Interval) and c.left is not None]
        if not lows:
            continue
        bad = _below(lows[0])
        est = cls(**{param: bad, "device": "cpu", "verbose": False})
        with pytest.raises(InvalidParameterError, match=rf"The '{param}' parameter of {cls.__name__} must be"):
            est.fit(x, checkpoint=tmp_path / "ck.pt")
        with pytest.raises(InvalidParameterError):
            est.check_params(x)
        assert not hasattr(est, "model_") and not list(tmp_path.iterdir())
        checked += 1
    assert checked >= 5
    with pytest.raises(InvalidParameterError, match="n_clusters"):  # wrong type, not just wrong range
        cls(n_clusters="3").fit(x)


def test_the_issue_example_is_refused():
    with pytest.raises(ValueError) as info:
        hiclust.CoHiClust(lr=-1, temperature=-1, weight_decay=-1, nt_xent_weight=-3).check_params(_tiny_images())
    assert isinstance(info.value, InvalidParameterError)


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_unfitted_estimator_raises_not_fitted_error(name, cls):
    est = cls()
    for method in ("predict", "predict_proba", "transform"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(_tiny_images(4))
    with pytest.raises(NotFittedError):
        est.save("never-written.pt")


def test_predict_and_friends_are_written_once_in_the_base():
    for _, cls in ESTIMATORS:
        assert issubclass(cls, DeepClusterer)
        for method in ("fit", "predict", "transform", "fit_predict", "save", "load"):
            owners = [k for k in cls.__mro__ if method in vars(k)]
            assert owners[0] in (DeepClusterer, *DeepClusterer.__mro__), (cls.__name__, method)
    assert hiclust.SimCLR is METHODS["simclr"]


def test_resume_free_parameters_come_from_the_declarations():
    assert hiclust.CoHiClust._resume_free == {"epochs", "eval_every", "verbose", "precision"}
    assert hiclust.CoHiClust(lr_schedule="cosine")._resume_free_params() == {"eval_every", "verbose", "precision"}
    assert "epochs" in hiclust.DEC._resume_free and "lr" not in hiclust.DEC._resume_free


def test_cli_flags_come_from_the_declarations():
    flags = cli.method_flags()
    assert flags["--depth"]["methods"] == ["cohiclust"]
    assert set(flags["--lr"]["methods"]) == set(METHODS)
    assert flags["--crop-size"]["param"] == "image_size"
    assert flags["--gamma"]["type"] is float and flags["--n-clusters"]["type"] is int
    assert "--verbose" not in flags  # declared without a flag
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for _, cls in ESTIMATORS:
        for name, param in cls._params.items():
            flag = cli.flag_for_param(cls, name)
            if param.flag != "":
                assert flag in help_text, flag


def test_cli_refuses_a_flag_the_method_does_not_take(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "digits", "--method", "dec", "--depth", "3", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--depth is not a parameter of --method dec" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_failed_fit_leaves_no_fitted_attributes_and_success_sets_them(monkeypatch):
    x = _tiny_images(64)
    params = dict(n_clusters=2, depth=1, epochs=2, pretrain_epochs=1, batch_size=32, backbone="smallcnn",
                  device="cpu", verbose=False)
    model = hiclust.CoHiClust(**params)

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        model.fit(x, callback=stop)
    assert not [k for k in vars(model) if k.endswith("_")]
    model.fit(x)
    assert {"model_", "labels_", "hierarchy_", "history_", "device_", "leaf_mask_"} <= set(vars(model))
    np.testing.assert_array_equal(model.fit_predict(x), model.labels_)
    np.testing.assert_array_equal(model.predict(x), model.labels_)
    proba = model.predict_proba(x)
    assert proba.shape == (64, 2) and np.allclose(proba.sum(1), 1)
    assert model.transform(x).shape == (64, model.model_.backbone.feature_dim)


def test_log_lines_estimate_the_time_left_until_the_last_epoch(capsys):
    # Without a terminal (no progress bar) the per-epoch log line is all a user sees: each one but
    # the last says how long the rest of the fit should take.
    from hiclust.methods.base import format_duration

    assert [format_duration(s) for s in (0.4, 59.6, 61, 3599, 3600, 86399)] == [
        "0s", "1m00s", "1m01s", "59m59s", "1h00m", "23h59m"]
    x = _tiny_images(64)
    hiclust.CoHiClust(n_clusters=2, depth=1, epochs=3, pretrain_epochs=1, batch_size=32, backbone="smallcnn",
                      device="cpu", verbose=True).fit(x)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[CoHiClust] epoch=")]
    assert len(lines) == 3
    assert all(re.search(r" left≈\d+(s|m\d\ds|h\d\dm)$", ln) for ln in lines[:-1]), lines
    assert "left≈" not in lines[-1]


def test_decision_path_agrees_with_predict_and_predict_proba():
    x = _tiny_images(64, seed=1)
    model = hiclust.CoHiClust(n_clusters=3, depth=2, epochs=3, pretrain_epochs=1, prune_start=1, batch_size=32,
                              backbone="smallcnn", device="cpu", verbose=False).fit(x)
    path = model.decision_path(x)
    np.testing.assert_array_equal(path.cluster, model.predict(x))
    proba = model.predict_proba(x)
    np.testing.assert_allclose(path.leaf_probability, proba[np.arange(64), path.cluster], rtol=1e-5)
    assert path.nodes.shape == path.step_probabilities.shape == (64, 2)
    assert (path.nodes[:, 0] == 0).all()  # every path starts at the root
    d = model.decision_function(x)
    first = np.where(path.went_left[:, 0], d[:, 0], 1 - d[:, 0])
    np.testing.assert_allclose(path.step_probabilities[:, 0], first, rtol=1e-6)
    np.testing.assert_allclose(path.path_probability, path.step_probabilities.prod(1))
    assert (path.leaf_probability >= path.path_probability - 1e-9).all()  # pruning renormalizes upwards


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_save_load_round_trip_in_the_one_format(name, cls, tmp_path):
    from hiclust.checkpoint import load_checkpoint

    x = _tiny_images(64, seed=2)
    params = {"n_clusters": 2, "epochs": 1, "batch_size": 32, "device": "cpu", "verbose": False}
    if name in ("dec", "idec"):
        params.update(pretrain_epochs=1, hidden_dims=(16,), n_init=1, update_interval=2)
    elif name == "deepect":
        params.update(pretrain_epochs=1, epochs=2, hidden_dims=(16,), n_init=1, max_leaves=3, grow_interval=1)
    else:
        params["backbone"] = "smallcnn"
    if name == "cohiclust":
        params.update(depth=1, epochs=2, pretrain_epochs=1)
    model = cls(**params).fit(x, checkpoint=tmp_path / "ck.pt", checkpoint_every=1)
    model.save(tmp_path / "m.pt")
    _, state = load_checkpoint(tmp_path / "m.pt", expected_class=cls.__name__)
    assert {"model", "history", "input_shape", "image_size", "feature_mean", "feature_std"} <= set(state)
    _, training = load_checkpoint(tmp_path / "ck.pt", expected_class=cls.__name__)
    assert {"optimizer", "rng", "generators", "progress"} <= set(training)
    loaded = cls.load(tmp_path / "m.pt", device="cpu")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), rtol=1e-6, atol=1e-7)
    assert torch.equal(torch.as_tensor(loaded.transform(x)), torch.as_tensor(model.transform(x)))


def _blobs(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return rng.normal(0, 0.3, (n, 4)) + 4.0 * y[:, None], y


def test_scikit_learn_input_conventions():
    """Lists for X and y, string labels (mapped to ids, their names kept), a (N, 0) matrix refused,
    and random_state as scikit-learn's name for seed."""
    x, y = _blobs()
    kw = dict(n_clusters=2, depth=1, epochs=2, pretrain_epochs=1, batch_size=16, device="cpu", verbose=False,
              eval_every=1)
    names = np.array(["cat", "dog"])[y]
    model = hiclust.CoHiClust(**kw).fit(x.tolist(), names.tolist())
    assert model.labels_.shape == (48,) and "acc" in model.history_[-1]
    from hiclust.methods.base import prepare_data

    data = prepare_data(x, names)
    assert data.labels.tolist() == y.tolist() and data.class_names == ["cat", "dog"]
    assert prepare_data(x, y.astype(float) + 1.0).labels.tolist() == y.tolist()
    cases = [
        (lambda: prepare_data(np.zeros((48, 0))), ValueError, "no columns"),
        (lambda: prepare_data([[1.0, 2.0], [3.0]]), ValueError, "rectangular"),
        (lambda: prepare_data(np.array([["a", "b"]] * 4)), TypeError, "hold numbers"),
        (lambda: prepare_data(x, np.where(y == 1, np.nan, 0.0)), ValueError, "NaN"),
        (lambda: prepare_data(x, y.astype(bool)), TypeError, "booleans"),
        (lambda: prepare_data(x, np.array(["a", None] * 24, dtype=object)), ValueError, "None"),
        (lambda: hiclust.CoHiClust(random_state=-1).check_params(x), InvalidParameterError, "random_state"),
    ]
    for call, error, phrase in cases:
        with pytest.raises(error, match=phrase):
            call()
    by_seed = hiclust.CoHiClust(**kw, seed=3).fit(x)
    by_random_state = hiclust.CoHiClust(**kw, random_state=3).fit(x)
    np.testing.assert_array_equal(by_seed.predict_proba(x), by_random_state.predict_proba(x))
    assert not np.array_equal(hiclust.CoHiClust(**kw).fit(x).predict_proba(x), by_seed.predict_proba(x))


def test_augmentation_dict_is_a_preset_with_settings_replaced():
    """augmentation={'preset': ..., setting: value} builds the preset with those BatchAugment settings
    replaced ('auto' resolves the preset by dataset); an unknown setting or preset is refused by
    check_params, before anything is trained."""
    from hiclust.data.augment import BatchAugment
    from hiclust.methods.base import prepare_data

    data = prepare_data(_tiny_images())
    est = hiclust.CoHiClust(augmentation={"preset": "digits", "erase_p": 0.25, "erase_scale": [0.05, 0.1]})
    est.image_size_ = 8
    aug = est._make_augment(data)
    assert isinstance(aug, BatchAugment) and aug.erase_p == 0.25 and aug.erase_scale == (0.05, 0.1)
    assert aug.rotation == (-15.0, 15.0)  # the rest is the digits preset's
    est.augmentation = {"erase_p": 0.5}  # no 'preset': 'auto', by dataset / image properties (1 channel, 8 px: digits)
    auto = est._make_augment(data)
    assert auto.erase_p == 0.5 and auto.hflip_p == 0.0 and auto.rotation == (-15.0, 15.0)
    with pytest.raises(ValueError, match="unknown augmentation setting.*'erase_prob'; did you mean 'erase_p'\\? choose"):
        hiclust.CoHiClust(augmentation={"preset": "digits", "erase_prob": 0.5}, batch_size=16).check_params(_tiny_images())
    with pytest.raises(ValueError, match="unknown augmentation preset 'nope'"):
        hiclust.CoHiClust(augmentation={"preset": "nope"}, batch_size=16).check_params(_tiny_images())
