"""Map explorer: search a binary-code corpus by clicking a map (TerraBit's app, served locally).

``geoemb explore <corpus>`` (or ``python -m geoemb.explore <corpus>``) starts a FastAPI app on
127.0.0.1 and prints its URL. The page (Leaflet, vendored by ``scripts/vendor_js.py``) shows a
PCA-RGB basemap drawn from the corpus' own codes; clicks add positive/negative exemplars and each
change re-runs an exemplar query over the viewport (library scoring, manifest-pruned rows), drawing
top-k markers, a score heat map and a histogram; results export as GeoParquet 1.1 / GeoTIFF.

Library use::

    from geoemb.explore import create_app
    app = create_app("data/corpus")       # an ASGI app (tests: fastapi.testclient.TestClient)
"""

from __future__ import annotations

from geoemb.explore.app import create_app
from geoemb.explore.cli import main

__all__ = ["create_app", "main"]
