"""``python -m geoemb.zonal``: the zonal command line (:mod:`geoemb.zonal.cli`)."""

import sys

from geoemb.zonal.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
