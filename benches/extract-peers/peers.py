"""Run a Python extractor over a peers manifest; write DIR/<i>.txt and DIR/seconds.txt.

Usage: python peers.py MANIFEST TOOL DIR, TOOL one of trafilatura, justext,
readability. Only the extraction call is timed, in CPU time of the thread (HTML
already in memory, one page at a time). jusText gets the English stop list on `en/*` pages and none
on Chinese pages (it ships no Chinese list).
"""
import json
import os
import sys
import time

manifest, tool, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)

if tool == "trafilatura":
    import trafilatura

    def run(html, group):
        return trafilatura.extract(html) or ""
elif tool == "justext":
    import justext

    english = justext.get_stoplist("English")

    def run(html, group):
        stop = english if group.startswith("en") else frozenset()
        paras = justext.justext(html.encode("utf-8"), stop, encoding="utf-8")
        return "\n".join(p.text for p in paras if not p.is_boilerplate)
elif tool == "readability":
    import lxml.html
    from readability import Document

    def run(html, group):
        summary = Document(html).summary()
        return lxml.html.fromstring(summary).text_content()
else:
    sys.exit(f"unknown tool {tool}")

times = []
with open(manifest) as f:
    pages = [json.loads(line) for line in f]
for i, page in enumerate(pages):
    with open(page["html_path"], "rb") as h:
        html = h.read().decode("utf-8", errors="replace")
    start = time.thread_time()
    try:
        text = run(html, page["group"])
    except Exception as e:  # a peer failing on a page scores 0 there
        print(f"{tool}: page {i} failed: {e}", file=sys.stderr)
        text = ""
    times.append(time.thread_time() - start)
    with open(os.path.join(out, f"{i}.txt"), "w") as t:
        t.write(text)
with open(os.path.join(out, "seconds.txt"), "w") as s:
    s.write("".join(f"{t}\n" for t in times))
