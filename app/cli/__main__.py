"""``python -m app.cli``: the same command as ``priorforge``."""

from app.cli import main

main()
