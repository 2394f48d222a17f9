#!/usr/bin/env python3
"""Write the training file of cold_char.bin (JSON Lines, {"text", "label"}):

    python3 filters/toxicity/build_train.py [SHARED_DATA] > cold_train_plus.jsonl

COLD train rows as they are (label 0 safe / 1 offensive), then clean exam-style
negatives (label 0): C-Eval *test* questions and CMMLU *dev* questions. Without
them the model, which saw only social-media comments, flags 3% of exam questions
(formal text is out of its domain). The evaluation uses the other splits (C-Eval
val+dev, CMMLU test, COLD dev). Deterministic: sorted files, input order kept.
"""
import csv
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data")


def column(path, name):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


out = sys.stdout
with open(os.path.join(DATA, "cold", "train.csv"), encoding="utf-8-sig", newline="") as f:
    for row in csv.DictReader(f):
        out.write(json.dumps({"TEXT": row["TEXT"], "label": row["label"].strip()}, ensure_ascii=False) + "\n")
for pattern, name in (("ceval/test/*.csv", "question"), ("cmmlu/dev/*.csv", "Question")):
    for p in sorted(glob.glob(os.path.join(DATA, pattern))):
        for q in column(p, name):
            out.write(json.dumps({"TEXT": q, "label": "0"}, ensure_ascii=False) + "\n")
