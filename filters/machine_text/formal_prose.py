"""Formal human Chinese prose from Debian's documentation packages (imported by
build_train.py and build_eval.py; Python 3 standard library).

Books and help pages translated into Chinese by people (Debian Reference, the Debian
Administrator's Handbook, the New Maintainers' Guide, the Debian Edu manual, LibreOffice's help): definitions and explanations in a neutral, impersonal register, the kind of
human text a detector trained on chat answers takes for a model. Install them with

    apt-get install debian-reference-zh-cn debian-handbook maint-guide-zh-cn \
        debian-edu-doc-zh-cn libreoffice-help-zh-cn

Each HTML page's paragraphs (`<p>`, mostly Chinese, no code) are grouped, in page order,
into chunks of at least MIN_CHUNK characters (about an answer's length). Every chunk
carries its page, so a split by page keeps a page's chunks on one side.
"""
import glob
import html.parser
import os
import re

# source name -> HTML files (sorted); the Debian 12 (bookworm) package layouts.
BOOKS = {
    "debian_reference": "/usr/share/doc/debian-reference-zh-cn/docs/*.zh-cn.html",
    "debian_handbook": "/usr/share/doc/debian-handbook/html/zh-CN/*.html",
    "maint_guide": "/usr/share/doc/maint-guide-zh-cn/html/*.zh-cn.html",
    "debian_edu_manual": "/usr/share/doc/debian-edu-doc-zh-cn/debian-edu-bookworm-manual.html",
    "libreoffice_help": "/usr/share/libreoffice/help/zh-CN/text/*/*/*.html",
}
# Books left out of training whole (leave one source out): evaluation only.
LEFT_OUT = ("debian_edu_manual",)
MIN_CHUNK = 120
MAX_CHUNK = 600
MIN_PARAGRAPH = 20
# Share of Chinese characters among the letters of a paragraph kept.
MIN_CJK_SHARE = float(os.environ.get("FORMAL_MIN_CJK_SHARE", "0.6"))


# Code blocks, tables and scripts are not prose; inline code inside a sentence is kept.
SKIP = ("pre", "table", "script", "style")


class _Paragraphs(html.parser.HTMLParser):
    """Text of the paragraphs (`<p>`, `<div class="para">`) outside code blocks and tables, one string each."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.cur, self.depth_p, self.skip = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in SKIP:
            self.skip += 1
        elif tag == "p" or (tag == "div" and ("class", "para") in attrs):
            # The handbook writes its paragraphs as <div class="para">; nothing nests in them.
            self.depth_p = 1
            self.cur = []

    def handle_endtag(self, tag):
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in ("p", "div") and self.depth_p:
            self.depth_p = 0
            self.out.append("".join(self.cur))
            self.cur = []

    def handle_data(self, data):
        if self.depth_p and not self.skip:
            self.cur.append(data)


def _cjk_share(text):
    letters = [c for c in text if c.isalpha()]
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / max(1, len(letters))


def _clean(p):
    return re.sub(r"\s+", " ", p).strip()


def chunks(source):
    """[(page, chunk)] of one book, in file and page order; [] when it is not installed."""
    out = []
    for path in sorted(glob.glob(BOOKS[source])):
        parser = _Paragraphs()
        with open(path, encoding="utf-8", errors="replace") as f:
            parser.feed(f.read())
        paras = [_clean(p) for p in parser.out]
        # Chinese prose only: a paragraph that is mostly commands, file names or English is
        # not the register this set stands for.
        paras = [p for p in paras if len(p) >= MIN_PARAGRAPH and _cjk_share(p) >= MIN_CJK_SHARE]
        page = os.path.basename(path)
        cur = ""
        for p in paras:
            if cur and len(cur) + len(p) > MAX_CHUNK:
                if len(cur) >= MIN_CHUNK:
                    out.append((page, cur))
                cur = ""
            cur = f"{cur}\n\n{p}" if cur else p
        if len(cur) >= MIN_CHUNK:
            out.append((page, cur))
    return out


def held_aside(page):
    """Pages held aside from training in every book: one in five, chosen by a stable hash of the name."""
    h = 0
    for b in page.encode():
        h = (h * 131 + b) % 1000003
    return h % 5 == 0
