#!/usr/bin/env python3
"""Write the training file of mgt_zh_formal.bin (with FORMAL_REPEAT=0: of mgt_char.bin) (JSON Lines, {"text", "label", "source"}):

    python3 filters/machine_text/build_train.py [SHARED_DATA] > mgt_train.jsonl

label 1 = machine-written (LLM answers), 0 = human-written. Sources are chosen so
that the evaluation in tests/machine_text.rs runs on sources that are NOT here, or on
documents and topics that are not: AGT-2025 fold B (M4GT human vs GPT-4.5 / DeepSeek-R1;
fold A, the even ids, is in the pool), MedicalGPT medical answers
(human) vs MedicalGPT ShareGPT assistant turns (ChatGPT), magic-html gold texts
(human web pages) and Fast-DetectGPT's gpt3to4 folder (English, davinci /
GPT-3.5 / GPT-4). Holding the medical answers out means the model cannot learn
"medical topic = human"; the held-out pair measures whether it learned style.

Human (0): COLD train texts (social media; every 3rd row), C-Eval test and CMMLU
dev questions (every 2nd), SOHU news texts, AGT-2025 fold A human answers, formal prose
from Chinese books installed by Debian packages (formal_prose.py: Debian Reference, the
Debian Administrator's Handbook, the New Maintainers' Guide, LibreOffice's help; four
pages in five, the fifth and the Debian Edu manual are build_eval.py's); English: Fast-DetectGPT main/
originals (XSum, SQuAD, WritingPrompts), MMLU test questions (every 7th), C4 docs.
Machine (1): BELLE eval answers, alpaca-gpt4-zh demo outputs, LLaMA-Factory and
MedicalGPT DPO chosen+rejected answers, hikariming supplementary ChatGPT/ERNIE
answers (code questions: every 9th), AGT-2025 fold A GPT-4.5 / DeepSeek-R1 rewrites;
English: Fast-DetectGPT main/ samples
(GPT-J, NeoX), Alpaca outputs (text-davinci-003, every 17th), alpaca-gpt4 demo.

Deterministic: sorted files, input order kept, fixed strides, no randomness; rows
are spread evenly by source so every stretch of the training pass sees a mix.
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
MIN_CHARS = 10


def p(*parts):
    return os.path.join(DATA, *parts)


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def csv_column(path, name):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


def every(rows, k):
    return rows[::k]


def turn_text(t):
    return t["value"] if isinstance(t, dict) else t


sources = []  # (name, label, [texts])

# ---- human, Chinese
sources.append(("cold_train", "0", every(csv_column(p("cold", "train.csv"), "TEXT"), 3)))
exam = []
for pattern, col in (("ceval/test/*.csv", "question"), ("cmmlu/dev/*.csv", "Question")):
    for f in sorted(glob.glob(p(pattern))):
        exam.extend(csv_column(f, col))
sources.append(("exam_questions", "0", every(exam, 2)))
sohu, seen = [], set()
for f in sorted(glob.glob(p("zh_similarity_pairs_text2vec", "sohu2021", "*.jsonl"))):
    for r in jsonl(f):
        for k in ("sentence1", "sentence2"):
            if r[k] not in seen:
                seen.add(r[k])
                # The SOHU export turned paragraph breaks into two spaces; put them back,
                # else the only human documents with paragraphs would be English (C4).
                sohu.append(re.sub(r" {2,}", "\n\n", r[k].strip()))
sources.append(("sohu_news", "0", sohu))

# Formal human prose: Debian's Chinese books (formal_prose.py), minus one page in five
# (build_eval.py's tune part) and minus the Debian Edu manual (left out whole: report part).
# Without them the pool's formal human Chinese is news (SOHU) and exam questions, and
# impersonal explanatory prose, the register of definitions and manuals, reads as a model's.
# `FORMAL_BOOKS` limits the books (the leave-one-book-out check of docs/benchmarks/machine_text.md).
formal_books = os.environ.get("FORMAL_BOOKS", ",".join(formal_prose.BOOKS)).split(",")
formal_repeat = int(os.environ.get("FORMAL_REPEAT", "1"))
books = []
for book in formal_books:
    if book in formal_prose.LEFT_OUT or not formal_repeat:
        continue
    chunks = formal_prose.chunks(book)
    if not chunks:
        # A missing package would silently give another pool (and another model).
        sys.exit(f"build_train.py: no text for {book} ({formal_prose.BOOKS[book]}); "
                 "install the packages named in formal_prose.py, or set FORMAL_REPEAT=0")
    books += [chunk for page, chunk in chunks if not formal_prose.held_aside(page)]
sources.append(("formal_books_zh", "0", books * formal_repeat))

# ---- machine, Chinese
sources.append(("belle_answers", "1", [r["std_answer"] for r in jsonl(p("belle_zh_eval", "eval_set.json"))]))
with open(p("llamafactory_demo", "alpaca_zh_demo.json"), encoding="utf-8") as f:
    sources.append(("alpaca_gpt4_zh", "1", [r["output"] for r in json.load(f)]))
dpo = []
with open(p("llamafactory_demo", "dpo_zh_demo.json"), encoding="utf-8") as f:
    for r in json.load(f):
        dpo += [turn_text(r["chosen"]), turn_text(r["rejected"])]
for r in jsonl(p("medicalgpt_zh_sft_samples", "dpo_zh_500.jsonl")):
    dpo += [turn_text(r["chosen"]), turn_text(r["rejected"])]
sources.append(("dpo_answers_zh", "1", dpo))
supp = []
for f in sorted(glob.glob(p("alpaca_zh_hikariming", "supplementary", "*.json"))):
    with open(f, encoding="utf-8") as fh:
        rows = [r["output"] for r in json.load(fh)]
    supp += every(rows, 9) if "code_questions" in f else rows
sources.append(("hikariming_supp", "1", supp))

# ---- AGT-2025 (M4GT Zhidao-style answers vs GPT-4.5 / DeepSeek-R1 rewrites of them), fold A
# only: a human text and its rewrites share an id, and ids with an even number form fold A,
# so fold B (odd ids) is held out whole, topics included, for tests/machine_text.rs.
# Without these, no human text in the pool is a casual Q&A answer and no machine text
# imitates one; GPT-4.5's plain first-person prose then reads as human.
# `AGT_MODELS` limits the machine side (e.g. `DS.R1`: the cross-generator check of the README);
# `AGT_TRAIN_PARITY=1` trains on the odd ids instead (the other half of a two-fold check).
agt_models = set(os.environ.get("AGT_MODELS", "GPT4.5,DS.R1").split(","))
agt_parity = int(os.environ.get("AGT_TRAIN_PARITY", "0"))


def fold_a(row_id):
    return int(float(row_id)) % 2 == agt_parity


with open(p("agt2025_zh_mgt", "m4gt_human.json"), encoding="utf-8") as f:
    agt_human = [r["text"] for r in json.load(f) if r["text"] and fold_a(r["id"])]
# Three copies of each row: 555 texts in a pool of 33k would barely move the model (the
# two-fold check of the README chose 3 over 1 and 6).
agt_repeat = int(os.environ.get("AGT_REPEAT", "3"))
sources.append(("agt_human_fold_a", "0", agt_human * agt_repeat))
agt_machine = [r["text"] for r in jsonl(p("agt2025_zh_mgt", "m4gt_machine_gpt4.5_dsr1.jsonl"))
               if r["text"] and r["model"] in agt_models and fold_a(r["id"])]
sources.append(("agt_machine_fold_a", "1", agt_machine * agt_repeat))

# ---- English
held_out = set()
for f in glob.glob(p("fast_detect_gpt_mgt_en", "gpt3to4", "*.raw_data.json")):
    with open(f, encoding="utf-8") as fh:
        held_out.update(json.load(fh)["original"])
orig, samp, seen = [], [], set()
for f in sorted(glob.glob(p("fast_detect_gpt_mgt_en", "main", "*.raw_data.json"))):
    with open(f, encoding="utf-8") as fh:
        d = json.load(fh)
    for o in d["original"]:
        if o not in held_out and o not in seen:
            seen.add(o)
            orig.append(o)
    samp += d["sampled"]
sources.append(("fdgpt_main_human", "0", orig))
mmlu = []
for f in sorted(glob.glob(p("mmlu", "final", "test", "*.csv"))):
    with open(f, encoding="utf-8", newline="") as fh:
        mmlu += [row[0] for row in csv.reader(fh) if row]
sources.append(("mmlu_questions", "0", every(mmlu, 7)))
sources.append(("c4_docs", "0", [r["text"] for r in jsonl(p("llamafactory_demo", "c4_demo.jsonl"))]))
sources.append(("fdgpt_main_machine", "1", samp))
with open(p("alpaca_en", "alpaca_data.json"), encoding="utf-8") as f:
    sources.append(("alpaca_davinci", "1", every([r["output"] for r in json.load(f)], 17)))
with open(p("llamafactory_demo", "alpaca_en_demo.json"), encoding="utf-8") as f:
    sources.append(("alpaca_gpt4_en", "1", [r["output"] for r in json.load(f)]))

queues = [(n, l, [t for t in texts if t and len(t.strip()) >= MIN_CHARS]) for n, l, texts in sources]
for n, l, texts in queues:
    print(f"{n}\t{l}\t{len(texts)}", file=sys.stderr)
# Spread each source evenly over the file (row i of n at position (i + 0.5) / n;
# ties by source order), so every stretch of fastText's pass sees every source.
rows = [((i + 0.5) / len(texts), k, i) for k, (_, _, texts) in enumerate(queues) for i in range(len(texts))]
rows.sort()
out = sys.stdout
for _, k, i in rows:
    n, l, texts = queues[k]
    out.write(json.dumps({"text": texts[i], "label": l, "source": n}, ensure_ascii=False) + "\n")
