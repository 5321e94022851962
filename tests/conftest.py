"""Suite-wide settings.

Torch uses one CPU thread in tests: the models here are tiny, so a second thread buys little,
while two threads on a machine whose cores are busy (parallel jobs, a subprocess under test)
slow small fits down by an order of magnitude. It also keeps floating-point results identical
to the values the learning tests were calibrated with.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Back to one thread for every test module, whatever an earlier test set (the CLI's
    --threads calls torch.set_num_threads)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory):
    """The first 600 of scikit-learn's digits as 8x8 PNG files, one folder per class, so that
    ``folder:PATH`` loads them with their labels: a labeled data set a third the size of ``digits``
    for the runs under torchrun (tests/test_distributed.py, tests/test_multinode.py), which check
    that the ranks agree and need no more data for it."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path_factory.mktemp("digits600")
    x = np.rint(d.images[:600] * (255 / 16)).astype(np.uint8)
    for i, (image, label) in enumerate(zip(x, d.target[:600])):
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def digits_every_third():
    """Every third image of scikit-learn's digits (599 images, 8x8, labeled)."""
    import numpy as np

    from hiclust import load_dataset

    return load_dataset("digits", split="all").subset(np.arange(0, 1797, 3))


@pytest.fixture(scope="session")
def cohiclust_depth3(digits_every_third):
    """A tiny CoHiClust fitted on ``digits_every_third``: depth 3, two leaves pruned (6 kept). The
    model of tests/test_report.py and of the report that tests/test_browser.py opens, trained once."""
    from hiclust import CoHiClust

    return CoHiClust(n_clusters=6, depth=3, backbone="smallcnn", epochs=8, pretrain_epochs=2, batch_size=128,
                     verbose=False, seed=0).fit(digits_every_third)
