"""The sweep CLI: `python -m advjax.sweep --dataset mnist --widths 10,100,1000`.

A thin layer over `engine.run_sweep`: parse the options, join a multi-process run, run
the sweep, print its table. Bad input exits 2 with one line, a failed write 1, an
interrupt (Ctrl-C or SIGTERM) 130 with every finished width saved.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from .devices import use_cpu_devices
from .engine import Rows, run_sweep
from .errors import CheckpointError, ConfigError, DataError, WriteError
from .options import SweepConfig, parse_args
from .runtime import init_distributed
from .summary import summary_table

__all__ = ["Rows", "SweepConfig", "main", "run_sweep"]


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # a pre-empted batch job saves like Ctrl-C


def _terminate_quietly(signum, frame):
    """SIGTERM once the sweep's files are final (printing the table, jax's exit handlers):
    end at once, with no traceback; nothing is left to save."""
    sys.stderr.flush()
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate_quietly)


def _main(argv: list[str] | None) -> int:
    from .engine import default_out

    out = None
    try:
        cfg = parse_args(argv)
        out = cfg.out or default_out(cfg.dataset)
        use_cpu_devices(cfg.cpu_devices)
        if cfg.distributed:
            init_distributed(cfg.coordinator, cfg.num_processes, cfg.process_id)
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
        rows = run_sweep(cfg, out)
        signal.signal(signal.SIGTERM, _terminate_quietly)  # every file is final: printing is all that is left
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"advjax.sweep: error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"advjax.sweep: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = f"state saved in {out}; add --resume to the same command to continue" if out else "nothing written"
        print(f"\nadvjax.sweep: interrupted; {where}", file=sys.stderr)
        return 130
    print(summary_table(rows))
    print(f"results: {os.path.join(out, 'results.csv')}")
    if rows.figure:
        print(f"summary figure: {rows.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
