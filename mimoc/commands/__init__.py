"""Subcommands of the ``mimoc`` CLI, one module each (see :mod:`mimoc.cli`)."""
