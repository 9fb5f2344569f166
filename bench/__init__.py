"""Benchmarks for dubbok, measured against raw grpcio in the same run.

Run them with ``python -m bench [SCENARIO] [options]`` from the repository root (``make
bench`` runs the default scenario, ``overhead``). ``python -m bench --list`` names the
scenarios.

A scenario is a module ``bench/<name>.py`` that defines::

    DESCRIPTION: str                                   # one line for --list
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int           # the process exit code

and builds on :mod:`bench.harness`: spawned server and client processes
(:class:`~bench.harness.Child`), the closed-loop load runners (sync threads or asyncio
tasks), percentiles, medians over repeats, and the table and JSON report.
"""
