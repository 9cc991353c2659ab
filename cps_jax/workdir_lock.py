"""One cps-train per workdir: the lock file `W/lock`, naming the pid and host that hold it.

The lock itself is an flock on that file, which the kernel drops when its process ends however
it ends (kill -9 included): a lock file left behind by a killed run is stale and simply taken
over. Where the file system has no flock, the file's content decides: a holder whose pid is not
alive on this host is stale. On several hosts only process 0 takes the lock (see commands/train.py).
"""

import datetime
import errno
import fcntl
import json
import os
import socket

from cps_jax.errors import ConfigError

LOCK_FILE = "lock"


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive_here(holder: dict) -> bool:
    """Whether the holder may still run: its pid is alive on this host, or it is on another."""
    if holder.get("host") != socket.gethostname():
        return bool(holder)
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


def _holder_text(holder: dict) -> str:
    if not holder:
        return "another cps-train"
    pid, host, since = (holder.get(k) for k in ("pid", "host", "since"))
    return f"cps-train pid {pid} on host {host} (since {since})"


class WorkdirLock:
    def __init__(self, workdir: str):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
        self._fd = None

    def _in_use(self, holder: dict) -> ConfigError:
        return ConfigError(
            f"--workdir {os.path.dirname(self.path)}: in use by {_holder_text(holder)}, "
            f"{self.path}; wait for it to end or use another --workdir"
        )

    def acquire(self) -> "WorkdirLock":
        """Takes the lock, or raises ConfigError naming its holder. A stale lock is taken over."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = _flock(fd)
            previous = _read(self.path)
            if locked is False or (locked is None and _alive_here(previous)):
                os.close(fd)
                raise self._in_use(previous)
            # The holder may have released (removed) the file between our open and our lock.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self._fd = fd
            self._write()
            if previous:
                print(f"Taking over the stale lock of {_holder_text(previous)}", flush=True)
            return self
        raise self._in_use(_read(self.path))

    def _write(self) -> None:
        since = datetime.datetime.now().isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(holder).encode(), 0)
        os.fsync(self._fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:  # removed while still locked: a run waiting on the old file sees it is gone
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
