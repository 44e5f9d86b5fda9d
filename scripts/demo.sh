#!/usr/bin/env bash
# `make demo`: train the Earth Surface Water recipe briefly on the synthetic stand-in (CPU, a few
# minutes), then stream gridded inference over a synthetic Sentinel-2 scene (per-band files named
# as torchgeo's Sentinel2 expects) and print where the georeferenced GeoTIFF is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export WANDB_MODE=${WANDB_MODE:-offline}
RUN=logs/demo/water_seg
SCENE=data/synthetic/demo_s2_scene
rm -rf "$RUN" logs/demo/infer
# the inference scene is written by its own process while the model trains (the two only meet at
# `wait`, which fails the demo if the scene could not be written)
$PY -c "from geoemb.synthetic.earth_surface_water import write_sentinel2_scene as w; print('scene:', w('$SCENE', size=1024, seed=7))" &
SCENE_PID=$!
# no sanity-check validation pass before epoch 0: the demo validates after every epoch anyway
$PY train.py experiment=water_seg_demo hydra.run.dir="$RUN" ++trainer.num_sanity_val_steps=0 "$@"
wait "$SCENE_PID"
$PY infer.py ckpt_path="$RUN/checkpoints/last.ckpt" input="$SCENE" hydra.run.dir=logs/demo/infer tile_size=256 stride=224
echo "Open logs/demo/infer/prediction.tif in QGIS (pixel-aligned with the scene in $SCENE)."
