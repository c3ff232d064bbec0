"""The datasets follow the paper's formulas (section 3.2)."""

import gzip
import math

import jax
import numpy as np
import pytest

from advjax.data import (
    DataError,
    circles_points,
    gaussians_points,
    load_npz,
    make_dataset,
    random_labels,
    read_idx,
    spirals_points,
)

KEY = jax.random.PRNGKey(0)


def test_gaussians_class_means_and_covariance():
    x, y = map(np.asarray, gaussians_points(KEY, 40_000))
    assert set(np.unique(y)) == {0, 1}
    assert abs(y.mean() - 0.5) < 0.01
    for cls, sign in ((0, -1), (1, 1)):
        xs = x[y == cls]
        np.testing.assert_allclose(xs.mean(0), sign * np.array([2.5, 2.5]), atol=0.03)
        np.testing.assert_allclose(np.cov(xs.T), np.eye(2), atol=0.04)


def test_circles_radii():
    x, y = map(np.asarray, circles_points(KEY, 40_000, noise=0.0))
    r = np.linalg.norm(x, axis=1)
    # inner class: |U[0,10] - 5| fills [0, 5]; outer: U[0,10] + 5 fills [5, 15]
    assert r[y == 0].max() <= 5 + 1e-4 and r[y == 1].min() >= 5 - 1e-4 and r[y == 1].max() <= 15 + 1e-4
    assert abs(r[y == 0].mean() - 2.5) < 0.05 and abs(r[y == 1].mean() - 10.0) < 0.05
    angle = np.arctan2(x[:, 1], x[:, 0])
    assert np.histogram(angle, bins=8)[0].min() > 40_000 / 8 * 0.9  # uniform angle
    xn, yn = map(np.asarray, circles_points(KEY, 40_000, noise=0.5))
    rn = np.linalg.norm(xn, axis=1)
    assert abs(rn[yn == 1].std() - math.sqrt(100 / 12 + 0.25)) < 0.05  # U variance + noise²


def test_spirals_components():
    x, y = map(np.asarray, spirals_points(KEY, 20_000, t_max=10.0, jitter=0.0))
    t = np.linalg.norm(x, axis=1) / (y + 1)  # without jitter the radius is (y+1)·t
    assert 0 <= t.min() and t.max() <= 10 + 1e-4 and abs(t.mean() - 5) < 0.1
    expected = (y + 1)[:, None] * t[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
    np.testing.assert_allclose(x, expected, atol=2e-3)
    # jitter: each component moves by U(-1,1)·0.9·t, so |Δ| <= 0.9 t and is spread over it
    xj, yj = map(np.asarray, spirals_points(KEY, 20_000, t_max=10.0, jitter=0.9))
    delta = xj - x  # same key: same y and t, only the jitter is added
    assert np.array_equal(y, yj)
    assert np.all(np.abs(delta) <= 0.9 * t[:, None] + 1e-3)
    u = delta[t > 1] / (0.9 * t[t > 1, None])
    assert abs(u.mean()) < 0.02 and abs(u.var() - 1 / 3) < 0.02  # U(-1,1)
    x2, _ = spirals_points(KEY, 1000, t_max=2 * math.pi, jitter=0.0)
    assert np.linalg.norm(np.asarray(x2), axis=1).max() <= 4 * math.pi + 1e-3


def test_random_labels_uniform_and_independent():
    y_rand = np.asarray(random_labels(KEY, 50_000, 10))
    assert np.all(np.bincount(y_rand, minlength=10) > 4_700)
    _, y = gaussians_points(KEY, 50_000)
    y2 = np.asarray(random_labels(jax.random.PRNGKey(1), 50_000, 2))
    assert abs(np.mean(y2 == np.asarray(y)) - 0.5) < 0.01


def test_mnist_bundled_shapes_and_fixed_split():
    ds = make_dataset("mnist")
    assert (ds.n_features, ds.n_classes, ds.n_train) == (784, 10, 128)
    s1, s2 = ds.draw(jax.random.PRNGKey(0)), ds.draw(jax.random.PRNGKey(1))
    assert s1.x_train.shape == (128, 784) and 0 <= float(s1.x_train.min()) and float(s1.x_train.max()) <= 1
    assert len(np.unique(np.asarray(s1.y_train))) >= 8  # the bundled digits are sorted: drawn, not sliced
    assert not np.array_equal(s1.x_train, s2.x_train)  # the key chooses the 128
    np.testing.assert_array_equal(s1.x_test, s2.x_test)  # the held-out set is fixed
    assert s1.x_test.shape == (4000, 784)
    # training images never appear in the test set
    train_rows = {r.tobytes() for r in np.asarray(s1.x_train)}
    assert not any(r.tobytes() in train_rows for r in np.asarray(s1.x_test))


def _write_idx(path, arr, gz=False):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (300, 28, 28)), gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(300) % 10, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (50, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(50) % 10)
    assert read_idx(str(tmp_path / "t10k-images-idx3-ubyte")).shape == (50, 28, 28)
    ds = make_dataset("mnist", mnist_path=str(tmp_path))
    s = ds.draw(KEY)
    assert s.x_train.shape == (128, 784) and s.x_test.shape == (50, 784)
    assert float(s.x_train.max()) <= 1.0


def test_npz_named_keys_and_no_pickle(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, a=rng.normal(size=(30, 3)), b=rng.integers(0, 3, 30),
             c=rng.normal(size=(10, 3)), d=rng.integers(0, 3, 10))
    ds = make_dataset(str(path), npz_keys=("a", "b", "c", "d"))
    assert (ds.n_features, ds.n_classes, ds.n_train, ds.n_test) == (3, 3, 30, 10)
    with pytest.raises(DataError, match="no array"):
        load_npz(str(path))
    evil = tmp_path / "evil.npz"
    np.savez(evil, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1),
             x_test=np.zeros((1, 1)), y_test=np.zeros(1))
    with pytest.raises(DataError, match="pickle"):
        load_npz(str(evil))


def test_standardize_uses_training_statistics_only():
    import jax
    import numpy as np

    from advjax.data import make_dataset, standardized

    ds = make_dataset("spirals", 100, 500)
    raw, std = ds.draw(jax.random.PRNGKey(3)), standardized(ds).draw(jax.random.PRNGKey(3))
    np.testing.assert_allclose(np.asarray(std.x_train).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(std.x_train).std(0), 1, atol=1e-5)
    mean, sd = np.asarray(raw.x_train).mean(0), np.asarray(raw.x_train).std(0)
    np.testing.assert_allclose(np.asarray(std.x_test), (np.asarray(raw.x_test) - mean) / sd, rtol=1e-4, atol=1e-5)
    assert (np.asarray(std.y_train) == np.asarray(raw.y_train)).all()
