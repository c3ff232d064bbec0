"""A sweep's output directory (--out): checked before anything is written, locked while
a sweep runs in it, and cleaned of a killed run's temporary files.

The lock is an OS file lock (`flock`) on OUT/.lock, held by process 0 for the whole
run. The kernel drops it when the process ends, however it ends, so a killed sweep
never leaves a stale lock; the file itself stays and says who held it last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import socket
import stat
import time

from .errors import ConfigError, WriteError
from .files import open_regular

LOCK_NAME = ".lock"


def entries(out: str) -> list[str]:
    """What the directory holds, the lock file aside."""
    return [e for e in os.listdir(out) if e != LOCK_NAME]


def check_writable(out: str) -> None:
    """--out must be a directory or a path that can become one; nothing is created."""
    if not out.strip():
        raise ConfigError("--out", "must not be empty; give a directory")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError("--out", f"{out} exists and is not a directory")
    probe = os.path.abspath(out)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError("--out", f"{out} cannot be made: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError("--out", f"{out} cannot be written: no write permission in {probe}")


def check_fresh(out: str, meanwhile: bool = False) -> None:
    """A new sweep starts only in an empty (or missing) --out. `meanwhile`: the check
    again, under the lock, in case another sweep filled it since the first."""
    if os.path.isdir(out) and entries(out):
        if meanwhile:
            raise ConfigError("--out", f"{out} was filled by another sweep meanwhile; choose a new directory")
        raise ConfigError("--out", f"{out} exists and is not empty; choose a new directory, "
                          "or add --resume to continue the sweep there")


def make_out(out: str) -> None:
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ConfigError("--out", f"cannot make {out} ({e.strerror or type(e).__name__})") from None


def holder(out: str) -> str:
    """Who holds (or last held) the lock, in words."""
    try:
        with open(os.path.join(out, LOCK_NAME)) as f:
            info = json.load(f)
        return f"pid {info['pid']} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """An exclusive flock on OUT/.lock. `probe()` checks without creating anything;
    `acquire()` creates the file if needed, takes the lock and records the holder."""

    def __init__(self, out: str):
        self.out = out
        self.path = os.path.join(out, LOCK_NAME)
        self.fd: int | None = None

    def _take(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def probe(self) -> None:
        """ConfigError if another process holds the lock now; writes nothing."""
        if not os.path.lexists(self.path):
            return
        self._check_regular()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        try:
            if not self._take(fd):
                raise ConfigError("--out", f"{self.out} is in use by a sweep still running: {holder(self.out)}; "
                                  "wait for it to end, or choose another --out")
        finally:
            os.close(fd)  # closing releases a lock taken only to look

    def _check_regular(self) -> None:
        """The lock is a plain file of --out's own: a symbolic link (which would make the
        sweep write outside --out), a directory or a FIFO there is refused, never followed."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode) else \
                "not a regular file"
            raise ConfigError("--out", f"{self.path} is {what}; a run's lock must be a plain file: remove it, "
                              "or choose another --out")

    def acquire(self) -> None:
        self._check_regular()
        try:  # O_NOFOLLOW: a link put there after the check is refused too, never written through
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                self._check_regular()
            raise ConfigError("--out", f"cannot open {self.path} ({e.strerror or type(e).__name__})") from None
        if not self._take(fd):
            os.close(fd)
            raise ConfigError("--out", f"{self.out} is in use by a sweep still running: {holder(self.out)}; "
                              "wait for it to end, or choose another --out")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_stray_temporaries(out: str) -> list[str]:
    """Delete the `*.tmp<pid>` files that a run killed in the middle of a write left
    (results.csv, manifest.json, and --keep-params' final parameters)."""
    stray = glob.glob(os.path.join(out, "*.tmp[0-9]*")) + glob.glob(os.path.join(out, "checkpoints", "p*", "final",
                                                                                   "*.tmp[0-9]*"))
    for path in stray:
        try:
            os.remove(path)
        except OSError:
            pass
    return stray


# -- atomic writes: a reader or a crash never sees half a file ------------------------------------

@contextlib.contextmanager
def replacing(path: str, suffix: str = ""):
    """Yields a temporary path to write; renames it over `path` when the block ends. A
    write that fails (disk full, I/O error) removes the temporary file, leaves `path` as
    it was, and raises WriteError: a reader or a crash never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise WriteError(f"cannot write {path} ({e.strerror or type(e).__name__}); the last complete "
                         "version is kept: free the space and add --resume") from None


def write_atomic(path: str, text: str) -> None:
    """Write-then-rename (`replacing`): a reader or a crash never sees a
    half-written file, and a failed write leaves the old one (WriteError)."""
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_manifest(run_dir: str) -> dict:
    with open_regular(os.path.join(run_dir, "manifest.json"), "r") as f:
        return json.load(f)


def write_manifest(run_dir: str, manifest: dict) -> None:
    write_atomic(os.path.join(run_dir, "manifest.json"), json.dumps(manifest, indent=2) + "\n")
