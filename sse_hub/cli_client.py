"""``sse-hub publish`` and ``sse-hub tail``: the command-line face of ``sse_hub.client``."""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``publish`` and ``tail`` subcommands."""


def run(args: argparse.Namespace) -> int:
    """Run ``publish`` or ``tail``; returns the exit code."""
    raise NotImplementedError(args.command)
