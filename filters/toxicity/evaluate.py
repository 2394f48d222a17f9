#!/usr/bin/env python3
"""Score a toxicity model on every evaluation source, through `curate run`:

    python3 filters/toxicity/evaluate.py MODEL [THRESHOLD ...] [--data SHARED_DATA]

Sources (none trained on, none used to choose features or thresholds; see toxdata.py):
COLD dev, ToxiCN test (CC BY-NC-ND: evaluation only; also without its "reporting"
comments, which COLD would call safe), SWSR held-aside posts, exam questions
(C-Eval val+dev, CMMLU test; all safe). Prints one Markdown row per source and
threshold: P, R, F1, false-positive rate, AUROC.
"""
import sys

import toxdata


def main(argv):
    data = toxdata.DEFAULT_DATA
    if "--data" in argv:
        i = argv.index("--data")
        data = argv[i + 1]
        del argv[i : i + 2]
    model = argv[0]
    thresholds = [float(t) for t in argv[1:]] or [0.5]

    sources = {}
    sources["COLD dev"] = toxdata.cold(data, "dev")
    tox = toxdata.toxicn(data, "test")
    sources["ToxiCN test"] = [(t, y) for t, y, _ in tox]
    sources["ToxiCN test, no reporting"] = [(t, y) for t, y, e in tox if e != 3]
    sources["SWSR held"] = toxdata.swsr(data, held=True)
    sources["exam questions"] = [(t, 0) for t in toxdata.exam_questions(data, "eval")]

    texts, spans = [], {}
    for name, rows in sources.items():
        spans[name] = (len(texts), len(texts) + len(rows))
        texts.extend(t for t, _ in rows)
    scores = toxdata.score(model, texts, threads=2)

    print("| source | rows | threshold | P | R | F1 | FP rate | AUROC |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in sources.items():
        a, b = spans[name]
        s, y = scores[a:b], [l for _, l in rows]
        auc = toxdata.auroc(s, y)
        for th in thresholds:
            p, r, f, fpr = toxdata.f1_at(s, y, th)
            if sum(y):
                print(f"| {name} | {len(rows)} | {th} | {p:.3f} | {r:.3f} | {f:.3f} | {100 * fpr:.2f}% | {auc:.3f} |")
            else:
                print(f"| {name} | {len(rows)} | {th} | | | | {100 * fpr:.2f}% | |")


if __name__ == "__main__":
    main(sys.argv[1:])
