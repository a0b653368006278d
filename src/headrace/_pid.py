"""This process's host, and whether a process id names a live process: for the store,
the process executor and result storage."""

from __future__ import annotations

import os


def _hostname() -> str:
    if hasattr(os, "uname"):  # what socket.gethostname() says, without importing socket
        return os.uname().nodename
    import socket

    return socket.gethostname()


HOST = _hostname()


def alive(pid: int) -> bool:
    """True unless no process has this id (one we may not signal is still alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
