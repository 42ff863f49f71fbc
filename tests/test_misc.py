"""Dropout (mask statistics, determinism, scaling, backward) and embedding (gather, scatter-add
with repeats, range checks) vs the NumPy reference, finite differences and PyTorch."""

import fastlayers as fl
import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, randn
from fastlayers import reference as R

SHAPES = [(1,), (7,), (3, 5), (2, 3, 17), (100_003,), (0, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_dropout_forward_backward(rng, shape, p):
    x = randn(rng, *shape)
    y, mask = fl.dropout(x, p, seed=int(rng.integers(2**63)))
    assert y.shape == shape and y.dtype == np.float32 and mask.shape == shape and mask.dtype == np.bool_
    # The kernel's y is exactly x * float32(1 / (1 - p)) where kept, 0 elsewhere.
    want, _ = R.dropout(x, p), None
    scale = np.float32(0) if p == 1 else np.float32(1) / np.float32(1 - p)
    np.testing.assert_array_equal(y, np.where(mask, x * scale, np.float32(0)))
    if p == 0:
        assert mask.all()
    if p == 1:
        assert not mask.any() and (y == 0).all()
    g = randn(rng, *shape)
    np.testing.assert_array_equal(fl.dropout_backward(g, mask, p), R.dropout_backward(g, mask, p).astype(np.float32))
    del want


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics(rng, p):
    n = 400_000
    _, mask = fl.dropout(np.ones(n, np.float32), p, seed=int(rng.integers(2**63)))
    sigma = np.sqrt(p * (1 - p) / (n // 2))
    # Even and odd positions come from the two halves of one hash: both must be Bernoulli(1 - p).
    for part in (mask[0::2], mask[1::2]):
        assert abs(part.mean() - (1 - p)) < 6 * sigma
    # Neighbours uncorrelated: P(both kept) = (1 - p)^2.
    both = (mask[:-1] & mask[1:]).mean()
    assert abs(both - (1 - p) ** 2) < 6 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n) * 2


def test_dropout_seeding_and_threads(rng):
    x = randn(rng, 1000, 77)
    a = fl.dropout(x, 0.4, seed=123)
    b = fl.dropout(x, 0.4, seed=123)
    c = fl.dropout(x, 0.4, seed=124)
    assert (a[1] == b[1]).all() and (a[0] == b[0]).all()
    assert (a[1] != c[1]).any()
    old = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        d = fl.dropout(x, 0.4, seed=123)
    finally:
        fl.set_num_threads(old)
    assert (a[1] == d[1]).all()
    fl.manual_seed(7)
    e = fl.dropout(x, 0.4)
    fl.manual_seed(7)
    f = fl.dropout(x, 0.4)
    assert (e[1] == f[1]).all()
    assert (fl.dropout(x, 0.4)[1] != f[1]).any()  # the generator moved on


def test_dropout_eval_and_non_contiguous(rng):
    x = randn(rng, 20, 30)[::2, ::3]
    y, mask = fl.dropout(x, 0.5, training=False)
    assert mask is None and (y == x).all() and y.flags.c_contiguous
    g = randn(rng, 10, 10)
    assert (fl.dropout_backward(g, None, 0.5, training=False) == g).all()
    y, mask = fl.dropout(x, 0.5, seed=3)
    np.testing.assert_array_equal(y, np.where(mask, x * np.float32(2), np.float32(0)))


def test_dropout_gradient_vs_finite_differences(rng):
    check_directional(lambda v: fl.dropout(v, 0.3, seed=99)[0], [randn(rng, 40)],
                      lambda go, v: (fl.dropout_backward(go, fl.dropout(v, 0.3, seed=99)[1], 0.3),), rng)


def test_dropout_errors(rng):
    x = randn(rng, 4, 3)
    with pytest.raises(ValueError, match="p: dropout probability"):
        fl.dropout(x, 1.5)
    with pytest.raises(TypeError, match="p: expected a number"):
        fl.dropout(x, "0.5")
    with pytest.raises(TypeError, match="seed"):
        fl.dropout(x, 0.5, seed=1.5)
    with pytest.raises(TypeError, match="x: dtype float64"):
        fl.dropout(x.astype(np.float64))
    with pytest.raises(ValueError, match="mask: required"):
        fl.dropout_backward(x, None)
    with pytest.raises(TypeError, match="mask: expected the bool array"):
        fl.dropout_backward(x, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"mask: shape \(3, 4\) differs"):
        fl.dropout_backward(x, np.ones((3, 4), np.bool_))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64])
@pytest.mark.parametrize("ishape", [(), (1,), (5,), (3, 7), (0,), (2, 0, 3)])
def test_embedding(rng, dtype, ishape):
    v, d = 13, 9
    w = randn(rng, v, d)
    idx = rng.integers(0, v, ishape).astype(dtype)
    out = fl.embedding(idx, w)
    assert out.shape == ishape + (d,) and out.dtype == np.float32
    np.testing.assert_array_equal(out, R.embedding(idx, w))
    g = randn(rng, *ishape, d)
    (gw,) = fl.embedding_backward(g, idx, w)
    (want,) = R.embedding_backward(f64(g), idx, f64(w))
    assert_close(gw, want)


def test_embedding_backward_repeats_and_threads(rng):
    v, d, n = 50, 33, 20_000
    w = randn(rng, v, d)
    idx = rng.integers(0, 5, n)  # heavy collisions on few rows
    idx[::7] = v - 1
    g = randn(rng, n, d)
    (gw,) = fl.embedding_backward(g, idx, w)
    assert_close(gw, R.embedding_backward(f64(g), idx, f64(w))[0])
    old = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        (gw1,) = fl.embedding_backward(g, idx, w)
    finally:
        fl.set_num_threads(old)
    np.testing.assert_array_equal(gw, gw1)  # each row sums in index order, whatever the threads
    (gp,) = fl.embedding_backward(g, idx, w, padding_idx=-1)
    assert (gp[v - 1] == 0).all() and (gp[:-1] == gw[:-1]).all()


def test_embedding_non_contiguous_and_fd(rng):
    w = randn(rng, 20, 12)[::2, ::3]
    idx = rng.integers(0, 10, (4, 6))[:, ::2]
    np.testing.assert_array_equal(fl.embedding(idx, w), w[idx])
    check_directional(lambda w_: fl.embedding(idx, w_), [randn(rng, 10, 4)],
                      lambda go, w_: fl.embedding_backward(go, idx, w_), rng)


def test_embedding_errors(rng):
    w = randn(rng, 10, 4)
    with pytest.raises(ValueError, match=r"indices: index 10 at flat position 2 is out of range for weight with 10 rows"):
        fl.embedding(np.array([1, 2, 10]), w)
    with pytest.raises(ValueError, match="indices: index -1 at flat position 0"):
        fl.embedding(np.array([-1]), w)
    with pytest.raises(ValueError, match="indices: index 18446744073709551615"):
        fl.embedding(np.array([2**64 - 1], np.uint64), w)
    with pytest.raises(ValueError, match="indices: index 12"):
        fl.embedding_backward(np.ones((2, 4), np.float32), np.array([0, 12]), w)
    with pytest.raises(TypeError, match="indices: expected an integer dtype"):
        fl.embedding(np.array([1.0]), w)
    with pytest.raises(ValueError, match="weight: expected a 2-D array"):
        fl.embedding(np.array([1]), w[0])
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(3, 4\)"):
        fl.embedding_backward(np.ones((3, 5), np.float32), np.array([0, 1, 2]), w)
    with pytest.raises(ValueError, match="padding_idx"):
        fl.embedding_backward(np.ones((1, 4), np.float32), np.array([0]), w, padding_idx=10)


@pytest.mark.torch
def test_embedding_and_dropout_vs_torch(rng):
    import torch
    import torch.nn.functional as TF

    w = randn(rng, 11, 6)
    idx = rng.integers(0, 11, (4, 5))
    tw = torch.from_numpy(w.copy()).requires_grad_()
    ty = TF.embedding(torch.from_numpy(idx), tw, padding_idx=3)
    np.testing.assert_array_equal(fl.embedding(idx, w), ty.detach().numpy())
    g = randn(rng, 4, 5, 6)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(fl.embedding_backward(g, idx, w, padding_idx=3)[0], tw.grad.numpy(), rtol=1e-6,
                               atol=1e-6)
    # Dropout's scaling matches PyTorch's for the elements both keep.
    x = randn(rng, 1000)
    ty = TF.dropout(torch.from_numpy(x), 0.3, training=True).numpy()
    y, mask = fl.dropout(x, 0.3)
    both = mask & (ty != 0)
    np.testing.assert_array_equal(y[both], ty[both])
