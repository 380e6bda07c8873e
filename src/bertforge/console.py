"""What a user sees while bertforge works: progress bars and log lines, with no set-up (no torch here)."""

from __future__ import annotations

import logging
import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel, where stderr is no terminal yet a live bar renders fine."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def live_progress(requested: bool = True) -> bool:
    """Draw a progress bar on a terminal or in a notebook; logs and pipes get periodic log lines instead."""
    return requested and (sys.stderr.isatty() or in_notebook())


def show_logs_without_setup() -> None:
    """Python and notebook callers see progress lines and the end-of-run summary with no logging set-up.

    Only when nobody configured logging (the CLI and most applications do): then bertforge's own
    logger gets a stderr handler at INFO. A handler set up later by the user is left alone.
    """
    logger = logging.getLogger("bertforge")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
