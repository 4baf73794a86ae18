"""
Lock files that keep two benchmark processes from running the same run: one file per run, created exclusively and
holding its owner's host name and process id, so that a lock left by a process of this host that has ended can be
taken over.
"""

import os
import pathlib
import socket


def acquire_lock(path: pathlib.Path) -> bool:
    """
    Take a run's lock file; a lock left by a process of this host that has ended is taken over.

    :return: Whether the lock was taken
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, pid = path.read_text().split()
            if host != socket.gethostname() or _alive(int(pid)):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as file:
            file.write(owner)
        return True
    return False


def _alive(pid: int) -> bool:
    """:return: Whether a process of this host with that id exists (one of another user's counts)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
