#!/usr/bin/env python3
"""Build a realistic raw SFT set for `curate compare`, deterministically, from ../shared/data.

    python3 scripts/make_raw_set.py [--data DIR] [--out DIR] [--records N] [--seed S]
    curate compare OUT/pipeline.toml --output OUT/compare

Writes into OUT (default target/raw_set):
  raw/sft.jsonl      the raw training input (Alpaca records), every defect kind below mixed in
  validation.jsonl   the independent validation set: BELLE's 999-question Chinese eval set
                     (human-written questions, reference answers; another source than the
                     input, which is Alpaca-derived)
  pipeline.toml      pipelines/zh_sft_finetune.toml with absolute paths: this input, the real
                     C-Eval (val), CMMLU (test) and MMLU (final test) releases as benchmarks,
                     and validation.jsonl
  manifest.json      how many records of each kind, and the seed

The clean base: N records (default 16,000), two thirds from the Chinese Alpaca translation
(alpaca_zh_hikariming, MIT) and one third from the English Alpaca (alpaca_en), sampled with
the seed. Then, as scraped and machine-made SFT sets come:
  - exact duplicates: 12% of base records repeated 1-4 more times (a popular prompt scraped
    from several mirrors);
  - near duplicates: 5% copied with light edits (punctuation width, a boilerplate prefix,
    one sentence dropped);
  - leaked benchmark items: 400 C-Eval / CMMLU / MMLU items written as Alpaca records
    (question and options as instruction, answer letter and option as output, some with an
    explanation sentence around them), a quarter of them twice;
  - degenerate answers: 2% replaced by a repetition loop of their first clause, 1% cut to
    a few characters;
  - offensive comments: 300 COLD *train* comments labelled offensive, as answers to a
    "comment on this" prompt;
  - personal data: 3% of answers get a (made-up, checksum-valid) phone number or e-mail
    address appended (redacted by the pipeline, not dropped);
  - AI refusals: 1% of answers replaced by a refusal boilerplate (tagged, not dropped, by
    the default machine_text settings).
Every injected record gets an id naming its kind (`dup-`, `near-`, `leak-`, ...), so what
the pipeline removed can be checked against what was put in.
"""

import argparse
import csv
import glob
import json
import os
import random
import re

REFUSALS = [
    "作为一个AI语言模型，我无法回答这个问题。如果您有其他问题，请随时告诉我。",
    "抱歉，作为人工智能，我没有个人观点，也无法提供这方面的帮助。",
    "As an AI language model, I cannot provide an answer to this question.",
]
PREFIXES = ["【转载】", "本文来自网络，仅供参考。\n", "原文链接见文末。\n", "Source: community forum.\n"]


def read_json_list(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def alpaca_zh(data):
    out = []
    for path in sorted(glob.glob(os.path.join(data, "alpaca_zh_hikariming/translated/*.json"))):
        out.extend(read_json_list(path))
    return [r for r in out if r.get("instruction") and r.get("output")]


def alpaca_en(data):
    return [r for r in read_json_list(os.path.join(data, "alpaca_en/alpaca_data.json")) if r.get("output")]


def bench_items(data, rng):
    """(name, question, options, answer) from C-Eval val, CMMLU test and MMLU final test."""
    items = []
    for path in sorted(glob.glob(os.path.join(data, "ceval/val/*.csv"))):
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                items.append(("ceval", row["question"], [row[k] for k in "ABCD"], row["answer"]))
    for path in sorted(glob.glob(os.path.join(data, "cmmlu/test/*.csv"))):
        with open(path, encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                items.append(("cmmlu", row["Question"], [row[k] for k in "ABCD"], row["Answer"]))
    for path in sorted(glob.glob(os.path.join(data, "mmlu/final/test/*.csv"))):
        with open(path, encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) == 6:
                    items.append(("mmlu", row[0], row[1:5], row[5]))
    rng.shuffle(items)
    return items


def offensive_comments(data):
    out = []
    with open(os.path.join(data, "cold/train.csv"), encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if row.get("label") == "1" and len(row.get("TEXT", "")) >= 20:
                out.append(row["TEXT"])
    return out


def phone(rng):
    return "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))


def near_copy(rec, rng):
    r = dict(rec)
    kind = rng.randrange(3)
    if kind == 0:  # punctuation width
        table = str.maketrans({",": "，", ".": "。", "，": ",", "。": ".", "?": "？", "？": "?"})
        r["output"] = r["output"].translate(table)
    elif kind == 1:
        r["output"] = rng.choice(PREFIXES) + r["output"]
    else:
        parts = re.split(r"(?<=[。！？.!?])", r["output"])
        if len(parts) > 2:
            del parts[rng.randrange(len(parts) - 1)]
        r["output"] = "".join(parts)
    return r


def leak_record(item, rng):
    name, q, opts, ans = item
    zh = name != "mmlu"
    letters = "ABCD"
    body = q + "\n" + "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(opts))
    idx = letters.index(ans.strip()[:1].upper()) if ans.strip()[:1].upper() in letters else 0
    answer = f"{ans}. {opts[idx]}"
    if rng.random() < 0.5:
        answer = ("正确答案是 " if zh else "The correct answer is ") + answer
    instruction = ("请回答下面的选择题。\n" if zh else "Answer the following multiple-choice question.\n") + body
    return {"instruction": instruction, "input": "", "output": answer}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap.add_argument("--data", default=os.environ.get("CURATE_SHARED_DATA", os.path.join(repo, "..", "shared", "data")))
    ap.add_argument("--out", default=os.path.join(repo, "target", "raw_set"))
    ap.add_argument("--records", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    data = os.path.abspath(a.data)
    out = os.path.abspath(a.out)
    rng = random.Random(a.seed)

    zh, en = alpaca_zh(data), alpaca_en(data)
    rng.shuffle(zh)
    rng.shuffle(en)
    n_zh = a.records * 2 // 3
    base = [dict(r, id=f"base-zh-{i}") for i, r in enumerate(zh[:n_zh])]
    base += [dict(r, id=f"base-en-{i}") for i, r in enumerate(en[: a.records - n_zh])]
    rng.shuffle(base)
    counts = {"base": len(base)}

    records = []
    for i, r in enumerate(base):
        r = dict(r)
        u = rng.random()
        if u < 0.02:
            first = re.split(r"[，。,.!?！？\n]", r["output"])[0][:30] or r["output"][:30]
            r["output"] = (first + "，") * rng.randint(12, 30)
            r["id"] = f"loop-{i}"
        elif u < 0.03:
            r["output"] = r["output"][:3]
            r["id"] = f"short-{i}"
        elif u < 0.04:
            r["output"] = rng.choice(REFUSALS)
            r["id"] = f"refusal-{i}"
        elif u < 0.07:
            contact = phone(rng) if rng.random() < 0.6 else f"user{rng.randrange(10**6)}@example.com"
            r["output"] += ("\n如有疑问请联系 " if r["id"].startswith("base-zh") else "\nQuestions? Contact ") + contact
            r["id"] = f"pii-{i}"
        records.append(r)
        if u >= 0.07:
            v = rng.random()
            if v < 0.12:
                for k in range(rng.randint(1, 4)):
                    records.append(dict(r, id=f"dup-{i}-{k}"))
            elif v < 0.17:
                records.append(dict(near_copy(r, rng), id=f"near-{i}"))
    for kind in ["loop", "short", "refusal", "pii", "dup", "near"]:
        counts[kind] = sum(1 for r in records if r["id"].startswith(kind + "-"))

    items = bench_items(data, rng)[:400]
    leaks = []
    for j, item in enumerate(items):
        leaks.append(dict(leak_record(item, rng), id=f"leak-{item[0]}-{j}"))
        if j % 4 == 0:
            leaks.append(dict(leak_record(item, rng), id=f"leak-{item[0]}-{j}-again"))
    counts["leak"] = len(leaks)
    offensive = offensive_comments(data)
    rng.shuffle(offensive)
    toxic = [
        {"instruction": "请评论一下这条微博下面的讨论。", "input": "", "output": t, "id": f"toxic-{j}"}
        for j, t in enumerate(offensive[:300])
    ]
    counts["toxic"] = len(toxic)
    # Scattered through the input, as they come in a scraped set.
    for r in leaks + toxic:
        records.insert(rng.randrange(len(records) + 1), r)
    counts["total"] = len(records)

    os.makedirs(os.path.join(out, "raw"), exist_ok=True)
    with open(os.path.join(out, "raw", "sft.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"id": r["id"], "instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "validation.jsonl"), "w", encoding="utf-8") as f:
        with open(os.path.join(data, "belle_zh_eval/eval_set.json"), encoding="utf-8") as src:
            for j, line in enumerate(src):
                r = json.loads(line)
                if r.get("question") and r.get("std_answer"):
                    f.write(json.dumps({"id": f"belle-{j}", "instruction": r["question"], "input": "", "output": r["std_answer"]}, ensure_ascii=False) + "\n")

    text = open(os.path.join(repo, "pipelines", "zh_sft_finetune.toml"), encoding="utf-8").read()
    text = re.sub(r"^paths = \[.*\]$", f"paths = [{json.dumps(os.path.join(out, 'raw', 'sft.jsonl'))}]", text, count=1, flags=re.M)
    text = re.sub(r'^validation = ".*"$', f"validation = {json.dumps(os.path.join(out, 'validation.jsonl'))}", text, count=1, flags=re.M)
    text = re.sub(r"\n\[\[benchmark\]\].*?(?=\n\[output\])", "", text, flags=re.S)
    benches = "".join(
        f'\n[[benchmark]]\nname = "{n}"\nformat = "{n}"\npath = {json.dumps(os.path.join(data, p))}\n'
        for n, p in [("ceval", "ceval/val"), ("cmmlu", "cmmlu/test"), ("mmlu", "mmlu/final/test")]
    )
    text = text.replace("\n[output]", benches + "\n[output]", 1)
    text = re.sub(r'^dir = ".*"$', f"dir = {json.dumps(os.path.join(out, 'out'))}", text, count=1, flags=re.M)
    text = text.replace('"../', '"' + repo + "/")
    with open(os.path.join(out, "pipeline.toml"), "w", encoding="utf-8") as f:
        f.write(text)
    counts["seed"] = a.seed
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(counts, f, indent=1)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
