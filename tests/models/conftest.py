"""Model tests run torch on one thread: on a shared 2-core CI machine, intra-op threads that
spin against other processes make these small CPU runs many times slower."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
