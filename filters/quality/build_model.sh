#!/usr/bin/env bash
# Rebuild filters/quality/quality_zh_en.bin bit for bit (about a minute, one thread):
#
#     filters/quality/build_model.sh [SHARED_DATA]      # default $CURATE_SHARED_DATA, else ../shared/data
#
# Writes the train/tune/report parts to target/quality_model/ (build_train.py), then
# trains on the train part with the options tune.py chose on the tune part
# (SOURCE.md): keep-punct (punctuation and line breaks are tokens), 5 epochs, and 100,000
# buckets (under the 5 MB file limit); the rest
# are train-classifier's defaults, spelled out. Uses $CURATE_BIN, else target/release/curate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="${1:-${CURATE_SHARED_DATA:-$repo/../shared/data}}"
curate="${CURATE_BIN:-$repo/target/release/curate}"
out="$repo/target/quality_model"
python3 "$here/build_train.py" "$data" --out "$out" > "$out.counts.md"
"$curate" train-classifier --input "$out/train.jsonl" --text-field text --label-field label \
  --output "$here/quality_zh_en.bin" \
  --epochs 5 --lr 0.5 --dim 32 --word-ngrams 3 --bucket 100000 --minn 0 --maxn 0 --seed 1 \
  --char-split true --keep-punct true --quantize true \
  --validation "$out/tune.jsonl" --positive lq
sha256sum "$here/quality_zh_en.bin"
