"""The sixth round of first-use fixes: a table whose first or last column holds class ids under
an ordinary name is announced as a feature (as columns named 'label' already were)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hiclust import cli
from hiclust.data import load_dataset


def table(tmp_path, **extra) -> str:
    rng = np.random.default_rng(0)
    cols = {"a": rng.normal(size=30), "b": rng.normal(size=30), **extra}
    path = tmp_path / "t.csv"
    pd.DataFrame(cols).to_csv(path, index=False)
    return f"features:{path}"


def test_an_integer_id_column_at_either_end_is_announced_as_a_feature(tmp_path):
    spec = table(tmp_path, group=np.arange(30) % 3 + 1)
    with pytest.warns(UserWarning, match=r"t\.csv: column 'group' holds only the integers 1\.\.3, like class ids, "
                                         r"and is clustered as a feature; if it holds the classes, "
                                         r"pass label_column='group'"):
        assert load_dataset(spec).feature_dim == 3
    assert "pass --label-column 'group'" in cli.one_line("if it holds the classes, pass label_column='group'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(spec, label_column="group").feature_dim == 2
    first = tmp_path / "first.csv"  # the ids as the first column
    pd.DataFrame({"kind_id": np.arange(30) % 2, "a": np.linspace(0, 1, 30)}).to_csv(first, index=False)
    with pytest.warns(UserWarning, match=r"column 'kind_id' holds only the integers 0\.\.1"):
        assert load_dataset(f"features:{first}").feature_dim == 2


@pytest.mark.parametrize("values", [
    np.arange(30) % 3 + 2,              # 2..4: not 0- or 1-based ids
    (np.arange(30) % 3) * 2,            # 0, 2, 4: gaps
    np.arange(30) % 10,                 # ten values over 30 rows: fewer than five rows per value
    (np.arange(30) % 3).astype(float),  # floats: measured, not ids
])
def test_columns_unlike_class_ids_are_features_without_a_word(tmp_path, values):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(table(tmp_path, c=values)).feature_dim == 3


def test_a_count_column_in_the_middle_is_left_alone(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "m.csv"
    pd.DataFrame({"a": rng.normal(size=30), "rooms": np.arange(30) % 3, "b": rng.normal(size=30)}).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(f"features:{path}").feature_dim == 3


def test_metrics_take_class_names_as_scikit_learn_does():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from hiclust.metrics import dendrogram_purity, evaluate

    names = ["cat", "cat", "dog", "dog", "eel", "eel"]
    pred = [0, 0, 1, 1, 1, 2]
    by_name, by_id = evaluate(names, pred), evaluate([0, 0, 1, 1, 2, 2], pred)
    assert by_name == by_id
    assert by_name["nmi"] == pytest.approx(normalized_mutual_info_score(names, pred))
    assert by_name["ari"] == pytest.approx(adjusted_rand_score(names, pred))
    assert evaluate(pd.Series(names), pred) == by_id
    z = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])  # clusters 0 and 1 first, then 2
    assert dendrogram_purity(names, z, leaf_of=pred) == dendrogram_purity([0, 0, 1, 1, 2, 2], z, leaf_of=pred)
    with pytest.raises(TypeError, match="mixes label types"):
        evaluate(np.array(["a", 1, "b", 2, "c", 3], dtype=object), pred)


def test_l2h_given_probabilities_instead_of_logits_says_so():
    from hiclust.hierarchy import Hierarchy

    p = np.random.default_rng(0).dirichlet(np.ones(5), size=40)
    with pytest.warns(UserWarning, match=r"look like probabilities .* pass np\.log\(probabilities\)"):
        Hierarchy.from_logits(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Hierarchy.from_logits(np.log(p)).n_leaves == 5


def test_deepect_with_too_few_epochs_for_its_clusters_says_so_not_empty_clusters():
    from hiclust import DeepECT, EmptyClusterWarning

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6, 8)) * 5)[np.arange(120) % 6] + rng.normal(size=(120, 8))
    model = DeepECT(n_clusters=6, max_leaves=6, grow_interval=2, pretrain_epochs=1, epochs=2, batch_size=32,
                    hidden_dims=(16,), embedding_dim=4, device="cpu", verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x.astype(np.float32))
    said = [str(w.message) for w in caught]
    grown = model.hierarchy_.n_leaves
    assert grown < 6 and np.unique(model.labels_).size <= grown
    assert any(f"the tree grew only {grown} leaves, fewer than n_clusters=6" in m and "raise epochs to at least 8" in m
               for m in said)
    assert not [w for w in caught if issubclass(w.category, EmptyClusterWarning)]


@pytest.mark.parametrize("params,advice,not_advised", [
    (dict(epochs=5, pretrain_epochs=0, prune_start=0), "raise epochs (to at least 6 with these settings)", "lower"),
    (dict(epochs=3), "or lower prune_start/pretrain_epochs", "shallower"),
    (dict(epochs=3, depth=5), "or ask for a shallower tree (depth 4 prunes 6 leaves, not 22)", None),
])
def test_too_few_epochs_for_the_prunings_advises_only_what_can_help(params, advice, not_advised):
    from hiclust import CoHiClust

    x = np.random.default_rng(0).integers(0, 255, (64, 1, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError) as err:
        CoHiClust(n_clusters=10, batch_size=32, **params).check_params(x)
    assert advice in str(err.value)
    assert not_advised is None or not_advised not in str(err.value)


def test_history_records_the_wall_time_since_the_fit_began_and_a_resume_continues_it(tmp_path):
    from sklearn.datasets import load_digits

    from hiclust import CoHiClust

    d = load_digits()
    x, y = np.rint(d.images[:256, None] * (255 / 16)).astype(np.uint8), d.target[:256]
    params = dict(n_clusters=3, depth=2, backbone="smallcnn", epochs=4, pretrain_epochs=1, batch_size=64,
                  device="cpu", verbose=False, eval_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = CoHiClust(**params).fit(x, y)
        elapsed = [r["elapsed"] for r in full.history_]
        assert elapsed == sorted(elapsed) and elapsed[0] > 0
        # evaluations are counted too: more than the training seconds alone
        assert elapsed[-1] >= sum(r["seconds"] for r in full.history_)
        ck = tmp_path / "ck.pt"
        CoHiClust(**{**params, "epochs": 2}).fit(x, y, checkpoint=ck)
        resumed = CoHiClust(**params).fit(x, y, checkpoint=ck, resume=True)
    before = [r["elapsed"] for r in resumed.history_[:2]]
    after = [r["elapsed"] for r in resumed.history_[2:]]
    assert len(before) == 2 and after and after[0] > before[-1]  # continued, not restarted at 0


@pytest.mark.parametrize(("size", "note"), [
    (32, "--backbone smallcnn (auto, for 1-channel 32 px images), --augmentation auto: the digits preset (for "
         "1-channel images seen at 32 px)"),
    (40, "--backbone resnet18 (auto, for 1-channel 40 px images; --backbone smallcnn trains several times "
         "faster on images this small, with less capacity), --augmentation auto: the simclr preset (for 1-channel "
         "images seen at 40 px)"),
])
def test_train_says_which_network_auto_picked_and_that_small_images_train_faster_on_the_small_cnn(tmp_path, capsys, size, note):
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(load_digits().images[:64]):
        Image.fromarray(np.rint(img * 255 / 16).astype(np.uint8)).resize((size, size)).save(folder / f"{i}.png")
    assert cli.main(["train", "--dataset", f"folder:{folder}", "--n-clusters", "2", "--depth", "1", "--epochs", "1",
                     "--pretrain-epochs", "0", "--prune-start", "0", "--batch-size", "32", "--device", "cpu",
                     "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert note in err  # which network and augmentation 'auto' became
