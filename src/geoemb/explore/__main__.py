"""``python -m geoemb.explore <corpus>``."""

import sys

from geoemb.explore.cli import main

sys.exit(main())
