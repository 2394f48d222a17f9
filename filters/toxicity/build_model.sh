#!/usr/bin/env bash
# Rebuild filters/toxicity/cold_char.bin bit for bit (about a minute, one thread):
#
#     filters/toxicity/build_model.sh [SHARED_DATA]      # default ../shared/data
#
# The options are the ones cv.py chose by 3-fold cross-validation inside the training
# pool (SOURCE.md): 2 epochs, offensive rows written twice; the rest are
# train-classifier's defaults, spelled out. Uses $CURATE_BIN, else target/release/curate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="${1:-${CURATE_SHARED_DATA:-$repo/../shared/data}}"
curate="${CURATE_BIN:-$repo/target/release/curate}"
train="$(mktemp --suffix=.jsonl)"
trap 'rm -f "$train"' EXIT
python3 "$here/build_train.py" "$data" --pos-weight 2 > "$train"
"$curate" train-classifier --input "$train" --text-field TEXT --label-field label \
  --output "$here/cold_char.bin" \
  --epochs 2 --lr 0.5 --dim 32 --word-ngrams 3 --bucket 200000 --seed 1 \
  --char-split true --quantize true
sha256sum "$here/cold_char.bin"
