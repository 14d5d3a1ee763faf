#!/usr/bin/env bash
# `fusion predict-scene` on the test chips of the real Sen1Floods11 chips (docs/reproduction.md, "Real data"),
# with a water checkpoint of experiments/segment_sen1floods11_chips.yaml, which never saw these
# chips (whole-chip splits, datamodules/sen1floods11_chips.py):
#
#   experiments/scene_example_chips.sh \
#       runs/reproduce/train/sen1floods11_chips/sup_proposed/seed_0/version_0/checkpoints/last.ckpt
#
# Spain_7370579 from S1 only, S2 only and both; USA_905409 (no Sentinel-2 exists for it) from S1.
# Each map gets its modality map and PNG quick-look in experiments/results/scene_chips/, then its
# water IoU over the whole chip against the hand label. CHIPS=<folder> reads another copy of the
# chips (official layout); PY=<python> another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: experiments/scene_example_chips.sh CHECKPOINT}
CHIPS=${CHIPS:-../shared/realdata/sen1floods11_chips}
PY=${PY:-.venv/bin/python}
OUT=experiments/results/scene_chips
mkdir -p "$OUT"

predict() {
    local name=$1
    shift
    "$PY" -m fusion predict-scene --ckpt_path "$CKPT" --out "$OUT/$name.tif" \
        --modality_map --overwrite "$@"
}
SPAIN=Spain_7370579
USA=USA_905409
predict spain_s1 --s1 "$CHIPS/S1Hand/${SPAIN}_S1Hand.tif"
predict spain_s2 --s2 "$CHIPS/S2Hand/${SPAIN}_S2Hand.tif"
predict spain_s1_s2 --s1 "$CHIPS/S1Hand/${SPAIN}_S1Hand.tif" --s2 "$CHIPS/S2Hand/${SPAIN}_S2Hand.tif"
predict usa_s1 --s1 "$CHIPS/S1Hand/${USA}_S1Hand.tif"

"$PY" - "$CHIPS" "$OUT" <<'EOF'
"""Water IoU of each map over its whole chip."""
import sys
from pathlib import Path

import rasterio

chips, out = Path(sys.argv[1]), Path(sys.argv[2])
print("| chip | input | water IoU (whole chip) |")
print("|---|---|---|")
for name, chip, title in (
    ("spain_s1", "Spain_7370579", "S1"),
    ("spain_s2", "Spain_7370579", "S2"),
    ("spain_s1_s2", "Spain_7370579", "S1 + S2"),
    ("usa_s1", "USA_905409", "S1"),
):
    with rasterio.open(chips / "LabelHand" / f"{chip}_LabelHand.tif") as src:
        truth = src.read(1)
    with rasterio.open(out / f"{name}.tif") as src:
        predicted = src.read(1)
    assert predicted.shape == truth.shape, (name, predicted.shape, truth.shape)
    scored = (truth >= 0) & (predicted != 255)
    water, true_water = (predicted == 1) & scored, (truth == 1) & scored
    iou = (water & true_water).sum() / max((water | true_water).sum(), 1)
    print(f"| {chip} | {title} | {iou:.3f} |")
EOF
echo "Quick-looks: $OUT/*.png"
