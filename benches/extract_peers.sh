#!/usr/bin/env bash
# Peers of the `extract` stage side by side on the same pages, same scorer:
# curate's extractor and the Rust crates (trafilatura 0.6, rs-trafilatura,
# dom_smoothie) from benches/extract-peers (its own Cargo project, not part of
# curate's build), and Python trafilatura, jusText and readability-lxml in a
# virtual environment. Pages: the 81 Chinese magic-html pages (shared data,
# `zh/article`, `zh/forum`), the English pages of data-samples/web (`en/article`,
# `en/other`) and newspaper4k's real English news pages (`en/news`;
# scripts/fetch_web_gold.sh).
# Prints a TSV table: tool group pages P R F1 pages per CPU-second (one
# thread, the thread's CPU time, so a busy machine does not change the numbers
# much; the same clock for every tool).
#
#   bash benches/extract_peers.sh            # everything
#   SKIP_PYTHON=1 bash benches/extract_peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/benches/extract-peers
WORK=$PEERS/out
DATA=${CURATE_SHARED_DATA:-$ROOT/../shared/data}
mkdir -p "$WORK"
# Real English news pages with reference text: newspaper4k's test data.
export WEB_GOLD=${CURATE_WEB_GOLD:-$ROOT/web-gold}
"$ROOT/scripts/fetch_web_gold.sh" "$WEB_GOLD"

# 1. The manifest: one line per page with its group, HTML and gold text.
python3 - "$DATA/magic_html_zh_benchmark" "$ROOT/data-samples/web" "$WORK" > "$WORK/manifest.jsonl" <<'PY'
import json, os, sys
bench, web, work = sys.argv[1:4]
os.makedirs(os.path.join(work, "gold"), exist_ok=True)
for subset in ("article", "forum"):
    gt = json.load(open(os.path.join(bench, subset, "ground_truth.json")))
    for name in sorted(gt):
        gold = os.path.join(work, "gold", f"{subset}_{name}.txt")
        with open(gold, "w") as f:
            f.write(gt[name]["content"])
        print(json.dumps({"group": f"zh/{subset}", "gold_path": gold,
                          "html_path": os.path.join(bench, subset, "htmls", f"{name}.html")}))
for name in sorted(os.listdir(web)):
    if name.startswith("en_") and name.endswith(".html"):
        kind = "article" if name.split("_")[1] in ("blog", "news", "howto") else "other"
        print(json.dumps({"group": f"en/{kind}", "html_path": os.path.join(web, name),
                          "gold_path": os.path.join(web, "gold", name[:-5] + ".txt")}))
news = os.path.join(work_root := os.environ.get("WEB_GOLD", ""), "newspaper4k")
if work_root and os.path.isfile(os.path.join(news, ".complete")):
    for name in sorted(os.listdir(os.path.join(news, "txt"))):
        stem = name[:-4]
        html = os.path.join(news, "html", stem + ".html")
        meta = os.path.join(news, "metadata", stem + ".json")
        if not (os.path.isfile(html) and os.path.isfile(meta)):
            continue
        lang = json.load(open(meta)).get("language")
        if lang == "en":  # video_article_01 (no language) repeats cleveland.com1
            print(json.dumps({"group": "en/news", "html_path": html,
                              "gold_path": os.path.join(news, "txt", name)}))
PY

# 2. Rust: curate's extractor and the crates, release build.
cargo build --release --quiet --manifest-path "$PEERS/Cargo.toml"
BIN=$PEERS/target/release/extract-peers
"$BIN" rust "$WORK/manifest.jsonl" | tee "$WORK/table.tsv"

# 3. Python peers in a virtual environment.
if [ -z "${SKIP_PYTHON:-}" ]; then
  VENV=$PEERS/.venv
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet trafilatura==2.0.0 jusText lxml_html_clean chardet cssselect
    # readability-lxml's `lxml[html_clean]` extra trips a pip resolver bug: its deps are above.
    "$VENV/bin/pip" install --quiet --no-deps readability-lxml
  fi
  for tool in trafilatura justext readability; do
    "$VENV/bin/python" "$PEERS/peers.py" "$WORK/manifest.jsonl" "$tool" "$WORK/py_$tool"
    version=$("$VENV/bin/pip" show "$( [ $tool = readability ] && echo readability-lxml || echo $tool )" | awk '/^Version/{print $2}')
    "$BIN" score "$WORK/manifest.jsonl" "$tool $version (Python)" "$WORK/py_$tool" | tee -a "$WORK/table.tsv"
  done
fi
echo "table: $WORK/table.tsv"
