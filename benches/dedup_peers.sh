#!/usr/bin/env bash
# Side by side: curate's minhash_dedup vs Python datasketch and datatrove, on the
# same data (../shared/data/alpaca_zh_hikariming, or CURATE_SHARED_DATA), with
# character 5-grams, 128 permutations, threshold 0.7, one core; curate also with the
# minhash_dedup table of pipelines/zh_sft.toml (`verify = "segments"`); records removed
# by each; plus F1 of each on curate's labelled near-duplicate set
# (tests/minhash_quality.rs).
#
#   benches/dedup_peers.sh            # makes target/dedup_peers_venv on first use
#
# Needs python3 with venv and network access to PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${CURATE_SHARED_DATA:-$(pwd)/../shared/data}"
VENV=target/dedup_peers_venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import datasketch, datatrove" 2>/dev/null; then
    python3 -m venv "$VENV"
    # datatrove 0.10.1 imports regex and tokenizers and hashes str with xxhash (xxhash 4 refuses str).
    "$VENV/bin/pip" install -q datasketch==2.0.0 datatrove==0.10.1 regex tokenizers "xxhash==3.5.0"
fi
# CURATE_BIN: a curate binary built already (else a release build here).
if [ -z "${CURATE_BIN:-}" ]; then
    cargo build --release --quiet
    CURATE_BIN="$(pwd)/target/release/curate"
fi
LABELLED=target/dedup_labelled.jsonl
CURATE_DEDUP_DUMP="$(pwd)/$LABELLED" CURATE_SHARED_DATA="$DATA" cargo test --quiet --test minhash_quality >/dev/null
# One core for everyone (times are CPU seconds anyway).
taskset -c 0 "$VENV/bin/python" benches/dedup_peers.py "$DATA" "$LABELLED" "$CURATE_BIN"
