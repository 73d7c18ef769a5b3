"""The ``nmt`` command line: the only package that imports Typer.

- :mod:`~nmt.cli.main`: the entry point (signal handlers first, then the commands);
- :mod:`~nmt.cli.app`: the Typer app and the global options;
- :mod:`~nmt.cli.train`, :mod:`~nmt.cli.translate`, :mod:`~nmt.cli.runs`,
  :mod:`~nmt.cli.data`: the commands, one module per group, each a thin layer that parses
  options into the library's option objects and calls the library;
- :mod:`~nmt.cli.exits`: one-line errors and exit statuses for every command.
"""
