"""Pull dataset versions from a PriorForge API (standard library only; see client.py)."""

from app.pull.client import (
    Client,
    Mismatch,
    PullError,
    PullReport,
    iter_files,
    parse_target,
    pull,
    verify,
)

__all__ = [
    "Client",
    "Mismatch",
    "PullError",
    "PullReport",
    "iter_files",
    "parse_target",
    "pull",
    "verify",
]
