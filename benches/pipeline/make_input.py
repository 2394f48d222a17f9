"""Build the pipeline benchmark's input deterministically from ../shared/data.

The SFT sets (alpaca_zh, alpaca_en, BELLE eval, LLaMA-Factory demos, MedicalGPT) are
read in a fixed order, written as one JSON object per line (their own field names),
and the whole sequence repeated until the file holds at least SIZE_MB megabytes
(10^6 bytes); the last record that crosses the mark is the last one written.

    python3 benches/pipeline/make_input.py DATA_DIR SIZE_MB OUT.jsonl
"""
import glob
import json
import os
import sys


def records(data):
    """Yield the source records in a fixed order."""
    files = []
    files += sorted(glob.glob(os.path.join(data, "alpaca_zh_hikariming/translated/*.json")))
    files += sorted(glob.glob(os.path.join(data, "alpaca_zh_hikariming/supplementary/*.json")))
    files += [os.path.join(data, "alpaca_en/alpaca_data.json")]
    files += [os.path.join(data, "belle_zh_eval/eval_set.json"), os.path.join(data, "belle_zh_eval/zh_seed_tasks.json")]
    files += sorted(glob.glob(os.path.join(data, "llamafactory_demo/*.json")))
    files += sorted(glob.glob(os.path.join(data, "medicalgpt_zh_sft_samples/*.jsonl")))
    for path in files:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                rows = [json.loads(line) for line in f if line.strip()]
            else:
                text = f.read()
                try:
                    rows = json.loads(text)
                except json.JSONDecodeError:
                    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        if isinstance(rows, dict):
            rows = [rows]
        for row in rows:
            if isinstance(row, dict):
                yield json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def main():
    data, size_mb, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    lines = [(line + "\n").encode("utf-8") for line in records(data)]
    if not lines:
        sys.exit(f"no records under {data}")
    target = int(size_mb * 1_000_000)
    written = 0
    with open(out, "wb") as f:
        while written < target:
            for line in lines:
                f.write(line)
                written += len(line)
                if written >= target:
                    break
    print(f"{out}: {written} bytes, {len(lines)} distinct records", file=sys.stderr)


if __name__ == "__main__":
    main()
