#!/usr/bin/env python3
"""Write the held-aside evaluation file of mgt_zh_formal.bin (with FORMAL_REPEAT=0: of mgt_char.bin) (JSON Lines, {"id", "text"}):

    python3 filters/machine_text/build_eval.py [SHARED_DATA] > mgt_eval.jsonl

Every id is `PART/SET/LABEL/N`: PART `tune` (sets the settings of build_train.py were
chosen on) or `report` (never looked at while choosing: the numbers quoted in
docs/benchmarks/machine_text.md), LABEL `0` human / `1` machine. Nothing here is in the
training pool (build_train.py leaves it out by the same rules):

- AGT-2025 fold B (odd ids; build_train.py trains on the even ids), split by id: ids
  that are 1 mod 4 tune, 3 mod 4 report. Human answers vs GPT-4.5 / DeepSeek-R1 rewrites.
- Formal human prose, false positives only:
  - AGT-2025 fold B human answers in an impersonal register (FORMAL below: no first or
    second person, no modal particles, no ! or ?), by the same id split;
  - the Chinese books of formal_prose.py (Debian, LibreOffice help): one page in five of those in training
    (tune), and the Debian Edu manual, a book left out of training whole (report);
  - magic-html's article gold texts (news, Baike-style entries; report);
  - C-Eval dev explanations (report; drafted with GPT-4 and revised by people, per the
    C-Eval paper, so neither side's: shown for information).
- MedicalGPT doctors' answers vs ShareGPT ChatGPT turns (report).
- English news pages (WCEB gold) vs Alpaca davinci outputs not in the pool (tune).
"""
import csv
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import formal_prose  # noqa: E402

DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data")

# An answer that speaks to no one: no first or second person, no modal particles, no
# exclamations or questions, no trailing dots; and at least 50 Chinese characters.
INFORMAL = re.compile(r"[我你您咱俺吧啊呢哦呀嘛啦哈噢呗~～！？!?]|。。|\.\.\.|…")


def formal(text):
    return not INFORMAL.search(text) and sum("\u4e00" <= c <= "\u9fff" for c in text) >= 50


def p(*parts):
    return os.path.join(DATA, *parts)


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


rows = []  # (part, set, label, text)


def agt_part(row_id):
    """`tune` / `report` for fold B ids, None for fold A (in training)."""
    n = int(float(row_id))
    return None if n % 2 == 0 else ("tune" if n % 4 == 1 else "report")


with open(p("agt2025_zh_mgt", "m4gt_human.json"), encoding="utf-8") as f:
    for r in json.load(f):
        part = agt_part(r["id"])
        if part and r["text"].strip():
            rows.append((part, "agt_fold_b", "0", r["text"]))
            if formal(r["text"]):
                rows.append((part, "formal_agt_fold_b", "0", r["text"]))
for r in jsonl(p("agt2025_zh_mgt", "m4gt_machine_gpt4.5_dsr1.jsonl")):
    part = agt_part(r["id"])
    if part and r["text"].strip():
        rows.append((part, "agt_fold_b", "1", r["text"]))

for book in formal_prose.BOOKS:
    for page, chunk in formal_prose.chunks(book):
        if book in formal_prose.LEFT_OUT:
            rows.append(("report", f"formal_{book}", "0", chunk))
        elif formal_prose.held_aside(page):
            rows.append(("tune", "formal_books_held_pages", "0", chunk))

for kind in ("article",):
    with open(p("magic_html_zh_benchmark", kind, "ground_truth.json"), encoding="utf-8") as f:
        gt = json.load(f)
    for key in sorted(gt):
        t = gt[key].get("content") or ""
        if t.strip():
            rows.append(("report", "formal_magic_html_articles", "0", t))

for path in sorted(glob.glob(p("ceval", "dev", "*.csv"))):
    with open(path, encoding="utf-8-sig", newline="") as f:
        for r in csv.DictReader(f):
            if len(r["explanation"].strip()) >= 20:
                rows.append(("report", "ceval_dev_explanations", "0", r["explanation"]))


def gpt_turns(r):
    return "\n\n".join(t["value"] for t in r["conversations"] if t["from"] == "gpt")


for name, label in (("medical_sft_1K_format.jsonl", "0"), ("sharegpt_zh_1K_format.jsonl", "1")):
    for r in jsonl(p("medicalgpt_zh_sft_samples", name)):
        t = gpt_turns(r)
        if t.strip():
            rows.append(("report", "medicalgpt", label, t))

# English (tune): news pages' gold text (Dragnet, L3S-GN1; human) vs Alpaca outputs
# (text-davinci-003) that build_train.py does not take (it takes every 17th), 300+ characters.
# Chinese formal books carry Latin words; this shows what they do to English.
for source in ("dragnet", "l3s_gn1"):
    for r in jsonl(p("web_extraction_wceb", source, "gold.jsonl")):
        if r.get("lang", "en") == "en" and len(r["text"].strip()) >= 300:
            rows.append(("tune", "en_news_vs_davinci", "0", r["text"]))
with open(p("alpaca_en", "alpaca_data.json"), encoding="utf-8") as f:
    alpaca = json.load(f)
outputs = [r["output"] for i, r in enumerate(alpaca) if i % 17 and len(r["output"]) >= 300]
rows += [("tune", "en_news_vs_davinci", "1", t) for t in outputs[::10]]

counts = {}
for part, name, label, text in rows:
    key = (part, name, label)
    counts[key] = counts.get(key, 0) + 1
    print(json.dumps({"id": f"{part}/{name}/{label}/{counts[key]}", "text": text}, ensure_ascii=False))
for key in sorted(counts):
    print("\t".join(key), counts[key], sep="\t", file=sys.stderr)
