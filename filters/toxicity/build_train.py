#!/usr/bin/env python3
"""Write the training file of the toxicity model (JSON Lines, {"TEXT", "label", "source"}):

    python3 filters/toxicity/build_train.py [SHARED_DATA] [--pos-weight N] > toxicity_train.jsonl

The training pool, shuffled with a fixed seed (fastText reads its input in order
with a decaying learning rate, so unshuffled blocks let the last source dominate):
  * COLD train rows as they are (label 0 safe / 1 offensive);
  * SWSR comments of the training part (label 1 sexist / 0 on-topic, not sexist);
    the posts of the held-aside part (toxdata.swsr_is_held) are never written;
  * clean exam-style questions as label 0: C-Eval *test* and CMMLU *dev*. Without
    them a model that saw only social-media comments flags 3% of exam questions
    (formal text is out of its domain). The evaluation uses the other splits.

`--pos-weight N` writes each offensive row N times in a row (a class weight: fastText
has none); cv.py chose 2 (see SOURCE.md). COLD dev, ToxiCN and SWSR's held-aside posts
are never written here: they are evaluation only.
"""
import json
import random
import sys

import toxdata



def pool(data):
    """The training pool as dicts {"TEXT", "label", "source"}."""
    rows = [{"TEXT": t, "label": str(y), "source": "cold"} for t, y in toxdata.cold(data, "train")]
    rows += [{"TEXT": t, "label": str(y), "source": "swsr"} for t, y in toxdata.swsr(data, held=False)]
    rows += [{"TEXT": t, "label": "0", "source": "exam"} for t in toxdata.exam_questions(data, "train")]
    random.Random(1).shuffle(rows)
    return rows


def main(argv):
    weight = 1
    if "--pos-weight" in argv:
        i = argv.index("--pos-weight")
        weight = int(argv[i + 1])
        del argv[i : i + 2]
    data = argv[0] if argv else toxdata.DEFAULT_DATA
    for r in pool(data):
        line = json.dumps(r, ensure_ascii=False) + "\n"
        sys.stdout.write(line * (weight if r["label"] == "1" else 1))


if __name__ == "__main__":
    main(sys.argv[1:])
