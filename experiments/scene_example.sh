#!/usr/bin/env bash
# Worked example of `fusion predict-scene` on the real Sen1Floods11 chip (docs/scene.md, "Worked
# example"). Trains nothing: give it a water checkpoint of experiments/segment_sen1floods11.yaml
# (its run's config.yaml, beside checkpoints/, supplies the statistics and the scale):
#
#   experiments/scene_example.sh runs/segment_sen1floods11/version_0/checkpoints/last.ckpt
#
# Four predictions of the whole 512 x 512 chip: S1 only, S2 only, both, and S1 with an S2 cut to
# the left half of the chip (python -m fusion.scene.cut), each with its modality map and PNG
# quick-look in experiments/results/scene/. Then the water IoU of each map on the chip's test
# quarter (bottom right, never trained on) against the hand label. CHIP=<folder> reads another
# copy of the chip; PY=<python> another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: experiments/scene_example.sh CHECKPOINT}
CHIP=${CHIP:-../shared/realdata/sen1floods11}
PY=${PY:-.venv/bin/python}
OUT=experiments/results/scene
S1=$CHIP/Spain_7370579_S1Hand.tif
S2=$CHIP/Spain_7370579_S2Hand.tif
LABEL=$CHIP/Spain_7370579_LabelHand.tif
mkdir -p "$OUT/inputs"

"$PY" -m fusion.scene.cut "$S2" "$OUT/inputs/s2_left_half.tif" --keep left --fraction 0.5

predict() {
    local name=$1
    shift
    "$PY" -m fusion predict-scene --ckpt_path "$CKPT" --out "$OUT/$name.tif" \
        --modality_map --overwrite "$@"
}
predict s1 --s1 "$S1"
predict s2 --s2 "$S2"
predict s1_s2 --s1 "$S1" --s2 "$S2"
predict s1_s2_left_half --s1 "$S1" --s2 "$OUT/inputs/s2_left_half.tif"

"$PY" - "$LABEL" "$OUT" <<'EOF'
"""Water IoU of each map on the test quarter of the chip (rows and columns 256..512)."""
import sys
from pathlib import Path

import numpy as np
import rasterio

label_path, out = sys.argv[1], Path(sys.argv[2])
with rasterio.open(label_path) as src:
    label = src.read(1)
h, w = label.shape
quarter = (slice(h // 2, h), slice(w // 2, w))
truth = label[quarter]
print("| input | water IoU (test quarter) | no-data pixels |")
print("|---|---|---|")
for name, title in (
    ("s1", "S1"),
    ("s2", "S2"),
    ("s1_s2", "S1 + S2"),
    ("s1_s2_left_half", "S1 + S2 on the left half"),
):
    with rasterio.open(out / f"{name}.tif") as src:
        classes = src.read(1)
    assert classes.shape == label.shape, (name, classes.shape, label.shape)
    predicted = classes[quarter]
    scored = (truth >= 0) & (predicted != 255)
    water, true_water = (predicted == 1) & scored, (truth == 1) & scored
    iou = (water & true_water).sum() / max((water | true_water).sum(), 1)
    print(f"| {title} | {iou:.3f} | {(classes == 255).sum()} |")
EOF
echo "Quick-looks: $OUT/*.png"
