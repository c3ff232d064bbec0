"""The seed-group size, chosen by measurement without changing a bit of the results.

`train` runs a device's seeds in groups of about `PhaseSpec.group_elements` floats, one
group after another, so that a group's activations stay in cache. The best size depends
on the CPU (on 2-D data at p = 1000: 2^22 on a 2 MB-L2 Xeon, 14% over the default 2^20).
But on XLA:CPU the size can also change a seed's last bits: another number of seeds side
by side is another matmul shape, which XLA may compute with another kernel and another
summation order (PERFORMANCE.md, "Group size and last bits"). A choice made by timing
alone would make results depend on timing noise.

So the probe (`GroupTuner`, the sweep's --tune-groups) keeps only sizes that cannot
change results. Before a phase trains, it trains the phase's first seeds in flight (one
`in_flight` unit, laid out exactly as in the run) for a few steps, once with the default
size and once with each candidate size that lays them out differently, and compares
every seed's state afterwards (parameters, optimizer state, step counts, flags) bit for
bit. A compiled step does the same arithmetic whatever the data, so a size that matches
on every seed for these steps (at least two iterations of the loop body) computes the
same bits on every step; a size that does not match is never used, however fast. The
fastest matching size wins if it beats the default by `MARGIN`, else the default stays.

Only phases whose every computation shows in that state are probed: full-batch phases
on models without BatchNorm, whose zero-error check is the gradient's own forward pass
(`check_is_the_step`; N_p on 2-D data, the case the size matters for), and fixed-budget
phases, which have no check. A minibatch phase checks with a forward pass of its own
whose logits never reach the state (in the probe no seed may stop), so a size that
rounded them differently could go unseen and, at a near-tie, move a stop; such phases
keep the default.

The choice is cached per (machine, JAX version, devices, XLA flags, phase program, shapes)
in `advjax-groups.json` beside the compile cache, so a rerun or the next sweep of the
same shapes on the machine probes nothing, and every choice (probed or cached, with the
times and which sizes matched) goes into manifest.json. Chunk lengths need no probe:
`train` already sizes each chunk at run time (about CHUNK_SECONDS), and results do not
depend on where chunks end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import time

import jax
import numpy as np

from .devices import machine_name
from .results import write_atomic
from .train import Numbers, PhaseSpec, RunOptions, check_is_the_step, in_flight, seed_groups, seed_mesh, train

CANDIDATES = tuple(1 << k for k in (16, 18, 20, 22, 24))  # floats of a seed group's activations and parameters
DEFAULT = PhaseSpec.group_elements
PROBE_SECONDS = 0.25  # about how long the default's timed probe runs
MAX_PROBE_STEPS = 10_000
MARGIN = 0.05  # a matching size must be this much faster than the default to replace it
CACHE_FILE = "advjax-groups.json"


def _take(tree, k: int):
    """The first k seeds of a seed-batched tree (host copies: the probe never touches the run's arrays)."""
    return jax.tree.map(lambda a: np.array(np.asarray(a)[:k]), tree)


def _bits(outcome) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tuple(outcome))]


class GroupTuner:
    """Chooses `PhaseSpec.group_elements` per phase (module docstring). `cache_dir`:
    where the choices are kept (None: nowhere, every run probes). `records`: every
    choice made, for the manifest."""

    def __init__(self, cache_dir: str | None, candidates: tuple[int, ...] = CANDIDATES):
        self.path = os.path.join(cache_dir, CACHE_FILE) if cache_dir else None
        self.candidates = tuple(sorted(set(candidates) | {DEFAULT}))
        self.records: list[dict] = []

    def key(self, spec: PhaseSpec, unit: int, mesh, shapes) -> str:
        what = {"machine": machine_name(), "jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"),
                "devices": [d.device_kind for d in mesh.devices.flat], "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "spec": repr(dataclasses.replace(spec, group_elements=DEFAULT, chunk_steps=0)), "unit": unit,
                "shapes": repr(shapes), "candidates": self.candidates}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]

    def _cached(self) -> dict:
        try:
            with open(self.path) as f:
                table = json.load(f)
            return table if isinstance(table, dict) else {}
        except (OSError, ValueError, TypeError):  # none yet, or unreadable: probe again and rewrite it
            return {}

    def choose(self, spec: PhaseSpec, data: tuple, numbers: Numbers, run: RunOptions | None = None,
               state0: dict | None = None, label: str = "") -> PhaseSpec:
        """`spec` with the group size for training these seeds (train's arguments; `data`:
        its params0, x, y, batch_keys)."""
        params0, x, y, batch_keys = data
        run = run or RunOptions()
        mesh = run.mesh or seed_mesh()
        n_seeds, n_train = batch_keys.shape[0], y.shape[-1]
        unit, _ = in_flight(n_seeds, run.block, run.max_in_flight)
        per_device = -(-unit // mesh.size)
        layouts = {}
        for c in (DEFAULT, *self.candidates):  # the default first: it stands for its layout
            layouts.setdefault(seed_groups(dataclasses.replace(spec, group_elements=c), n_train, per_device), c)
        base = {"phase": label, "seeds_probed": unit}
        if len(layouts) == 1:  # every size lays these seeds out alike: nothing to choose
            return self._chosen(spec, DEFAULT, {**base, "from": "one layout"})
        if not check_is_the_step(spec, n_train):  # its check's own forward pass would go unverified
            return self._chosen(spec, DEFAULT, {**base, "from": "not probed: the check is a forward pass of its own"})
        seed_shapes = lambda tree: jax.tree.map(lambda a: (np.shape(a)[1:], str(np.asarray(a).dtype)), tree)  # noqa: E731
        shapes = (seed_shapes((params0, y, state0)), np.shape(x)[1:] if spec.x_batched else np.shape(x))
        key = self.key(spec, unit, mesh, shapes)
        hit = self._cached().get(key) if self.path else None
        if isinstance(hit, dict) and hit.get("group_elements") in layouts.values():  # probed here before
            return self._chosen(spec, hit["group_elements"], {**base, **hit, "from": "cache"})

        per_seed = lambda v: _take(np.broadcast_to(np.asarray(v), (n_seeds,)), unit)  # noqa: E731
        args = (_take(params0, unit), _take(x, unit) if spec.x_batched else x, _take(y, unit),
                _take(batch_keys, unit))
        # need > n: no seed stops early, every one takes every probe step
        probe = Numbers(per_seed(numbers.lr), 0, need=n_train + 1, momentum=per_seed(numbers.momentum),
                        weight_decay=per_seed(numbers.weight_decay))
        kw = dict(run=RunOptions(mesh=mesh, max_in_flight=unit, block=unit, compact=False),
                  state0=None if state0 is None else _take(state0, unit), numbers=probe)

        steps = 2 * spec.check_every  # two iterations of the loop body: a checked step and its unchecked ones
        seconds, bits = self.timed(spec, DEFAULT, steps, args, kw)
        while seconds < PROBE_SECONDS and steps < MAX_PROBE_STEPS:  # long enough that train's own overhead is small
            more = min(MAX_PROBE_STEPS, steps * max(2, math.ceil(PROBE_SECONDS / max(seconds, 1e-6))))
            steps = -(-more // spec.check_every) * spec.check_every
            seconds, bits = self.timed(spec, DEFAULT, steps, args, kw)
        times, same = {DEFAULT: seconds}, {DEFAULT: True}
        for c in sorted(set(layouts.values()) - {DEFAULT}):
            times[c], b = self.timed(spec, c, steps, args, kw)
            same[c] = b == bits
        fastest = min((c for c in times if same[c]), key=times.get)
        chosen = fastest if times[fastest] < (1 - MARGIN) * times[DEFAULT] else DEFAULT
        found = {"group_elements": chosen, "probe_steps": steps,
                 "seconds": {str(c): round(t, 4) for c, t in sorted(times.items())},
                 "identical": {str(c): same[c] for c in sorted(same)}}
        if self.path:
            table = self._cached()
            table[key] = found
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_atomic(self.path, json.dumps(table, indent=1, sort_keys=True) + "\n")
        return self._chosen(spec, chosen, {**base, **found, "from": "probe"})

    def timed(self, spec: PhaseSpec, size: int, steps: int, args: tuple, kw: dict) -> tuple[float, list[bytes]]:
        """Seconds of `steps` steps of the probed seeds at group size `size` (compiled and
        warmed up first), and the bits of their state afterwards."""
        sp = dataclasses.replace(spec, group_elements=size)
        kw = {**kw, "numbers": dataclasses.replace(kw["numbers"], max_steps=steps)}
        train(sp, *args, **kw)
        t0 = time.perf_counter()
        out = train(sp, *args, **kw)
        return time.perf_counter() - t0, _bits(out)

    def _chosen(self, spec: PhaseSpec, size: int, record: dict) -> PhaseSpec:
        self.records.append({**record, "group_elements": size})
        return dataclasses.replace(spec, group_elements=size)
