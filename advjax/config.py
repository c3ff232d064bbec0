"""A sweep's configuration: one frozen dataclass, built from a TOML file and/or flags.

Every value is validated here, and a bad one raises `ConfigError` naming the flag and
what is allowed; the CLI turns that into a one-line message and exit code 2.
Dataset-dependent defaults (learning rate, batch size, step cap, fixed data) are left
as None in the config and resolved by `resolve()`, so the manifest records both what
was asked and what ran.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass

from .checkpoint import every_from_text
from .data import BUILTIN, NPZ_KEYS, SYNTHETIC
from .experiments import (
    EXPERIMENT_NUMBERS,
    EXPERIMENTS,
    PAPER_EXPERIMENTS,
    PER_LAYER,
    TEACHER_ONLY,
    experiment_names,
    layers_needed,
    resolve_experiments,
)
from .model import INIT_SCHEMES, MODEL_KINDS, make_model
from .train import LOSS_REDUCTIONS, OPTIMIZERS


class ConfigError(ValueError):
    def __init__(self, flag: str, message: str):
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class SweepConfig:
    dataset: str = "gaussians"
    widths: tuple[int, ...] = (10, 100, 1000)
    seeds: int = 10
    seed: int = 0
    experiments: tuple[str, ...] = PAPER_EXPERIMENTS
    model: str = "mlp"  # the model's kind (advjax.model.MODEL_KINDS)
    depth: int = 1  # hidden layers; depth 1 is the paper's N_p
    max_steps: int | None = None  # per phase; None: the dataset's default
    lr: float | None = None
    batch_size: int | None = None  # 0 means full batch
    n_train: int | None = None
    n_test: int | None = None
    loss_reduction: str = "mean"
    phase1_optimizer: str = "sgd"  # the random-label phase's optimizer: sgd (paper) or adam
    phase1_lr: float | None = None  # the random-label phase's step size (None: --lr)
    phase1_max_steps: int | None = None  # the random-label phase's step cap (None: --max-steps)
    momentum: float = 0.0  # true-label phases: SGD momentum (Liu et al.'s explicit regularization)
    weight_decay: float = 0.0  # true-label phases: L2 weight decay
    shrink: float = 0.4  # shrink_perturb: λ in λ·Θ_adv + σ·θ_fresh (Ash & Adams 2020)
    perturb: float = 0.1  # shrink_perturb: σ
    input_dim: int = 20  # teacher: input dimension d
    teacher_width: int = 4  # teacher: hidden units of the teacher network
    measures: bool = True  # norms, distance, margin, sharpness, active ReLUs, 2-D boundary/regions
    hessian_iters: int = 32  # Lanczos steps for the sharpness
    grid: int = 256  # 2-D measures: lattice points per side
    fix_data: bool | None = None  # None: fixed for MNIST (as in the paper), redrawn otherwise
    npz_keys: tuple[str, ...] = NPZ_KEYS
    mnist_path: str | None = None
    init: str = "torch"
    noise: float = 0.5  # circles: std of the radial noise
    t_max: float = 10.0  # spirals: t ~ U[0, t_max]
    chunk_steps: int = 100_000
    out: str | None = None
    quiet: bool = False
    resume: bool = False  # continue the sweep in --out from its checkpoints
    adv_from: str | None = None  # an earlier sweep's --out whose Θ_adv to reuse
    checkpoint_every: str = "60s"  # N steps, or Ns / Nm of wall time, or 0: only at phase ends
    keep_params: bool = False  # keep every phase's final params, not only Θ_adv
    compile_cache: str = "auto"  # a directory, "auto" ($ADVJAX_COMPILE_CACHE or ~/.cache/advjax/jax), "off"
    cpu_devices: int | None = None  # CLI on a CPU host: JAX devices to split it into (default: one per core)
    max_seeds_in_flight: int | None = None  # seeds on the devices at once (default: from memory_budget)
    memory_budget: str | None = None  # bytes for seeds in flight, e.g. 2GB (default: half the free memory)
    distributed: bool = False  # CLI: jax.distributed.initialize (flags below, or SLURM / TPU environment)
    coordinator: str | None = None  # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None

    def resolve(self) -> SweepConfig:
        """Fill the dataset-dependent defaults (paper section 3)."""
        mnist = self.dataset == "mnist"
        lr = self.lr if self.lr is not None else (0.1 if mnist else 0.01)
        max_steps = self.max_steps if self.max_steps is not None else DEFAULT_MAX_STEPS[mnist]
        return dataclasses.replace(
            self,
            lr=lr,
            batch_size=self.batch_size if self.batch_size is not None else (32 if mnist else 0),
            max_steps=max_steps,
            phase1_lr=self.phase1_lr if self.phase1_lr is not None else lr,
            phase1_max_steps=self.phase1_max_steps if self.phase1_max_steps is not None else max_steps,
            fix_data=self.fix_data if self.fix_data is not None else mnist,
        )

    def results_config(self) -> dict:
        """The fields that determine results (what --resume must find unchanged)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


# Per-phase step caps: MNIST's SGD fits 128 images in a few hundred steps; phase 1 on
# 2-D data with GD at step 0.01 can need 10^5-10^6 steps (see README, "Step caps").
DEFAULT_MAX_STEPS = {True: 20_000, False: 100_000}


# Options that change how a sweep runs but not its results.
RUNTIME_FIELDS = ("out", "quiet", "resume", "checkpoint_every", "chunk_steps", "keep_params", "compile_cache",
                  "cpu_devices", "max_seeds_in_flight", "memory_budget", "distributed", "coordinator",
                  "num_processes", "process_id")


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


FIELDS = {f.name: f for f in dataclasses.fields(SweepConfig)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _int(name: str, v, minimum: int | None = None, what: str = "an integer") -> int:
    try:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError
        out = int(v)
    except (TypeError, ValueError):
        raise ConfigError(flag(name), f"{v!r} is not {what}") from None
    if minimum is not None and out < minimum:
        raise ConfigError(flag(name), f"{v!r} is not {what}")
    return out


def _float(name: str, v, positive: bool = False, nonneg: bool = False) -> float:
    text = str(v).strip().lower().replace("π", "pi")
    try:
        if isinstance(v, bool):
            raise ValueError
        if text.endswith("pi"):
            out = float(text[:-2] or 1) * math.pi
        else:
            out = float(v)
    except (TypeError, ValueError):
        out = math.nan
    what = "a positive number" if positive else "a non-negative number" if nonneg else "a number"
    if not math.isfinite(out) or (positive and out <= 0) or (nonneg and out < 0):
        raise ConfigError(flag(name), f"{v!r} is not {what}")
    return out


def _list(v) -> list:
    if isinstance(v, (list, tuple)):
        return list(v)
    return [p.strip() for p in str(v).split(",")] if str(v).strip() else []


def _bool(name: str, v) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(flag(name), f"{v!r} is not true or false")


def _validate(name: str, v):
    """Coerce one raw value (from TOML or a flag) to its field's type, or raise."""
    if v is None:
        return None
    if name == "dataset":
        v = str(v)
        if v not in BUILTIN and not v.endswith(".npz"):
            raise ConfigError("--dataset", f"unknown dataset {v!r}; choose one of "
                              f"{', '.join(BUILTIN)} or a path to a .npz file")
        return v
    if name == "widths":
        items = _list(v)
        if not items:
            raise ConfigError("--widths", "empty list; give positive integers, e.g. 10,100,1000")
        return tuple(_int("widths", w, 1, "a positive integer (widths are e.g. 10,100,1000)") for w in items)
    if name == "seeds":
        return _int(name, v, 1, "a number of seeds >= 1")
    if name == "process_id":
        return _int(name, v, 0, "a non-negative integer")
    if name == "memory_budget":
        try:
            parse_bytes(str(v))
        except ValueError:
            raise ConfigError(flag(name), f"{v!r} is not a size such as 500MB or 4GB") from None
        return str(v)
    if name == "coordinator":
        host, _, port = str(v).rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(flag(name), f"{v!r} is not HOST:PORT")
        return str(v)
    if name == "seed":
        return _int(name, v, 0, "a non-negative integer")
    if name == "model":
        if v not in MODEL_KINDS:
            raise ConfigError("--model", f"unknown model {v!r}; choose one of {', '.join(MODEL_KINDS)}")
        return v
    if name == "depth":
        return _int(name, v, 1, "a number of hidden layers >= 1 (e.g. 1 to 4)")
    if name == "experiments":
        try:
            return resolve_experiments(v if isinstance(v, str) else _list(v))
        except ValueError as e:
            numbers = {name: n for n, name in EXPERIMENT_NUMBERS.items()}
            allowed = ", ".join(f"{numbers[name]} ({name})" if name in numbers else name for name in EXPERIMENTS)
            allowed += ", " + ", ".join(f"{kind}_K (K a layer)" for kind in PER_LAYER) + ", or all"
            raise ConfigError("--experiments", f"unknown experiment {str(e)!r}; choose from {allowed}") from None
    if name in ("max_steps", "phase1_max_steps", "input_dim", "teacher_width", "hessian_iters", "cpu_devices",
                "max_seeds_in_flight", "num_processes"):
        return _int(name, v, 1, "a positive integer")
    if name == "chunk_steps":
        return _int(name, v, 1, "a positive integer")
    if name in ("lr", "phase1_lr"):
        return _float(name, v, positive=True)
    if name == "grid":
        return _int(name, v, 2, "an integer >= 2")
    if name in ("shrink", "perturb"):
        return _float(name, v, nonneg=True)
    if name in ("momentum", "weight_decay"):
        out = _float(name, v, nonneg=True)
        if name == "momentum" and out >= 1:
            raise ConfigError("--momentum", f"{v!r} is not in [0, 1)")
        return out
    if name == "phase1_optimizer":
        if v not in OPTIMIZERS:
            raise ConfigError(flag(name), f"{v!r} is not one of {', '.join(OPTIMIZERS)}")
        return v
    if name == "batch_size":
        if str(v).strip().lower() == "full":
            return 0
        return _int(name, v, 0, "a positive integer or 'full'")
    if name in ("n_train", "n_test"):
        return _int(name, v, 1, "a positive integer")
    if name == "loss_reduction":
        if v not in LOSS_REDUCTIONS:
            raise ConfigError(flag(name), f"{v!r} is not one of {', '.join(LOSS_REDUCTIONS)}")
        return v
    if name == "init":
        if v not in INIT_SCHEMES:
            raise ConfigError("--init", f"{v!r} is not one of {', '.join(INIT_SCHEMES)}")
        return v
    if name in ("fix_data", "quiet", "resume", "keep_params", "distributed", "measures"):
        return _bool(name, v)
    if name == "npz_keys":
        keys = tuple(_list(v))
        if len(keys) != 4 or not all(keys):
            raise ConfigError("--npz-keys", f"{v!r} must name 4 arrays: x_train,y_train,x_test,y_test")
        return keys
    if name == "noise":
        return _float(name, v, nonneg=True)
    if name == "t_max":
        return _float(name, v, positive=True)
    if name in ("mnist_path", "out", "adv_from", "compile_cache"):
        if not str(v).strip():
            raise ConfigError(flag(name), "must not be empty")
        return str(v)
    if name == "checkpoint_every":
        try:
            every_from_text(str(v))
        except ValueError:
            raise ConfigError(flag(name), f"{v!r} is not a step count (e.g. 5000), a time (e.g. 60s, 5m) "
                              "or 0") from None
        return str(v)
    raise ConfigError(flag(name), "unknown option")  # unreachable: keys are checked first


def from_dict(values: dict, source: str = "") -> SweepConfig:
    """Build a validated config from raw values (TOML keys may use - or _)."""
    clean = {}
    for key, v in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            where = f" in {source}" if source else ""
            raise ConfigError("--config" if source else flag(name),
                              f"unknown key {key!r}{where}; known keys: {', '.join(FIELDS)}")
        clean[name] = _validate(name, v)
    cfg = SweepConfig(**{k: v for k, v in clean.items() if v is not None})
    if cfg.mnist_path is not None and cfg.dataset != "mnist":
        raise ConfigError("--mnist-path", "applies only with --dataset mnist")
    n_layers = len(make_model(cfg.model, 1, 1, 1, depth=cfg.depth).layers)
    if cfg.experiments == ("all",):
        cfg = dataclasses.replace(cfg, experiments=experiment_names(n_layers, teacher=cfg.dataset == "teacher"))
    teacher_only = [e for e in cfg.experiments if e in TEACHER_ONLY]
    if teacher_only and cfg.dataset != "teacher":
        raise ConfigError("--experiments", f"{teacher_only[0]} needs the teacher's features: use --dataset teacher")
    if teacher_only and n_layers != 2:
        raise ConfigError("--experiments", f"{teacher_only[0]} needs one feature layer: use --depth 1")
    for e in cfg.experiments:
        if layers_needed(e) > n_layers:
            kind = e.rpartition("_")[0]
            top = n_layers - 1 if kind == "freeze" else n_layers
            raise ConfigError("--experiments", f"{e} needs more layers than --depth {cfg.depth} gives; "
                              f"{kind}_1 .. {kind}_{top} are allowed")
    if "orthogonal_features" in cfg.experiments and cfg.teacher_width >= cfg.input_dim:
        raise ConfigError("--teacher-width", f"{cfg.teacher_width} teacher units span all of R^{cfg.input_dim}: "
                          "orthogonal_features needs --teacher-width below --input-dim")
    for name in ("input_dim", "teacher_width"):
        if cfg.dataset != "teacher" and getattr(cfg, name) != FIELDS[name].default:
            raise ConfigError(flag(name), "applies only with --dataset teacher")
    if cfg.dataset in SYNTHETIC and cfg.npz_keys != NPZ_KEYS:
        raise ConfigError("--npz-keys", "applies only with --dataset FILE.npz")
    return cfg


def parse_bytes(text: str) -> int:
    """'500MB', '4GB', '1.5GiB', '1000000' -> bytes."""
    t = text.strip().upper().replace("IB", "B")
    units = {"TB": 2**40, "GB": 2**30, "MB": 2**20, "KB": 2**10, "B": 1}
    unit = next((u for u in units if t.endswith(u)), "")
    value, mult = float(t[: len(t) - len(unit)]), units.get(unit, 1)
    if not value > 0:
        raise ValueError(text)
    return int(value * mult)


def load_toml(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError("--config", f"no such file: {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("--config", f"{path} is not valid TOML ({e})") from None
    # Sweep files may group their keys in a [sweep] table.
    if set(data) == {"sweep"} and isinstance(data["sweep"], dict):
        data = data["sweep"]
    for key, v in data.items():
        if isinstance(v, dict):
            raise ConfigError("--config", f"unknown table [{key}] in {path}")
    return data
