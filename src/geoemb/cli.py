"""``geoemb``: the installed command, one sub-command per library tool.

Each sub-command hands the rest of the command line to the tool's own ``main(argv)`` (the same
function ``python -m geoemb.<tool>`` runs), so ``geoemb <tool> --help`` shows that tool's full help
and the tools stay usable on their own. Only the chosen tool is imported: ``geoemb --help`` is quick.

Training, evaluation and inference stay Hydra apps: ``python train.py``, ``python evaluate.py``,
``python infer.py`` (see the README).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geoemb.errors import GeoembError

__all__ = ["TOOLS", "main"]


@dataclass(frozen=True)
class Tool:
    """A sub-command: ``module:function`` taking ``argv`` and returning an exit status."""

    target: str
    help: str

    def load(self) -> Callable[[list[str]], int | None]:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


TOOLS: dict[str, Tool] = {
    "retrieval": Tool(
        "geoemb.retrieval.cli:main",
        "binary corpus: synth, build-corpus, query, exemplar, bench (TerraBit)",
    ),
    "zonal": Tool(
        "geoemb.zonal.cli:main",
        "per-polygon embedding statistics: stats, pca-rgb, evaluate, synthetic",
    ),
    "explore": Tool(
        "geoemb.explore.cli:main", "map explorer: search a corpus by clicking a map (127.0.0.1)"
    ),
    "compression": Tool(
        "geoemb.reporting.compression:main", "compression study: aggregate <results_dir>"
    ),
    "geopool": Tool("geoemb.reporting.geopool:main", "GeoPool tables + plot from <results_dir>"),
    "synthetic": Tool(
        "geoemb.synthetic.__main__:main", "write a synthetic stand-in in a dataset's real layout"
    ),
    "info": Tool("geoemb.cli:info", "list every registry: pooling methods, compressors, …"),
}


def _registries() -> dict[str, object]:
    """Every named family (imported on demand: this pulls in torch)."""
    from geoemb.compression.registry import COMPRESSORS
    from geoemb.inference.merge import MERGE_POLICIES
    from geoemb.pooling import METHODS
    from geoemb.pooling.heads import HEADS
    from geoemb.retrieval.search import BACKENDS
    from geoemb.segmentation.models import NETS
    from geoemb.sources import SOURCES

    return {
        "pooling methods": METHODS,
        "pooling heads": HEADS,
        "compressors": COMPRESSORS,
        "search backends": BACKENDS,
        "segmentation nets": NETS,
        "inference merge policies": MERGE_POLICIES,
        "embedding sources": SOURCES,
    }


def info(argv: Sequence[str] | None = None) -> int:
    """``geoemb info [family]``: the names each registry accepts, with one line each."""
    ap = argparse.ArgumentParser(prog="geoemb info", description=info.__doc__)
    ap.add_argument("family", nargs="?", help="only this family (e.g. 'pooling methods')")
    args = ap.parse_args(argv)
    regs = _registries()
    if args.family:
        matches = {k: v for k, v in regs.items() if args.family.lower() in k}
        if not matches:
            print(f"geoemb info: unknown family {args.family!r}; one of: {', '.join(regs)}")
            return 2
        regs = matches
    for name, reg in regs.items():
        print(f"{name}:\n{reg.describe()}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="geoemb",
        description="geoemb library tools. Training/evaluation/inference: python train.py | "
        "evaluate.py | infer.py (Hydra).",
        epilog="`geoemb <tool> --help` shows a tool's own options.",
    )
    sub = ap.add_subparsers(dest="tool", metavar="<tool>", required=True)
    for name, tool in TOOLS.items():
        sub.add_parser(name, help=tool.help, add_help=False)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geoemb`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TOOLS:
        parser.parse_args([name])  # argparse's own "invalid choice" message and exit 2
    run = TOOLS[name].load()
    try:
        status = run(rest)
    except GeoembError as e:  # a user-facing problem: one line, no traceback
        print(f"geoemb {name}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse inside the tool
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
