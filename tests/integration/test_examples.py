"""The runnable examples run: each is started as a user would, and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_tracing_example_prints_the_attachment_and_a_retried_trace() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tracing" / "traced_call.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["Hello world (tenant acme)", "Hello again (tenant acme)"]
    assert done.stdout.count("SERVER [UNSET]") == 2
    assert "events: retry" in done.stdout
    assert "dubbok.attempt=2" in done.stdout
