"""Suite-wide settings.

Torch uses one CPU thread in tests: the models here are tiny, so a second thread buys little,
while two threads on a machine whose cores are busy (parallel jobs, a subprocess under test)
slow small fits down by an order of magnitude. It also keeps floating-point results identical
to the values the learning tests were calibrated with.
"""

import torch

torch.set_num_threads(1)
