"""The entry point of ``nmt`` and ``python -m nmt``.

:func:`main` installs the signal handlers before anything heavy is imported, so Ctrl-C
is handled the same way from the first moment (see :mod:`nmt.interrupts`); the commands
are imported after that, which is why the import of the app sits inside the function.
"""

from __future__ import annotations

import sys


def main() -> None:
    from nmt import interrupts

    interrupts.install()
    try:
        from nmt.cli.app import app
    except KeyboardInterrupt as e:  # while the commands are being imported
        print(str(e) or "interrupted", file=sys.stderr)
        sys.exit(interrupts.exit_status(e))
    app()
