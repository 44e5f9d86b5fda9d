"""``python -m geoemb.retrieval …``: the retrieval CLI (:mod:`geoemb.retrieval.cli`)."""

import sys

from geoemb.retrieval.cli import build_parser, dispatch, main, run

__all__ = ["build_parser", "dispatch", "main", "run"]

if __name__ == "__main__":
    sys.exit(run())
