"""User-facing errors: one line that names the problem and the fix, never a deep traceback."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(ValueError):
    """Bad input from the user (option, path, file contents). The message is one line and says how to fix it."""


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; a :class:`UserError` prints ``error: <message>`` on stderr and exits with status 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
