#!/usr/bin/env python3
"""Write indicating_zh.txt and indicating_en.txt (the `indicating` signal of the
machine_text stage) from the HC3 "indicating words" lists:

    python3 filters/machine_text/build_phrases.py SHARED_DATA mgt_train.jsonl

HC3's ChatGPT lists were made to *filter* tell-tale phrases from a corpus, so they
hold common words too (但是, 所以, 在中国, In general). Kept: phrases of at least 4
CJK characters or 10 Latin characters that occur in fewer than 2 human-written
texts (label 0) of the training pool written by build_train.py. Order and
spelling as upstream; duplicates removed. Deterministic.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA, POOL = sys.argv[1], sys.argv[2]
with open(POOL, encoding="utf-8") as f:
    human = [r["text"].lower() for r in map(json.loads, f) if r["label"] == "0"]


def cjk(s):
    return sum(1 for c in s if "\u4e00" <= c <= "\u9fff")


HEADER = """# Phrases typical of ChatGPT answers, from the HC3 study (Guo et al. 2023,
# "How Close is ChatGPT to Human Experts?"), github.com/Hello-SimpleAI/chatgpt-comparison-detection,
# commit 1f8c15c28f87e09a5abfd86ee6e15005dc7d2119, HC3/indicating_words_{lang}_chatgpt.txt.
# Licence: CC BY-SA (HC3's terms, version not stated upstream); this file is a filtered adaptation under the same licence.
# Changes: kept only phrases of >= 4 CJK / >= 10 Latin characters found in < 2 human texts of
# the training pool (see build_phrases.py); {dropped} of {total} upstream lines dropped.
"""
for lang in ("zh", "en"):
    src = os.path.join(DATA, "hc3_indicating_words", f"indicating_words_{lang}_chatgpt.txt")
    with open(src, encoding="utf-8") as f:
        lines = [l.strip() for l in f if l.strip()]
    kept, seen = [], set()
    for p in lines:
        q = p.lower()
        if q in seen:
            continue
        seen.add(q)
        long_enough = cjk(p) >= 4 or (cjk(p) == 0 and len(p) >= 10)
        if long_enough and sum(q in t for t in human) < 2:
            kept.append(p)
    with open(os.path.join(HERE, f"indicating_{lang}.txt"), "w", encoding="utf-8") as f:
        f.write(HEADER.format(lang=lang, dropped=len(lines) - len(kept), total=len(lines)))
        for p in kept:
            f.write(p + "\tindicating\n")
    print(f"{lang}: kept {len(kept)} of {len(lines)}", file=sys.stderr)
