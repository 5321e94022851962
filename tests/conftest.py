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
