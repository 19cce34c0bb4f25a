"""Shared fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny networks: one intra-op thread avoids large slowdowns on a busy 2-core CI machine (a file opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
