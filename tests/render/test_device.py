"""A render model asked for on a device this machine does not have: a ModelError that says
what torch sees, not torch's own assertion from deep inside a load."""

import pytest
import torch

from rt_recon.errors import ModelError
from rt_recon.render.model import checked_device, load_render_model


def test_cpu_is_a_device():
    assert checked_device("cpu") == torch.device("cpu")


def test_a_word_that_is_no_device_is_named():
    with pytest.raises(ModelError, match=r"device must be a torch device.*'gpu0'"):
        checked_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_cuda_device_says_what_torch_sees(tiny_model_dir):
    with pytest.raises(ModelError, match=r"'cuda' asked for, but torch .* sees 0 CUDA device"):
        checked_device("cuda")
    with pytest.raises(ModelError, match=r"'cuda:1' asked for"):
        load_render_model(tiny_model_dir, device="cuda:1")
