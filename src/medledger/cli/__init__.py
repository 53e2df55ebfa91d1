"""The ``medledger`` command line (Typer)."""
