"""Subcommands of the `tritonconv` CLI, one module each (see tritonconv/cli.py)."""
