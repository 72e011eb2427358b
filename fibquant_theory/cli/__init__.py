"""The ``fibquant`` command line (entry point :func:`fibquant_theory.cli.main.main`)."""
