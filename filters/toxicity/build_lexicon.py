#!/usr/bin/env python3
"""Build lexicon_zh.txt and lexicon_en.txt from the shared word lists.

    python3 filters/toxicity/build_lexicon.py [SHARED_DATA]   # default ../shared/data

Deterministic (sorted output, no randomness): the same inputs give the same bytes.
Python 3 standard library only.

Sources (see SOURCE.md): LDNOOBW zh/en (CC BY 4.0, category `obscene`) and
houbb/sensitive-word's tagged dictionary (Apache-2.0), restricted to the offensive
categories 2 porn/profanity (`porn`), 1 drugs (`drugs`), 3 gambling (`gambling`).
Tag 0 (politics) and tag 4 alone (crime, mostly ads for illegal goods) are not
toxicity in SFT data and are left out; untagged houbb entries are left out too.

Filters (a lexicon term that fires on clean text is worse than no term):
  * terms are normalized like the stage does (NFKC-free: full-width ASCII folded, lower-case);
  * Chinese terms need >= 2 characters (乳, 屄 alone flag 乳制品 ...), Latin terms >= 3;
  * houbb's allow list is removed;
  * a term found in 2 or more clean texts is dropped. Clean texts for filtering:
    C-Eval *test* questions, CMMLU *dev* questions, COLD *train* safe rows. The
    evaluation (tests/toxicity.rs) measures on the other splits (C-Eval val+dev,
    CMMLU test, COLD dev), so filtering does not flatter the reported numbers.
"""
import csv
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data")
HOUBB_TAGS = {"2": "porn", "1": "drugs", "3": "gambling"}  # priority order
MAX_CLEAN_DOCS = 2  # drop a term found in this many clean texts


def norm(s):
    out = []
    for c in s:
        o = ord(c)
        if 0xFF01 <= o <= 0xFF5E:
            c = chr(o - 0xFEE0)
        elif o == 0x3000:
            c = " "
        out.append(c.lower())
    return "".join(out).strip()


def is_cjk(c):
    o = ord(c)
    return 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F


def long_enough(t):
    if any(is_cjk(c) for c in t):
        return len(t) >= 2
    return len(t) >= 3


def read_csv_column(path, names):
    with open(path, encoding="utf-8-sig", newline="") as f:
        r = csv.reader(f)
        header = next(r)
        idx = [i for i, h in enumerate(header) if h.strip() in names]
        if not idx:
            raise SystemExit(f"{path}: none of {names} in header {header}")
        return [row[idx[0]] for row in r if len(row) > idx[0]]


def clean_texts():
    texts = []
    for p in sorted(glob.glob(os.path.join(DATA, "ceval", "test", "*.csv"))):
        texts += read_csv_column(p, {"question"})
    for p in sorted(glob.glob(os.path.join(DATA, "cmmlu", "dev", "*.csv"))):
        texts += read_csv_column(p, {"Question"})
    with open(os.path.join(DATA, "cold", "train.csv"), encoding="utf-8-sig", newline="") as f:
        r = csv.DictReader(f)
        texts += [row["TEXT"] for row in r if row["label"].strip() == "0"]
    return [norm(t) for t in texts]


def main():
    terms = {}  # term -> category
    with open(os.path.join(DATA, "houbb_sensitive_word_zh", "sensitive_word_tags.txt"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").rsplit(" ", 1)
            if len(parts) != 2:
                continue
            word, tags = parts
            tags = tags.split(",")
            for code, cat in HOUBB_TAGS.items():
                if code in tags:
                    terms.setdefault(norm(word), cat)
                    break
    with open(os.path.join(DATA, "houbb_sensitive_word_zh", "sensitive_word_allow.txt"), encoding="utf-8") as f:
        allow = {norm(l) for l in f if l.strip()}
    for lang in ("zh", "en"):
        with open(os.path.join(DATA, "ldnoobw", "lists", f"{lang}.txt"), encoding="utf-8") as f:
            for line in f:
                t = norm(line)
                if t:
                    terms.setdefault(t, "obscene")
    terms = {t: c for t, c in terms.items() if t and long_enough(t) and t not in allow and "\t" not in t}

    clean = clean_texts()
    dropped = {}
    for t in sorted(terms):
        n = 0
        for doc in clean:
            if t in doc:
                n += 1
                if n >= MAX_CLEAN_DOCS:
                    break
        if n >= MAX_CLEAN_DOCS:
            dropped[t] = terms.pop(t)

    header = (
        "# curate toxicity lexicon ({lang}); built by filters/toxicity/build_lexicon.py, see SOURCE.md.\n"
        "# Sources: LDNOOBW (CC BY 4.0, (c) LDNOOBW contributors), houbb/sensitive-word (Apache-2.0).\n"
        "# Format: term<TAB>category; lines starting with # are comments.\n"
    )
    zh = sorted(t for t in terms if any(is_cjk(c) for c in t))
    en = sorted(t for t in terms if not any(is_cjk(c) for c in t))
    for lang, items in (("zh", zh), ("en", en)):
        with open(os.path.join(HERE, f"lexicon_{lang}.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write(header.format(lang=lang))
            for t in items:
                f.write(f"{t}\t{terms[t]}\n")
    print(f"kept zh {len(zh)}, en {len(en)}; dropped {len(dropped)} found in >= {MAX_CLEAN_DOCS} clean texts, e.g. "
          + ", ".join(sorted(dropped)[:15]), file=sys.stderr)


if __name__ == "__main__":
    main()
