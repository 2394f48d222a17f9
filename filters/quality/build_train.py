#!/usr/bin/env python3
"""Write the quality model's data: train, tune and report parts (JSON Lines,
{"text", "label", "source", "kind", "lang"}; label `hq` or `lq`):

    python3 filters/quality/build_train.py [SHARED_DATA] [--out DIR] [--kinds K1,K2,...]

SHARED_DATA defaults to $CURATE_SHARED_DATA, else ../shared/data next to the
repository; DIR to target/quality_model. Writes DIR/{train,tune,report}.jsonl and
DIR/counts.json, and prints the counts as a Markdown table. Deterministic: the same
bytes on every run.

hq: chunks of the gold main text of web pages; SFT answers (long ones chunked).
lq: (a) boilerplate: runs of blocks of the same pages that are not main content
(qdata.boilerplate_runs), chunked; (b) degenerate versions of hq texts of the same
part and language (qdata.degenerate: repeat, shuffle, mojibake, stuffing, fragments),
as many as it takes to give each language as many lq as hq texts (in the report
part: as many as there are hq texts, besides the boilerplate), an equal share per kind. The split by source and the train/tune cut are in qdata.py; the report
part's lq are made only from report-part pages and texts.
"""
import json
import os
import random
import sys

import qdata

# alpaca_en is subsampled (by a hash of the record's key) to keep the two languages
# in proportion: keep crc32 % den < num.
SFT_TAKE = {"alpaca_en": (1, 4)}


def collect(data):
    """hq and boilerplate items of every part, before balancing."""
    items = []
    for source in qdata.WEB_TRAIN + qdata.WEB_REPORT:
        rng = random.Random("web/" + source)
        for page in qdata.web_pages(data, source):
            part = qdata.part_of(source, page["id"])
            for c in qdata.chunk(page["gold"], rng, 200, 2000):
                if len(c) >= 50:
                    items.append({"text": c, "label": "hq", "source": source, "kind": "gold", "lang": qdata.lang_of(c), "part": part})
            for c in qdata.boilerplate_chunks(qdata.html_blocks(page["html"]), page["reference"], rng):
                items.append({"text": c, "label": "lq", "source": source, "kind": "boilerplate", "lang": qdata.lang_of(c), "part": part})
    for source in qdata.SFT_TRAIN + qdata.SFT_REPORT:
        rng = random.Random("sft/" + source)
        num, den = SFT_TAKE.get(source, (1, 1))
        for key, answer in qdata.sft_answers(data, source):
            if qdata.crc("take/" + key) % den >= num:
                continue
            part = qdata.part_of(source, key)
            texts = [answer] if len(answer) <= 3000 else qdata.chunk(answer, rng, 500, 2500)
            for t in texts:
                items.append({"text": t, "label": "hq", "source": source, "kind": "answer", "lang": qdata.lang_of(t), "part": part})
    return items


def dedup(items):
    seen, out = set(), []
    for it in items:
        k = (it["part"], it["text"])
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


def add_degenerates(items, train_kinds):
    """Per part and language: degenerate versions of hq texts until lq matches hq.
    The train part gets `train_kinds` only; tune and report get every kind."""
    out = list(items)
    for part in ("train", "tune", "report"):
        for lang in ("en", "zh"):
            hq = [it for it in items if it["part"] == part and it["lang"] == lang and it["label"] == "hq"]
            n_lq = sum(1 for it in items if it["part"] == part and it["lang"] == lang and it["label"] == "lq")
            # Train and tune: balance the labels. Report: as many degenerate texts as hq
            # texts (a fifth per kind) besides the boilerplate, so every kind has a sample.
            need = len(hq) if part == "report" else len(hq) - n_lq
            if need <= 0 or not hq:
                continue
            rng = random.Random(f"degenerate/{part}/{lang}")
            pool = [it["text"] for it in hq]
            hq_texts = set(pool)
            kinds = train_kinds if part == "train" else qdata.KINDS
            for k, kind in enumerate(kinds):
                want = need // len(kinds) + (1 if k < need % len(kinds) else 0)
                cands = [it for it in hq if qdata.can_degenerate(kind, it["text"], lang)]
                made, tries = 0, 0
                while made < want and cands and tries < want * 5:
                    tries += 1
                    src = rng.choice(cands)
                    t = qdata.degenerate(kind, src["text"], lang, rng, pool)
                    if not t or t in hq_texts or not t.strip():
                        continue
                    out.append({"text": t, "label": "lq", "source": src["source"], "kind": kind, "lang": lang, "part": part})
                    made += 1
    return out


def main(argv):
    out_dir = qdata.DEFAULT_OUT
    if "--out" in argv:
        i = argv.index("--out")
        out_dir = argv[i + 1]
        del argv[i : i + 2]
    kinds = qdata.TRAIN_KINDS
    if "--kinds" in argv:
        i = argv.index("--kinds")
        kinds = argv[i + 1].split(",")
        del argv[i : i + 2]
    data = argv[0] if argv else qdata.DEFAULT_DATA
    items = add_degenerates(dedup(collect(data)), kinds)
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for part in ("train", "tune", "report"):
        rows = [it for it in items if it["part"] == part]
        random.Random("shuffle/" + part).shuffle(rows)
        qdata.write_jsonl(os.path.join(out_dir, part + ".jsonl"), ({k: v for k, v in r.items() if k != "part"} for r in rows))
        for r in rows:
            key = f'{part}\t{r["label"]}\t{r["lang"]}\t{r["kind"]}\t{r["source"]}'
            counts[key] = counts.get(key, 0) + 1
    with open(os.path.join(out_dir, "counts.json"), "w", encoding="utf-8") as f:
        json.dump(counts, f, indent=1, sort_keys=True)
    print("| part | label | lang | kind | source | texts |")
    print("|---|---|---|---|---|---|")
    for k in sorted(counts):
        print("| " + " | ".join(k.split("\t")) + f" | {counts[k]:,} |")


if __name__ == "__main__":
    main(sys.argv[1:])
