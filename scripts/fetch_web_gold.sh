#!/usr/bin/env bash
# Fetch real web pages with reference text for the extractor's English measurement, from PyPI
# (the only registry this project's machines reach; no benchmark with human gold text is
# published on one):
#   - newspaper4k==0.9.6 sdist, MIT: tests/data/html/*.html (news pages saved from CNN, Wired,
#     Time, Fox13, Yonhap, cleveland.com, China Daily, Xinhua, ... with their full boilerplate)
#     and tests/data/txt/*.txt (the article text newspaper4k's own tests expect), plus
#     tests/data/metadata/*.json (each page's URL and language).
# The reference texts were written for newspaper4k's tests: they are its maintainers' checked
# idea of each article body, not an independent annotation (README says how that biases the
# numbers). Nothing is installed: `pip download --no-deps` fetches the archive, its SHA-256 is
# checked, and the files are unpacked from it. Idempotent.
#
#   scripts/fetch_web_gold.sh [DIR]      # default DIR: web-gold/ (gitignored)
#
# Afterwards DIR/newspaper4k/{html,txt,metadata}/ hold the pages (one stem per page).
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/web-gold}"
out="$dir/newspaper4k"
if [ -f "$out/.complete" ]; then
    exit 0
fi
dl="$dir/.downloads"
mkdir -p "$dl" "$out"
py="${PYTHON:-python3}"
"$py" -m pip download --quiet --no-deps --no-binary=:all: --no-build-isolation --dest "$dl" "newspaper4k==0.9.6" 2>/dev/null ||
    "$py" -m pip download --quiet --no-deps --no-binary=:all: --dest "$dl" "newspaper4k==0.9.6"
"$py" - "$dl/newspaper4k-0.9.6.tar.gz" "$out" <<'PY'
import hashlib, os, sys, tarfile
sdist, out = sys.argv[1], sys.argv[2]
want = "a3f2f0e017dddb6f1019ee77aaa8980e13e6ecea0b949abc7167aae4770d2d0e"
got = hashlib.sha256(open(sdist, "rb").read()).hexdigest()
if got != want:
    sys.exit(f"{sdist}: SHA-256 {got}, expected {want}")
n = 0
with tarfile.open(sdist) as t:
    for m in t.getmembers():
        parts = m.name.split("/")
        # newspaper4k-0.9.6/tests/data/<kind>/<file>
        if m.isfile() and len(parts) == 5 and parts[1:3] == ["tests", "data"] and parts[3] in ("html", "txt", "metadata"):
            os.makedirs(os.path.join(out, parts[3]), exist_ok=True)
            with open(os.path.join(out, parts[3], parts[4]), "wb") as f:
                f.write(t.extractfile(m).read())
            n += 1
print(f"{out}: {n} files")
PY
touch "$out/.complete"
rm -rf "$dl"
