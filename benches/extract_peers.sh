#!/usr/bin/env bash
# Web extraction side by side: curate's `extract` stage through `curate run` on the
# page files, against Python trafilatura, readability-lxml, jusText and Resiliparse
# (and, optionally, three Rust crates), on the same pages with the same scorer.
#
# What it measures, per tool x page group x split (dev / held / all): pages, pages
# with empty output, P, R, F1 (src/extract/score.rs, the project's one scorer: token
# P/R on Latin-script pages, char LCS P/R on zh/ja pages; P and R averaged over
# pages, F1 their harmonic mean), and pages per CPU-second.
#   * curate: `taskset -c 0 $CURATE_BIN run benches/extract/extract_only.toml
#     --input <html folder> --output <dir> --quiet` (extract stage only, one thread),
#     one run per source folder; the texts are the kept records' `text` (`id` = file
#     name); a rejected page (`no_main_text`, ...) scores as an empty text. Speed:
#     the source's pages / CPU time of the whole process (user + sys from wait4:
#     start-up, reading, charset decoding, extraction, writing), the smallest of
#     CURATE_REPEAT (default 3) runs.
#   * Python peers (a venv under benches/extract-peers/.venv, pinned versions): each
#     gets each file's raw bytes and decodes them itself (benches/extract-peers/
#     peers.py says how); speed = pages / thread CPU time of the extraction call per
#     page (decoding included; reading the file and starting Python not). Pinned to
#     core 0 too.
#   * Rust crates (RUST_PEERS=1; off by default: three more HTML stacks to compile,
#     minutes on a 2-core machine, and they take &str, so they see lossy UTF-8, not
#     the file): trafilatura 0.6, rs-trafilatura 0.2, dom_smoothie 0.19.
# Page groups and gold conventions: benches/extract-peers/bench.py. Split: each
# source's pages sorted by id, even positions `dev` (rules may be tuned there), odd
# `held` (report only).
#
#   bash benches/extract_peers.sh                        # everything
#   CURATE_BIN=/path/to/curate SKIP_PYTHON=1 bash benches/extract_peers.sh
#       # only curate (another binary), peers' texts from the cache
#   RUST_PEERS=1 bash benches/extract_peers.sh           # add the Rust crates
# Environment: CURATE_BIN (default target/release/curate, built if missing),
# CURATE_LABEL (the tool column; default "curate <version>"), CURATE_SHARED_DATA
# (default ../shared/data), CURATE_WEB_GOLD (default web-gold/).
# Output: benches/extract-peers/out/table.tsv (all rows), perpage.tsv, fails.txt
# (dev pages with F1 < 0.5), and the markdown tables on stdout. The peers' texts are
# cached in out/cache/<tool>-<version>-<key>.jsonl (key: the page files, gold-free,
# and peers.py), so a rerun only rescores them; delete out/cache to recompute.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/benches/extract-peers
WORK=$PEERS/out
DATA=${CURATE_SHARED_DATA:-$ROOT/../shared/data}
CACHE=$WORK/cache
mkdir -p "$WORK/texts" "$CACHE"
rm -f "$WORK"/texts/*.jsonl

# Real English news pages with reference text: newspaper4k's test data (PyPI sdist).
export WEB_GOLD=${CURATE_WEB_GOLD:-$ROOT/web-gold}
"$ROOT/scripts/fetch_web_gold.sh" "$WEB_GOLD" || echo "newspaper4k pages not fetched: group left out" >&2

# 1. The manifest: one line per page and group, with split, scorer, gold text.
echo "pages:" >&2
python3 "$PEERS/bench.py" manifest "$DATA" "$ROOT" "$WEB_GOLD" "$WORK"
KEY=$(cat "$PEERS/peers.py" "$WORK/pageset.sha" | sha256sum | cut -c1-12)

# 2. The scorer (default features: score.rs and two small crates, seconds to build).
cargo build --release --quiet --manifest-path "$PEERS/Cargo.toml"
SCORE=$PEERS/target/release/extract-peers
TABLE=$WORK/table.tsv
PERPAGE=$WORK/perpage.tsv
printf 'tool\tgroup\tsplit\tpages\tempty\tP\tR\tF1\tpages_per_cpu_s\tclock\n' > "$TABLE"
: > "$PERPAGE"
score() { # TOOL CLOCK TEXTS
  "$SCORE" score "$WORK/manifest.jsonl" "$1" "$2" "$3" "$WORK/perpage.part" >> "$TABLE"
  cat "$WORK/perpage.part" >> "$PERPAGE"
  rm -f "$WORK/perpage.part"
}

# 3. curate, through `curate run` on the files.
CURATE_BIN=${CURATE_BIN:-$ROOT/target/release/curate}
if [ ! -x "$CURATE_BIN" ]; then
  cargo build --release --quiet
fi
CURATE_LABEL=${CURATE_LABEL:-$("$CURATE_BIN" --version)}
echo "$CURATE_LABEL ($CURATE_BIN):" >&2
python3 "$PEERS/bench.py" run-curate "$CURATE_BIN" "$ROOT/benches/extract/extract_only.toml" "$WORK" "${CURATE_REPEAT:-3}"
score "$CURATE_LABEL" process "$WORK/texts/curate.jsonl"

# 4. Python peers: run (or take from the cache), then score.
VENV=$PEERS/.venv
TOOLS="trafilatura readability justext resiliparse"
label() { # TOOL VERSION
  case $1 in
    trafilatura) echo "trafilatura $2" ;;
    readability) echo "readability-lxml $2" ;;
    justext) echo "jusText $2" ;;
    resiliparse) echo "Resiliparse $2" ;;
  esac
}
if [ -z "${SKIP_PYTHON:-}" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  # Pinned: the four tools, and what decodes and parses for them (lxml, its cleaner,
  # chardet for readability-lxml, charset-normalizer for trafilatura). The cache key
  # has the tool's version only: delete out/cache after changing these pins.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    trafilatura==2.0.0 justext==3.0.2 resiliparse==2.0.0 \
    lxml==6.2.0 lxml_html_clean==0.4.6 chardet==5.2.0 charset-normalizer==3.5.3 cssselect
  # readability-lxml's `lxml[html_clean]` requirement trips a pip resolver bug in a
  # fresh venv ("lxml[html-clean,html-clean]"): its dependencies are installed above.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps readability-lxml==0.9
  for tool in $TOOLS; do
    version=$("$VENV/bin/python" "$PEERS/peers.py" version "$tool")
    cached=$CACHE/$tool-$version-$KEY.jsonl
    if [ ! -s "$cached" ]; then
      echo "running $tool $version" >&2
      taskset -c 0 "$VENV/bin/python" "$PEERS/peers.py" "$WORK/manifest.jsonl" "$tool" "$cached.tmp"
      mv "$cached.tmp" "$cached"
    fi
  done
fi
for tool in $TOOLS; do
  # The newest cached texts of this tool for these pages (any version; SKIP_PYTHON=1
  # uses what an earlier full run left).
  cached=$(ls -t "$CACHE/$tool"-*-"$KEY".jsonl 2>/dev/null | head -n 1 || true)
  if [ -z "$cached" ]; then
    echo "no cached texts of $tool for these pages: left out" >&2
    continue
  fi
  version=$(basename "$cached" .jsonl)
  version=${version#"$tool"-}
  version=${version%-"$KEY"}
  score "$(label "$tool" "$version")" extract "$cached"
done

# 5. Optional Rust crates (not cached: they run in seconds once built).
if [ -n "${RUST_PEERS:-}" ]; then
  cargo build --release --quiet --manifest-path "$PEERS/Cargo.toml" --features rust-peers
  taskset -c 0 "$SCORE" rust "$WORK/manifest.jsonl" "$WORK/texts"
  score "trafilatura 0.6 (Rust)" extract "$WORK/texts/rust-trafilatura.jsonl"
  score "rs-trafilatura 0.2 (Rust)" extract "$WORK/texts/rs-trafilatura.jsonl"
  score "dom_smoothie 0.19 (Rust)" extract "$WORK/texts/dom_smoothie.jsonl"
  # The default build again, so the next run's scorer build is a no-op.
  cargo build --release --quiet --manifest-path "$PEERS/Cargo.toml"
fi

python3 "$PEERS/bench.py" fails "$PERPAGE" > "$WORK/fails.txt"
python3 "$PEERS/bench.py" markdown "$TABLE"
echo >&2
echo "table: $TABLE; per page: $PERPAGE; dev pages with F1 < 0.5: $WORK/fails.txt" >&2
