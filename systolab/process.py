"""Child processes that do not outlive systolab.

A sweep or a board build killed with `kill -9` gets no chance to stop what it started: a
nextpnr run, a pool worker in the middle of an RTL simulation. On Linux the kernel can do it
(`PR_SET_PDEATHSIG`): `die_with_parent()` is a `preexec_fn` for `subprocess` and
`kill_me_with_parent()` the `initializer` of a process pool.
"""

from __future__ import annotations

import os
import signal

__all__ = ["die_with_parent", "kill_me_with_parent"]


def kill_me_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (no-op off Linux); exits at
    once if the parent (`parent`, when given) is already gone."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):      # not Linux: the child may outlive a killed parent
        return
    if parent is not None and os.getppid() != parent:     # died before prctl took effect
        os._exit(1)


def die_with_parent(parent: int | None = None):
    """A `preexec_fn`: the child gets SIGKILL when `parent` (default: this process) dies."""
    parent = os.getpid() if parent is None else parent
    return lambda: kill_me_with_parent(parent)
