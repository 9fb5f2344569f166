"""``python -m bench [SCENARIO] [options]``: run one benchmark scenario (default ``overhead``).

``python -m bench --list`` names the scenarios; ``python -m bench SCENARIO -h`` shows a
scenario's options. A scenario is any module ``bench/<name>.py`` with ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int`` (see :mod:`bench`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import bench
from bench.harness import BenchError

DEFAULT_SCENARIO = "overhead"
_NOT_SCENARIOS = frozenset({"harness"})


def _is_scenario(module: ModuleType) -> bool:
    return all(hasattr(module, name) for name in ("DESCRIPTION", "add_arguments", "run"))


def scenarios() -> dict[str, str]:
    """Every scenario module in ``bench/``, by name, with its one-line description."""
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or info.name in _NOT_SCENARIOS:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if _is_scenario(module):
            found[info.name] = str(module.DESCRIPTION)
    return found


def _load(name: str) -> ModuleType:
    known = scenarios()
    if name not in known:
        raise SystemExit(
            f"bench: no scenario {name!r}; scenarios: {', '.join(sorted(known)) or 'none'}"
        )
    return importlib.import_module(f"bench.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the scenario, return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--list"]:
        for name, description in sorted(scenarios().items()):
            print(f"{name:<12} {description}")
        return 0
    # The scenario is a leading bare word, so "-m bench --duration 3" keeps the default.
    name = args.pop(0) if args and not args[0].startswith("-") else DEFAULT_SCENARIO
    module = _load(name)
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {name}",
        description=str(module.DESCRIPTION),
        epilog="Other scenarios: python -m bench --list",
    )
    module.add_arguments(parser)
    options = parser.parse_args(args)
    try:
        code = module.run(options)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
