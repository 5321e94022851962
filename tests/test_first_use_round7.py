"""The seventh round of first-use fixes: a CSV file without a header row keeps its first row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hiclust.data import load_dataset
from hiclust.data.feature_files import feature_file_columns


def test_a_csv_file_without_a_header_keeps_every_row(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 4))
    y = np.repeat(np.arange(3), 20)
    path = tmp_path / "plain.csv"
    np.savetxt(path, np.c_[x, y], delimiter=",", fmt="%.9g")  # no header row
    data = load_dataset(f"features:{path}", label_column="4")
    assert len(data) == 60  # pandas alone reads the first row as column names: 59
    np.testing.assert_allclose(data.features.numpy(), x, rtol=1e-6)
    assert data.labels.tolist() == y.tolist()
    assert data.feature_names == ["0", "1", "2", "3"]
    assert feature_file_columns(path) == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("start", [0, 1])
def test_column_indices_as_pandas_writes_them_are_a_header(tmp_path, start):
    x = np.random.default_rng(1).normal(size=(20, 3))
    path = tmp_path / "indexed.csv"
    pd.DataFrame(x, columns=range(start, start + 3)).to_csv(path, index=False)
    data = load_dataset(f"features:{path}")
    assert len(data) == 20
    np.testing.assert_allclose(data.features.numpy(), x, rtol=1e-6)
    assert data.feature_names == [str(i) for i in range(start, start + 3)]


def test_a_csv_file_of_column_names_only_says_it_has_no_rows(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(ValueError, match=r"names\.csv: no rows of data, only the column names a, b, c"):
        load_dataset(f"features:{path}")


def test_train_names_the_preset_auto_became_and_the_settings_a_config_replaced(tmp_path, capsys):
    from hiclust import cli

    np.save(tmp_path / "imgs.npy", np.random.default_rng(0).integers(0, 256, (64, 1, 10, 10), dtype=np.uint8))
    config = tmp_path / "c.yaml"
    config.write_text("method: cohiclust\nparams:\n  n_clusters: 2\n  depth: 1\n  backbone: smallcnn\n  epochs: 2\n"
                      "  pretrain_epochs: 1\n  batch_size: 32\n  augmentation: {preset: auto, stroke_p: 0.5}\n")
    assert cli.main(["train", "--config", str(config), "--dataset", f"npy:{tmp_path / 'imgs.npy'}", "--device", "cpu",
                     "--out", str(tmp_path / "run")]) == 0
    assert ("--augmentation auto: the digits preset with stroke_p=0.5 (for 1-channel images seen at 10 px)"
            in capsys.readouterr().err)
    config.write_text(config.read_text().replace("stroke_p", "strok_p"))
    assert cli.main(["train", "--config", str(config), "--dataset", f"npy:{tmp_path / 'imgs.npy'}", "--device", "cpu",
                     "--out", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'strok_p'; did you mean 'stroke_p'?" in err[0] and not (tmp_path / "typo").exists()
