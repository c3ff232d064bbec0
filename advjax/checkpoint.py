"""Orbax checkpoints of phases: Θ_adv kept for later sweeps, and in-flight state saved
so a killed sweep resumes where it was.

Each (width, phase prefix) of a sweep has one directory under OUT/checkpoints/p<width>/;
the phase that trains θ0 on random labels is `theta_adv`. Inside, an Orbax
CheckpointManager keeps the last two saves, each with two items:

- `state`: the trainer's full seed-batched state (trainable params, optimizer state,
  per-seed step counters, done/converged/diverged flags, minibatch PRNG keys, and the
  running statistics of a BatchNorm model; a model without has none, and its saves
  leave the field out, laid out as before BatchNorm existed);
- `meta`: JSON: the fingerprint (everything that determines the phase's result),
  whether the phase is complete, and per-seed steps and converged flags.

Restores target the caller's array shapes and shardings, so a checkpoint written with
the seeds spread over several devices restores on another device count.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from .errors import CheckpointError, WriteError  # noqa: F401 - checkpoint's public names too
from .rundir import read_manifest, replacing

FORMAT_VERSION = 3  # 2: per-phase training settings in the fingerprint; 3: data by content (sha256)
THETA_ADV = "theta_adv"


def _from_orbax(record: logging.LogRecord) -> bool:
    """False for an error Orbax's writer threads log (with their traceback) before the
    save raises it again in the caller, where it becomes WriteError's one line."""
    return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


@contextlib.contextmanager
def _orbax_errors_unlogged():
    loggers = [logging.getLogger("absl"), logging.getLogger()]
    for logger in loggers:
        logger.addFilter(_from_orbax)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_from_orbax)


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0][:120] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _quiet_orbax() -> None:
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not getattr(sys.unraisablehook, "_advjax", False):
        sys.unraisablehook = _drop_late_orbax_callbacks(sys.unraisablehook)


def _drop_late_orbax_callbacks(previous):
    """An unraisable-exception hook that drops one kind only: when an Orbax read fails
    (a damaged checkpoint), tensorstore's other reads of it still complete afterwards
    and their callbacks try to wake the asyncio loop that Orbax has already closed.
    The failure itself is reported (CheckpointError, one line); this is its echo, which
    would print a traceback after that line. Everything else goes to `previous`."""

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._advjax = True
    return hook


def digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def differences(found, wanted, where: str = "") -> list[str]:
    """Human-readable list of the fields where two fingerprints differ, nested fields
    named by their path (e.g. phases[0].lr)."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        return [d for key in sorted(set(found) | set(wanted))
                for d in differences(found.get(key, "<absent>"), wanted.get(key, "<absent>"),
                                     f"{where}.{key}" if where else key)]
    if isinstance(found, list) and isinstance(wanted, list) and len(found) == len(wanted) and any(
            isinstance(v, (dict, list)) for v in found):
        return [d for i, (a, b) in enumerate(zip(found, wanted)) for d in differences(a, b, f"{where}[{i}]")]
    if found == wanted:
        return []
    short = lambda v: (json.dumps(v)[:60] + "...") if len(json.dumps(v)) > 63 else json.dumps(v)  # noqa: E731
    return [f"{where} (checkpoint {short(found)}, this sweep {short(wanted)})"]


def _like(tree):
    import orbax.checkpoint as ocp

    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _on_disk(state):
    """A trainer state (a NamedTuple) as it is saved: its fields as a dict, without the
    running statistics where there are none (checkpoints made before them still read)."""
    return {k: v for k, v in state._asdict().items() if k != "model_state" or jax.tree.leaves(v)}


def _from_disk(saved: dict, like):
    """The state `_on_disk` saved, as `like`'s type (a field left out was empty)."""
    return type(like)(**{k: saved[k] if k in saved else v for k, v in like._asdict().items()})


class PhaseStore:
    """Saves and restores one phase's trainer state (see module docstring).

    `every` is the periodic save interval: ("steps", N) or ("seconds", S), or None for
    saves only at the end and on interruption.
    """

    def __init__(self, directory: str, fingerprint: dict, every: tuple[str, float] | None = None,
                 flag: str = "--resume"):
        self.directory = os.path.abspath(directory)
        self.fingerprint = fingerprint
        self.every = every
        self.flag = flag
        self._last_time = time.monotonic()
        self._last_step = 0
        self._n_saves = 0

    # -- low level -----------------------------------------------------------------
    @contextlib.contextmanager
    def _manager(self, create: bool = False):
        """An Orbax CheckpointManager for one operation, closed afterwards on every path
        (an open one leaves background threads that print tracebacks at exit)."""
        import orbax.checkpoint as ocp

        _quiet_orbax()
        # Every process reads checkpoints on its own and only process 0 writes them,
        # so each process's manager syncs with no other.
        me = jax.process_index()
        if create and me == 0:
            os.makedirs(self.directory, exist_ok=True)
        extra = {}
        if jax.process_count() > 1:
            extra["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me})
        opts = ocp.CheckpointManagerOptions(max_to_keep=2, create=False, enable_async_checkpointing=False,
                                            cleanup_tmp_directories=create, **extra)
        mgr = ocp.CheckpointManager(self.directory, options=opts, item_names=("state", "meta"))
        try:
            yield mgr
        finally:
            mgr.close()

    def exists(self) -> bool:
        return os.path.isdir(self.directory) and any(
            d.isdigit() for d in os.listdir(self.directory))

    def read_meta(self) -> dict:
        """The newest save's metadata; CheckpointError if unreadable."""
        import orbax.checkpoint as ocp

        try:
            with self._manager() as mgr:
                step = mgr.latest_step()
                if step is None:
                    raise FileNotFoundError("no completed save")
                meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as e:  # orbax raises many types for a damaged directory
            raise CheckpointError(self.flag, f"checkpoint {self.directory} is unreadable ({_reason(e)})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), dict):
            raise CheckpointError(self.flag, f"checkpoint {self.directory} is unreadable (its meta is not a "
                                  "fingerprinted record)")
        self._n_saves = step + 1
        return meta

    def check(self, meta: dict) -> None:
        found = meta.get("fingerprint", {})
        if found != self.fingerprint:
            diff = differences(found, self.fingerprint)
            raise CheckpointError(self.flag, f"checkpoint {self.directory} does not match this sweep: "
                                  f"it differs in {'; '.join(diff)}")

    # -- what the trainer calls ------------------------------------------------------
    def restore(self, like) -> Any | None:
        """The newest saved state shaped (and sharded) like `like`, or None if none."""
        import orbax.checkpoint as ocp

        if not self.exists():
            return None
        meta = self.read_meta()
        self.check(meta)
        try:
            with self._manager() as mgr:
                state = _from_disk(mgr.restore(mgr.latest_step(), args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_like(_on_disk(like))))).state, like)
        except Exception as e:
            raise CheckpointError(self.flag, f"checkpoint {self.directory} is unreadable ({_reason(e)})") from None
        if jax.tree.structure(state) != jax.tree.structure(like):
            raise CheckpointError(self.flag, f"checkpoint {self.directory} holds another state layout")
        for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(like)):
            if np.shape(got) != np.shape(want):  # e.g. metadata edited to list more seeds than were saved
                raise CheckpointError(self.flag, f"checkpoint {self.directory} is damaged: it holds an array of shape "
                                      f"{tuple(np.shape(got))} where its metadata implies {tuple(np.shape(want))}")
        self._last_step = int(np.asarray(state.step).max())
        return state

    def save(self, state, complete: bool) -> None:
        import orbax.checkpoint as ocp

        self._last_time = time.monotonic()
        self._last_step = int(np.asarray(state.step).max())
        if jax.process_index() != 0:  # one writer; every process holds the same state
            return
        meta = {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "fingerprint_digest": digest(self.fingerprint),
            "complete": complete,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "steps": np.asarray(state.step).tolist(),
            "converged": np.asarray(state.converged).tolist(),
            "diverged": np.asarray(state.diverged).tolist(),
        }
        try:
            with _orbax_errors_unlogged(), self._manager(create=True) as mgr:
                mgr.save(self._n_saves, args=ocp.args.Composite(state=ocp.args.StandardSave(_on_disk(state)),
                                                                 meta=ocp.args.JsonSave(meta)), force=True)
                mgr.wait_until_finished()
        except Exception as e:  # ENOSPC, EIO, ...: Orbax wraps them in many types
            raise WriteError(f"cannot save checkpoint {self.directory} ({_reason(e)}); the last complete save "
                             "is kept: free the space and add --resume") from None
        self._n_saves += 1
        self._last_time = time.monotonic()
        self._last_step = int(np.asarray(state.step).max())

    def due(self, max_step: int) -> bool:
        """Whether a periodic save is due (by steps or by wall time since the last)."""
        if self.every is None:
            return False
        kind, amount = self.every
        if kind == "steps":
            return max_step - self._last_step >= amount
        return time.monotonic() - self._last_time >= amount

    # -- copying a finished phase from another sweep ----------------------------------------------
    def adopt(self, other: PhaseStore) -> None:
        """Take `other`'s complete checkpoint as ours (after checking it fits)."""
        if not other.exists():
            raise CheckpointError(other.flag, f"no checkpoint at {other.directory}")
        meta = other.read_meta()
        other.check(meta)
        if not meta.get("complete"):
            raise CheckpointError(other.flag, f"checkpoint {other.directory} is not finished; "
                                  "resume that sweep first")
        with other._manager() as mgr:
            step = str(mgr.latest_step())
        os.makedirs(self.directory, exist_ok=True)
        shutil.copytree(os.path.join(other.directory, step), os.path.join(self.directory, "0"))

    def verify(self) -> dict:
        """Check, before anything is written, that a finished checkpoint is there, fits
        and can be read whole (its state too); returns its meta."""
        import orbax.checkpoint as ocp

        if not self.exists():
            raise CheckpointError(self.flag, f"no checkpoint at {self.directory}")
        meta = self.read_meta()
        self.check(meta)
        if not meta.get("complete"):
            raise CheckpointError(self.flag, f"checkpoint {self.directory} is not finished; resume that sweep first")
        try:
            with self._manager() as mgr:
                state = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
        except Exception as e:
            raise CheckpointError(self.flag, f"checkpoint {self.directory} is unreadable ({_reason(e)})") from None
        _check_seed_count(state, meta, self.flag, self.directory)
        return meta


def _check_seed_count(state, meta: dict, flag: str, directory: str) -> None:
    """Every saved array has one row per seed its metadata lists (an edited or mixed-up
    meta made a vmap fail deep inside a sweep)."""
    seeds = meta["fingerprint"].get("seeds")
    n = len(seeds) if isinstance(seeds, list) else -1
    steps = meta.get("steps")
    if any(np.ndim(a) == 0 or np.shape(a)[0] != n for a in jax.tree.leaves(state)) \
            or not isinstance(steps, list) or len(steps) != n:
        raise CheckpointError(flag, f"checkpoint {directory} is damaged: its metadata lists {max(n, 0)} seeds and "
                              "its arrays hold another number")


# -- reading a saved phase back, from Python ---------------------------------------------------------

class SavedPhase(NamedTuple):
    """A phase's newest save, as host arrays (seed axis first)."""

    params: dict  # the layers the phase trained (every layer for Θ_adv)
    model_state: dict  # running statistics of a BatchNorm model ({} for one without)
    model: Any  # the Model that applies them: model.apply(params of one seed, x)
    seeds: list[int]
    steps: np.ndarray
    converged: np.ndarray
    diverged: np.ndarray
    complete: bool  # False: a phase interrupted in flight (resume its sweep to finish it)
    fingerprint: dict  # what determined it: data, model, seeds, each phase's settings
    directory: str


def load_phase(directory: str) -> SavedPhase:
    """A phase checkpoint (e.g. OUT/checkpoints/p100/theta_adv) read without its sweep:
    the model comes from the fingerprint, the arrays as saved. CheckpointError if there
    is none or it is unreadable."""
    import orbax.checkpoint as ocp

    from .model import model_from_options

    store = PhaseStore(directory, {}, flag="checkpoint")
    if not store.exists():
        raise CheckpointError("checkpoint", f"no checkpoint at {store.directory}")
    meta = store.read_meta()
    try:
        with store._manager() as mgr:
            saved = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    except Exception as e:
        raise CheckpointError("checkpoint", f"checkpoint {store.directory} is unreadable ({_reason(e)})") from None
    host = jax.tree.map(np.asarray, saved)
    fp = meta["fingerprint"]
    _check_seed_count(host, meta, "checkpoint", store.directory)
    return SavedPhase(host["params"], host.get("model_state", {}), model_from_options(fp["model"]), list(fp["seeds"]),
                      host["step"], host["converged"], host["diverged"], bool(meta.get("complete")), fp,
                      store.directory)


def load_theta_adv(out: str, width: int, **phase1) -> SavedPhase:
    """Θ_adv of `width` in a sweep's output directory (the network after phase 1, on
    random labels, every seed). In a sweep whose grid varies phase 1, name the point by
    the settings its fingerprint records for phase 1, e.g. `lr=0.03` or
    `random_fraction=0.5` (ValueError lists them when the choice is ambiguous)."""
    try:
        saved = read_manifest(out)["checkpoints"][f"p{width}"]
        if not (isinstance(saved, dict) and all(isinstance(v, str) and not os.path.isabs(v)
                                                and ".." not in v.split(os.sep) for v in saved.values())):
            raise TypeError(f"manifest.json's checkpoints.p{width} is not a map of paths inside the run")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{out} holds no sweep of width {width} ({type(e).__name__}: {e})") from None
    found = [load_phase(os.path.join(out, rel)) for name, rel in sorted(saved.items())
             if name.split("/")[0] == THETA_ADV and PhaseStore(os.path.join(out, rel), {}).exists()]
    if not found:
        raise ValueError(f"{out} keeps no Θ_adv for width {width} (its experiments start from none)")
    first = [f.fingerprint["phases"][0] for f in found]
    fits = [f for f, rec in zip(found, first) if all(rec.get(k) == v for k, v in phase1.items())]
    if not fits:
        have = [{k: rec.get(k) for k in phase1} for rec in first]
        raise ValueError(f"no Θ_adv of width {width} in {out} has {phase1}; phase 1 there: {have}")
    if len(fits) > 1:
        varied = sorted({k for rec in first for k, v in rec.items() if v != first[0].get(k)})
        points = [{k: rec.get(k) for k in varied} for rec in first]
        raise ValueError(f"{len(fits)} Θ_adv of width {width} in {out} fit {phase1}; name one by "
                         f"{', '.join(varied)}: {points}")
    return fits[0]


# -- final parameters of an experiment (--keep-params), for figures ----------------------------------

def final_path(out: str, width: int, experiment: str) -> str:
    """Where a sweep in `out` keeps an experiment's final parameters (--keep-params)."""
    return os.path.join(out, "checkpoints", f"p{width}", "final", f"{experiment}.npz")


def save_final(path: str, params: dict, model_options: dict, seeds: list[int], x_train, y_train,
               state: dict | None = None) -> None:
    """Every layer's final parameters (seed-batched), and running statistics of a
    BatchNorm model, with the model that applies them and the training data they were
    fitted to, in one .npz (written atomically)."""
    if jax.process_index() != 0:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    flat = {f"{part}/" + "/".join(str(getattr(k, "key", k)) for k in keys): np.asarray(v)
            for part, tree in (("params", params), ("state", state or {}))
            for keys, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    meta = {"model": model_options, "seeds": list(seeds)}
    with replacing(path, ".npz") as tmp:
        np.savez(tmp, meta=np.array(json.dumps(meta)), x_train=np.asarray(x_train), y_train=np.asarray(y_train),
                 **flat)


def restore_final(path: str) -> tuple[dict, dict, list[int], np.ndarray, np.ndarray]:
    """(params, model options, seeds, x_train, y_train) saved by `save_final`.
    x_train carries the seed axis when the seeds had their own data. FileNotFoundError
    if the sweep kept no parameters there."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no final parameters (was the sweep run with --keep-params?)")
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        return _saved_tree(f, "params"), meta["model"], meta["seeds"], f["x_train"], f["y_train"]


def restore_final_state(path: str) -> dict:
    """The running statistics `save_final` kept beside the parameters ({} for a model
    without BatchNorm)."""
    with np.load(path, allow_pickle=False) as f:
        return _saved_tree(f, "state")


def _saved_tree(f, part: str) -> dict:
    """The nested dict of `save_final`'s entries part/layer/.../leaf."""
    tree: dict = {}
    for name in f.files:
        if name.startswith(part + "/"):
            *layers, leaf = name.split("/")[1:]
            node = tree
            for layer in layers:
                node = node.setdefault(layer, {})
            node[leaf] = f[name]
    return tree


class PointStores:
    """The stores of several phase prefixes (grid points) trained as one batch: each
    prefix's seeds (a contiguous block of `n_seeds` rows) are saved to and restored from
    its own PhaseStore, with its own fingerprint, so that a checkpoint stays one grid
    point's whatever grid trained it."""

    def __init__(self, stores: list[PhaseStore], n_seeds: int):
        self.stores, self.n_seeds = stores, n_seeds

    def _part(self, tree, d: int):
        return jax.tree.map(lambda a: a[d * self.n_seeds: (d + 1) * self.n_seeds], tree)

    def restore(self, like):
        """Each point's newest save; a point with none starts from `like`'s rows."""
        parts = [store.restore(self._part(like, d)) for d, store in enumerate(self.stores)]
        if all(p is None for p in parts):
            return None
        parts = [self._part(like, d) if p is None else p for d, p in enumerate(parts)]
        return jax.tree.map(lambda *a: np.concatenate([np.asarray(v) for v in a]), *parts)

    def due(self, max_step: int) -> bool:
        return self.stores[0].due(max_step)  # saved together, so their clocks agree

    def save(self, state, complete: bool) -> None:
        for d, store in enumerate(self.stores):
            store.save(self._part(state, d), complete)
