#!/usr/bin/env bash
# Pipeline throughput in MB per CPU-second, one core pinned.
#
#   benches/pipeline.sh [SIZE_MB]        # default 100
#
# Builds SIZE_MB of JSONL from the SFT sets of ../shared/data (or CURATE_SHARED_DATA)
# deterministically (benches/pipeline/make_input.py: alpaca_zh, alpaca_en, BELLE eval,
# LLaMA-Factory demos, MedicalGPT, concatenated and repeated), then runs with
# `taskset -c 0 ... --threads 1`:
#   - pass-through, plain JSONL out and zstd out (benches/pipeline/passthrough*.toml);
#   - the default pipeline, pipelines/zh_sft.toml without its last stage, the fine-tune
#     (11 cleaning stages; written to target/bench/zh_sft_clean.toml);
#   - span_dedup alone (benches/pipeline/span_dedup.toml; docs/benchmarks/dedup.md).
# Each row: CPU seconds (user + system, /usr/bin/time), MB per CPU-second, peak RSS;
# the default pipeline also gets its per-stage CPU seconds from stats.json.
# CURATE_BIN: a release binary built already (else one is built here).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${CURATE_SHARED_DATA:-$(pwd)/../shared/data}"
SIZE="${1:-100}"
if [ -z "${CURATE_BIN:-}" ]; then
    cargo build --release --quiet
    CURATE_BIN="$(pwd)/target/release/curate"
fi
mkdir -p target/bench
INPUT="target/bench/sft_${SIZE}mb.jsonl"
if [ ! -s "$INPUT" ]; then
    python3 benches/pipeline/make_input.py "$DATA" "$SIZE" "$INPUT"
fi
TIME_FILE="$(mktemp)"
trap 'rm -f "$TIME_FILE"' EXIT
run() {
    local name="$1" config="$2" out="target/bench/out_$1"
    /usr/bin/time -o "$TIME_FILE" -f "%U %S %M" taskset -c 0 "$CURATE_BIN" run "$config" \
        --input "$INPUT" --output "$out" --threads 1 --quiet --overwrite >/dev/null
    python3 benches/pipeline/report.py "$name" "$out" "$TIME_FILE"
}
echo "input: $INPUT ($(stat -c %s "$INPUT") bytes), one core (taskset -c 0, --threads 1)"
run passthrough benches/pipeline/passthrough.toml
run passthrough_zstd benches/pipeline/passthrough_zstd.toml
# The cleaning stages only: the finetune table (from its [[stage]] to the next top-level
# table) cut out, relative paths made absolute.
python3 - "$(pwd)" <<'PY'
import re, sys
root = sys.argv[1]
text = open("pipelines/zh_sft.toml", encoding="utf-8").read()
start = text.index('kind = "finetune"')
start = text.rindex("[[stage]]", 0, start)
rest = re.search(r"^\[(?!stage\.)", text[start + 9:], re.M)
end = start + 9 + rest.start() if rest else len(text)
text = (text[:start] + text[end:]).replace('"../', '"' + root + "/")
assert 'kind = "finetune"' not in text
open("target/bench/zh_sft_clean.toml", "w", encoding="utf-8").write(text)
PY
run zh_sft target/bench/zh_sft_clean.toml
run span_dedup benches/pipeline/span_dedup.toml
