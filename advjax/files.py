"""Files are what they claim: a file advjax reads (a data file, a run's manifest.json or
results.csv) is opened without blocking and refused unless it is a regular file, so a FIFO
never hangs a sweep and a device such as /dev/zero is never read without end."""

from __future__ import annotations

import errno
import io
import os
import stat


class NotRegularFile(OSError):
    """A path that is a FIFO, a device, a socket or a directory where a file was expected."""


def open_regular(path: str, mode: str = "rb", **kwargs) -> io.IOBase:
    """`open(path, mode)` for reading, refusing anything but a regular file (symbolic
    links to one are followed). Raises NotRegularFile (an OSError, whose strerror says
    what the path is) or the OSError of the open itself."""
    if any(c in mode for c in "wax+"):
        raise ValueError("open_regular reads only")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO with no writer opens at once, and is refused below
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            what = ("a directory" if stat.S_ISDIR(kind) else "a FIFO" if stat.S_ISFIFO(kind) else
                    "a device" if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) else "not a regular file")
            raise NotRegularFile(errno.EINVAL, f"{what}, not a regular file", path)
        os.set_blocking(fd, True)
        return open(fd, mode, closefd=True, **kwargs)
    except BaseException:
        os.close(fd)
        raise
