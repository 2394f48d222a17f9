#!/usr/bin/env python3
"""Evaluate the quality model on the report part, and measure what it removes from
each SFT set of the shared data, all through `curate run` (classifier stage):

    python3 filters/quality/evaluate.py [MODEL] [--threshold T] [--data SHARED_DATA] [--dir DIR]

MODEL defaults to filters/quality/quality_zh_en.bin, T to 0.01 (the default threshold
tune.py chose), DIR to target/quality_model (build_train.py's output: report.jsonl).
Part 1: AUROC of P(hq), hq against lq, overall, per language, per source (the
source's hq texts against the lq made from that source: its pages' boilerplate and
degenerate versions of its texts), per lq kind (all hq against that kind); P/R/F1 of
flagging lq (score < T) and the share of hq flagged. Part 2: each SFT file as a user
gives it (`fields = "response"`, `action = "drop"`): records in, share removed, and
three removed answers.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import qdata

SFT_SETS = [
    # (name, paths under SHARED_DATA, extra [input] lines)
    ("alpaca_en (train source)", ["alpaca_en/alpaca_data.json"], ""),
    ("alpaca_zh_hikariming (train source)", ["alpaca_zh_hikariming/translated/*.json", "alpaca_zh_hikariming/supplementary/*.json"], ""),
    ("llamafactory alpaca_zh_demo (train source)", ["llamafactory_demo/alpaca_zh_demo.json"], ""),
    ("llamafactory alpaca_en_demo (report)", ["llamafactory_demo/alpaca_en_demo.json"], ""),
    ("belle_zh_eval eval_set (report)", ["belle_zh_eval/eval_set.json"],
     'format = "jsonl"\nschema = "alpaca"\n[input.fields]\ninstruction = "question"\noutput = "std_answer"\n'),
    ("medicalgpt sharegpt_zh (report)", ["medicalgpt_zh_sft_samples/sharegpt_zh_1K_format.jsonl"], ""),
    ("medicalgpt medical_sft (report)", ["medicalgpt_zh_sft_samples/medical_sft_1K_format.jsonl"], ""),
    ("llamafactory dpo_zh_demo (not used)", ["llamafactory_demo/dpo_zh_demo.json"], ""),
    ("medicalgpt dpo_zh_500 (not used)", ["medicalgpt_zh_sft_samples/dpo_zh_500.jsonl"], ""),
    ("llamafactory c4_demo (web documents, not used)", ["llamafactory_demo/c4_demo.jsonl"], ""),
]


def report_part(model, th, d):
    rows = qdata.read_jsonl(os.path.join(d, "report.jsonl"))
    scores = qdata.score(model, [r["text"] for r in rows], keep_punct=True)
    y = [1 if r["label"] == "hq" else 0 for r in rows]

    def line(name, sel):
        s = [scores[i] for i in sel]
        t = [y[i] for i in sel]
        p, r, f, fpr = qdata.flag_stats(s, [not v for v in t], th)
        print(f"| {name} | {sum(t):,} | {len(t) - sum(t):,} | {qdata.auroc(s, t):.4f} | {p:.3f} | {r:.3f} | {f:.3f} | {100 * fpr:.1f}% |")

    print(f"Report part, threshold {th} (flag lq: score < threshold)\n")
    print("| subset | hq | lq | AUROC | P | R | F1 | hq flagged |")
    print("|---|---|---|---|---|---|---|---|")
    line("all", range(len(rows)))
    for lang in ("en", "zh"):
        line("lang " + lang, [i for i, r in enumerate(rows) if r["lang"] == lang])
    for src in qdata.WEB_REPORT + qdata.SFT_REPORT:
        line("source " + src, [i for i, r in enumerate(rows) if r["source"] == src])
    for kind in ["boilerplate"] + qdata.KINDS:
        for lang in ("all", "en", "zh"):
            sel = [i for i, r in enumerate(rows) if (r["label"] == "hq" or r["kind"] == kind) and lang in ("all", r["lang"])]
            line(f"kind {kind}" + ("" if lang == "all" else f", {lang}"), sel)
    print()


def response_text(rec):
    for k in ("output", "std_answer", "text"):
        if isinstance(rec.get(k), str) and rec[k]:
            return rec[k]
    conv = rec.get("conversations") or []
    for t in reversed(conv):
        if t.get("from") == "gpt":
            return t.get("value", "")
    if isinstance(rec.get("chosen"), dict):
        return rec["chosen"].get("value", "")
    return json.dumps(rec, ensure_ascii=False)


def sft_sets(model, th, data):
    print(f"What the model removes at threshold {th} (`curate run`, classifier stage, fields = \"response\", action = \"drop\")\n")
    print("| set | records | removed | share | removed examples (response, first 80 characters) |")
    print("|---|---|---|---|---|")
    for name, paths, extra in SFT_SETS:
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "p.toml"), "w", encoding="utf-8") as f:
                f.write("[input]\npaths = %s\n" % json.dumps([os.path.join(os.path.abspath(data), p) for p in paths]))
                f.write(extra)  # ends with [input.fields] where it has one
                f.write(qdata.classifier_stage(model, threshold=th, action="drop", keep_punct=True))
                f.write('[output]\ndir = "out"\ncompression = "none"\n')
            subprocess.run([qdata.curate_binary(), "run", os.path.join(tmp, "p.toml"), "--quiet", "--threads", "2"], check=True)
            with open(os.path.join(tmp, "out", "stats.json"), encoding="utf-8") as f:
                st = json.load(f)
            rejected = []
            for p in sorted(glob.glob(os.path.join(tmp, "out", "rejected", "*.jsonl"))):
                rejected += [r for r in qdata.read_jsonl(p) if r.get("stage") == "quality"]
            n = st["input"]
            ex = " / ".join(json.dumps(response_text(r.get("record") or {})[:80], ensure_ascii=False) for r in rejected[:3])
            print(f"| {name} | {n:,} | {len(rejected):,} | {100 * len(rejected) / n:.1f}% | {ex} |")
    print()


def main(argv):
    data, d, th = qdata.DEFAULT_DATA, qdata.DEFAULT_OUT, 0.01
    for flag in ("--data", "--dir", "--threshold"):
        if flag in argv:
            i = argv.index(flag)
            v = argv[i + 1]
            del argv[i : i + 2]
            if flag == "--data":
                data = v
            elif flag == "--dir":
                d = v
            else:
                th = float(v)
    model = argv[0] if argv else os.path.join(qdata.HERE, "quality_zh_en.bin")
    report_part(model, th, d)
    sft_sets(model, th, data)


if __name__ == "__main__":
    main(sys.argv[1:])
