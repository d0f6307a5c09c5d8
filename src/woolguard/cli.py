"""The ``woolguard`` command line: demo, simulate, replay, explain, serve, and the batch jobs."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def main() -> None:
    """woolguard: decide each campaign event's risk, find gangs, keep budgets exact."""
