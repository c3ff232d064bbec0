"""advjax through its CLI against a per-seed PyTorch loop on 2-D data (issue 28, item 4).

Independent of `advjax.bench`: advjax runs as a user runs it,

    python -m advjax.sweep --dataset spirals --widths P --seeds S --experiments baseline \
        --max-steps M --n-test 100 --quiet --no-figure --out DIR

(spirals, n = 100 training points, full-batch gradient descent at the paper's step 0.01),
and the peer is the loop a researcher writes in PyTorch: one seed after another, one
full-batch step at a time, stopping at zero training error or at the cap. Both run at
two caps, M and 5M; the seed-steps each did (advjax: the `steps` column of results.csv;
the loop: its own count) and the wall time between the two give a marginal rate that
leaves out start-up, compilation and evaluation, which do not grow with the run.

    python scripts/cli_ratio_2d.py --widths 10,100,1000 --seeds 10,100 --json OUT.json

prints one row per width and seed count: advjax's and the loop's seed-steps per second
and their ratio. Torch runs on one thread per core as it would by default.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def advjax_run(width: int, seeds: int, cap: int) -> tuple[int, float]:
    """(seed-steps, wall seconds) of one CLI sweep."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "advjax.sweep", "--dataset", "spirals", "--widths", str(width),
               "--seeds", str(seeds), "--experiments", "baseline", "--max-steps", str(cap), "--n-test", "100",
               "--quiet", "--no-figure", "--out", out]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        with open(os.path.join(out, "results.csv"), newline="") as f:
            steps = sum(int(r["steps"]) for r in csv.DictReader(f))
    return steps, seconds


def torch_loop(width: int, seeds: int, cap: int) -> tuple[int, float]:
    """(seed-steps, seconds) of the per-seed PyTorch loop on the same kind of data:
    each seed its own spirals draw (advjax's generator), its own torch-initialised net."""
    import jax
    import numpy as np
    import torch

    from advjax.data import spirals_points

    total, t0 = 0, time.perf_counter()
    for seed in range(seeds):
        x_np, y_np = (np.asarray(a) for a in spirals_points(jax.random.PRNGKey(seed), 100))
        x, y = torch.tensor(x_np, dtype=torch.float32), torch.tensor(y_np, dtype=torch.float32)
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        for _ in range(cap):
            logits = net(x)[:, 0]
            if bool(((logits > 0).float() == y).all()):
                break
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += 1
    return total, time.perf_counter() - t0


def marginal(run, width: int, seeds: int, cap: int) -> dict:
    """Seed-steps per second between a run at `cap` and one at 5 x `cap`, after a first
    run at `cap` that is not counted (imports, advjax's compilation cache filled)."""
    run(width, seeds, cap)
    s1, t1 = run(width, seeds, cap)
    s2, t2 = run(width, seeds, 5 * cap)
    return {"seed_steps": [s1, s2], "seconds": [round(t1, 3), round(t2, 3)],
            "rate": (s2 - s1) / (t2 - t1) if t2 > t1 and s2 > s1 else float("nan")}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="10,100,1000")
    ap.add_argument("--seeds", default="10,100", help="advjax's seed counts (the loop's rate is per seed)")
    ap.add_argument("--cap", type=int, default=2000, help="advjax's shorter cap (the longer is 5x)")
    ap.add_argument("--torch-seeds", type=int, default=2)
    ap.add_argument("--torch-cap", type=int, default=400, help="the loop's shorter cap (the longer is 5x)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    import torch

    rows = []
    print(f"{'p':>5} {'seeds':>6} {'advjax':>12} {'torch loop':>11} {'ratio':>7}   (seed-steps/s, marginal)")
    for width in (int(w) for w in args.widths.split(",")):
        loop = marginal(torch_loop, width, args.torch_seeds, args.torch_cap)
        for seeds in (int(s) for s in args.seeds.split(",")):
            ours = marginal(advjax_run, width, seeds, args.cap)
            rows.append({"width": width, "seeds": seeds, "advjax": ours, "torch_loop": loop,
                         "ratio": ours["rate"] / loop["rate"]})
            print(f"{width:>5} {seeds:>6} {ours['rate']:>12.0f} {loop['rate']:>11.0f} {rows[-1]['ratio']:>6.1f}x",
                  flush=True)
    meta = {"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
