"""Runs a script objective's command so that it dies with the worker (Linux).

    python -I -S supervise.py WORKER_PID -- COMMAND [ARG ...]

The worker starts this file (by path, importing nothing of multitune) as the leader of a new
process group; it starts COMMAND in that group, waits for it and exits with its status (a
command killed by a signal makes this process die of the same signal). The kernel sends it
SIGHUP when the worker thread that started it dies, even by SIGKILL (``PR_SET_PDEATHSIG``); it
then SIGKILLs the whole group, COMMAND and whatever COMMAND started. SIGTERM and SIGINT, which
the worker sends to the whole group to stop a run, are left to COMMAND: this process outlives
it to report its status. A COMMAND that cannot be started exits 127 (not found) or 126.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _kill_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)


def _leave_to_command(*_: object) -> None:
    """The group received it; COMMAND decides what it means."""


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: supervise.py WORKER_PID -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    worker_pid, command = int(argv[0]), argv[2:]
    signal.signal(signal.SIGHUP, _kill_group)
    signal.signal(signal.SIGTERM, _leave_to_command)
    signal.signal(signal.SIGINT, _leave_to_command)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0) != 0:
        print(f"multitune: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 126
    if os.getppid() != worker_pid:  # the worker died before prctl took effect
        _kill_group()
    try:
        # Handlers set above are reset to the default in COMMAND by exec.
        pid = os.posix_spawnp(command[0], command, dict(os.environ))
    except FileNotFoundError:
        print(f"multitune: cannot run {command[0]!r}: not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"multitune: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 126
    _, status = os.waitpid(pid, 0)
    if not os.WIFSIGNALED(status):
        return os.waitstatus_to_exitcode(status)
    number = os.WTERMSIG(status)
    if number not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    return 128 + number  # a signal whose default is not to terminate


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
