"""The command line: ``dmv-fast render | plot | preview | export | batch | live | demo | bench``.

- :mod:`~dmv_fast.cli.app`: the typer app and the console entry point (``main``).
- :mod:`~dmv_fast.cli.params`: the options shared by the commands, declared once.
- :mod:`~dmv_fast.cli.terminal`: one-line errors, logging, progress bars, argument spellings.
- one module per command: ``render``, ``plot``, ``preview``, ``export``, ``batch``, ``live``,
  ``demo``, ``bench``.
"""
