#!/usr/bin/env python3
"""Choose the quality model's options and default threshold on the tune part only:

    python3 filters/quality/tune.py [DIR] NAME:OPTS ...   # DIR default target/quality_model

OPTS are train-classifier options as `key=value` joined by commas (`epochs=5,dim=16`);
unset keys take the base values below. Each config is trained on DIR/train.jsonl and
scored on DIR/tune.jsonl through `curate run`. Prints one Markdown row per config:
tune AUROC overall, per language and per lq kind, and the threshold chosen by the rule
fixed before the runs: the threshold (GRID: 0.001 to 0.95) with the best F1 of
flagging lq (score < threshold) among those that flag at most 3% of the tune part's SFT
answers; the config with the highest overall AUROC ships with its threshold.
The report part is never read.
"""
import os
import subprocess
import sys
import time

import qdata

BASE = {"epochs": "5", "lr": "0.5", "dim": "32", "word-ngrams": "3", "bucket": "200000", "seed": "1",
        "char-split": "true", "keep-punct": "false", "quantize": "true", "minn": "0", "maxn": "0"}


# fastText's probabilities sit near 0 and 1, so the grid is finer near 0.
GRID = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03] + [round(0.05 * i, 2) for i in range(1, 20)]


def choose_threshold(scores, rows):
    is_lq = [r["label"] == "lq" for r in rows]
    answers = [s for s, r in zip(scores, rows) if r["label"] == "hq" and r["kind"] == "answer"]
    best = None
    for th in GRID:
        flagged_answers = sum(1 for s in answers if s < th) / len(answers)
        if flagged_answers > 0.03:
            continue
        p, r, f, fpr = qdata.flag_stats(scores, is_lq, th)
        if best is None or f > best[1]:
            best = (th, f, p, r, fpr, flagged_answers)
    return best


def main(argv):
    d = qdata.DEFAULT_OUT
    if argv and ":" not in argv[0]:
        d = argv.pop(0)
    rows = qdata.read_jsonl(os.path.join(d, "tune.jsonl"))
    kinds = ["boilerplate"] + qdata.KINDS
    print("| config | size MB | train s | AUROC | en | zh | " + " | ".join(kinds) + " | threshold | P | R | F1 | hq flagged | answers flagged |")
    print("|---" * (13 + len(kinds)) + "|")
    for spec in argv:
        name, _, opts = spec.partition(":")
        o = dict(BASE)
        for kv in filter(None, opts.split(",")):
            k, v = kv.split("=")
            o[k] = v
        model = os.path.join(d, "tune_" + name + ".bin")
        cmd = [qdata.curate_binary(), "train-classifier", "--input", os.path.join(d, "train.jsonl"), "--output", model]
        for k, v in o.items():
            cmd += ["--" + k, v]
        t = time.time()
        subprocess.run(cmd, check=True, capture_output=True)
        secs = time.time() - t
        scores = qdata.score(model, [r["text"] for r in rows], threads=1, keep_punct=o["keep-punct"] == "true")
        y = [1 if r["label"] == "hq" else 0 for r in rows]
        cells = [qdata.auroc(scores, y)]
        for lang in ("en", "zh"):
            sel = [i for i, r in enumerate(rows) if r["lang"] == lang]
            cells.append(qdata.auroc([scores[i] for i in sel], [y[i] for i in sel]))
        for k in kinds:
            sel = [i for i, r in enumerate(rows) if r["label"] == "hq" or r["kind"] == k]
            cells.append(qdata.auroc([scores[i] for i in sel], [y[i] for i in sel]))
        best = choose_threshold(scores, rows)
        if best is None:  # every threshold flags more than 3% of the answers
            a = [s for s, r in zip(scores, rows) if r["label"] == "hq" and r["kind"] == "answer"]
            best = (0.05, 0.0, 0.0, 0.0, 0.0, sum(1 for s in a if s < 0.05) / len(a))
        th, f, p, r, fpr, fa = best
        print(f"| {name} | {os.path.getsize(model) / 1e6:.1f} | {secs:.0f} | " + " | ".join(f"{c:.4f}" for c in cells)
              + f" | {th} | {p:.3f} | {r:.3f} | {f:.3f} | {100 * fpr:.1f}% | {100 * fa:.1f}% |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
