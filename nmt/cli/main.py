"""The entry point of ``nmt`` and ``python -m nmt``.

:func:`main` first re-executes the process on the allocator ``NMT_ALLOCATOR`` names
(:mod:`nmt.allocator`: it must be chosen before the process starts).

:func:`main` installs the signal handlers before anything heavy is imported, so Ctrl-C
is handled the same way from the first moment (see :mod:`nmt.interrupts`); the commands
are imported after that, which is why the import of the app sits inside the function.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from nmt import allocator, interrupts

    if not allocator.known(os.environ):
        print(f"error: {allocator.UNKNOWN}", file=sys.stderr)
        sys.exit(2)
    allocator.use_configured()
    interrupts.install()
    try:
        from nmt.cli.app import app
    except KeyboardInterrupt as e:  # while the commands are being imported
        print(str(e) or "interrupted", file=sys.stderr)
        sys.exit(interrupts.exit_status(e))
    app()
