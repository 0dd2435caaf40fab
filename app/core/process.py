"""Child processes that never outlive PriorForge."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """``preexec_fn`` for a child: the kernel sends it SIGTERM when its parent dies (Linux).

    ``finally`` blocks and ``atexit`` do not run when the parent is killed, or when uvicorn
    re-raises SIGTERM after shutting down; this does.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
