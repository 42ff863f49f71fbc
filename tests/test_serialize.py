"""fl.save / fl.load: the state dict as .npz, round trips, and the errors of a mismatched model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import randn

import fastlayers as fl
from fastlayers import nn


def _model():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def test_save_load_round_trip(tmp_path, rng):
    fl.manual_seed(0)
    m = _model()
    x = randn(rng, 4, 1, 4, 4)
    m(x)  # move the running statistics away from their initial values
    m.eval()
    path = tmp_path / "model.npz"
    fl.save(m, path)
    with np.load(path) as f:
        assert sorted(f.files) == sorted(m.state_dict())
        assert f["1.num_batches_tracked"].dtype == np.int64
    fl.manual_seed(1)
    m2 = _model().eval()
    assert not np.array_equal(m2(x), m(x))
    assert fl.load(m2, path) is m2
    np.testing.assert_array_equal(m2(x), m(x))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v)


def test_path_without_suffix_and_file_objects(tmp_path):
    m = nn.Linear(3, 2)
    fl.save(m, str(tmp_path / "lin"))  # NumPy appends .npz
    assert (tmp_path / "lin.npz").exists()
    m2 = fl.load(nn.Linear(3, 2), str(tmp_path / "lin"))
    np.testing.assert_array_equal(m2.weight.data, m.weight.data)
    buf = io.BytesIO()
    fl.save(m.state_dict(), buf)  # a plain state dict works too
    buf.seek(0)
    state = fl.load(None, buf)
    np.testing.assert_array_equal(state["bias"], m.bias.data)


def test_load_into_mismatched_model(tmp_path):
    path = tmp_path / "m.npz"
    fl.save(nn.Linear(3, 2), path)
    with pytest.raises(ValueError, match=r"'weight' has shape \(2, 3\).*expects \(4, 3\)"):
        fl.load(nn.Linear(3, 4), path)
    with pytest.raises(KeyError, match="missing keys"):
        fl.load(nn.Sequential(nn.Linear(3, 2)), path)
    res = fl.load(nn.Linear(3, 2, bias=False), path, strict=False)
    assert res.weight.shape == (2, 3)
    with pytest.raises(TypeError, match="Module or a state dict"):
        fl.save(42, path)
    with pytest.raises(FileNotFoundError):
        fl.load(nn.Linear(3, 2), tmp_path / "nope.npz")


@pytest.mark.torch
def test_load_converted_torch_state_dict(tmp_path, rng):
    import torch

    tm = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    fl.save({k: v.detach().numpy() for k, v in tm.state_dict().items()}, tmp_path / "t.npz")
    m = fl.load(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)), tmp_path / "t.npz")
    x = randn(rng, 3, 5)
    np.testing.assert_allclose(m(x), tm(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    m.load_state_dict(tm.state_dict())  # tensors are accepted directly as well
