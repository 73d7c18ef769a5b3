"""Inline markup and placeholders: taken out before translation, put back after it.

``nmt translate --markup xml|html`` translates lines such as ``Klicken Sie <b>hier</b>,
{name}!``. The model never sees markup: :func:`parse` splits a line into the plain text
to translate and a tree of *items*; :func:`restore` puts the items back around the
target words aligned to the source words they wrapped.

- **Tags** are paired (``<b>..</b>``: they wrap words), or points: self-closing
  (``<br/>``), HTML void elements in ``html`` mode (``<br>``, ``<img src=x>``),
  comments, CDATA sections, processing instructions and declarations. A tag is copied
  byte for byte (attributes, quotes, a ``>`` inside a quoted value and all).
- **Protected spans** (placeholders ``{name}``, ``%s``, ``%(x)d``, ``%1$s``, URLs and
  e-mail addresses) are removed from the text (the model would mangle them) and put back
  verbatim as points, beside the target word aligned to their source neighbour.
- **Entities** (``&amp;``, ``&#233;``, ``&nbsp;``) are decoded for the model; the output
  text is escaped again (``&``, ``<``, ``>``), so whatever the model writes stays text.
- **Malformed markup** (an unclosed tag, a stray end tag, crossed tags): the line's
  items are all placed as points, in the input's order; the output then carries the
  input's exact tag sequence, as well- or ill-formed as the input was, and no worse.
  A ``<`` or ``&`` that starts no tag or entity is text, escaped in the output.

Tags are found by the standard library's :class:`html.parser.HTMLParser`: it never
raises on bad input, reports where each token starts (so every token is cut out of the
line exactly as written) and leaves nesting to us. lxml and ElementTree repair or reject
malformed input instead, which would lose or invent tags. The guarantees (output
well-formed when the input was; exactly the input's multiset of tags and placeholders)
hold by construction and are checked again by :func:`restore` before it returns.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

log = logging.getLogger("nmt.inference.markup")

MODES = ("off", "xml", "html")
VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
_URL = r"(?:https?|ftp)://[^\s<>\"']+|www\.[\w-]+\.[^\s<>\"']+"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_BRACES = r"\{[^{}\s]*\}"
_PRINTF = r"%%|%(?:\d+\$)?(?:\([^)\s]*\))?[-#0+']*(?:\d+|\*)?(?:\.\d+)?[diouxXeEfFgGcrsa](?!\w)"
PLACEHOLDER = re.compile(f"{_URL}|{_EMAIL}|{_BRACES}|{_PRINTF}")
_TRAILING = ".,;:!?)]}'\""  # sentence punctuation after a URL is not part of it
_TAG_NAME = re.compile(r"</?\s*([^\s/>]+)")
WORD = re.compile(r"\S+")


def placeholders_in(text: str) -> list[str]:
    """The protected spans of decoded ``text``, in order (a URL loses trailing punctuation)."""
    return [m for m, _ in _placeholder_spans(text)]


def _placeholder_spans(text: str) -> list[tuple[str, int]]:
    spans = []
    for m in PLACEHOLDER.finditer(text):
        found = m.group()
        if "://" in found or found.startswith("www."):
            found = found.rstrip(_TRAILING)
        spans.append((found, m.start()))
    return spans


# --- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One piece of a line, cut exactly as written: text, a tag, or opaque markup."""

    kind: str  # text | open | close | point
    raw: str  # as written in the line
    name: str = ""  # tag name of open/close (lowercased in html mode)


class _Tokenizer(HTMLParser):
    """Records where each token starts; the line is cut at those offsets afterwards."""

    def __init__(self, mode: str) -> None:
        super().__init__(convert_charrefs=False)
        if mode == "xml":
            self.CDATA_CONTENT_ELEMENTS = ()  # <script> content is markup like any other
        self.starts: list[tuple[tuple[int, int], str]] = []  # ((line, column), kind)

    def _at(self, kind: str) -> None:
        line, col = self.getpos()
        self.starts.append(((line, col), kind))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._at("open")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._at("point")

    def handle_endtag(self, tag: str) -> None:
        self._at("close")

    def handle_data(self, data: str) -> None:
        self._at("text")

    def handle_entityref(self, name: str) -> None:
        self._at("text")

    def handle_charref(self, name: str) -> None:
        self._at("text")

    def handle_comment(self, data: str) -> None:
        self._at("point")

    def handle_decl(self, decl: str) -> None:
        self._at("point")

    def handle_pi(self, data: str) -> None:
        self._at("point")

    def unknown_decl(self, data: str) -> None:
        self._at("point")


def tokenize(line: str, mode: str) -> list[Token]:
    """Cut ``line`` into tokens whose raw texts concatenate back to ``line`` exactly."""
    parser = _Tokenizer(mode)
    parser.feed(line)
    parser.close()
    line_starts = [0] + [i + 1 for i, c in enumerate(line) if c == "\n"]
    offsets = [(line_starts[ln - 1] + col, kind) for (ln, col), kind in parser.starts]
    tokens: list[Token] = []
    for i, (start, kind) in enumerate(offsets):
        end = offsets[i + 1][0] if i + 1 < len(offsets) else len(line)
        raw = line[start:end]
        if not raw:
            continue
        if kind == "text" and tokens and tokens[-1].kind == "text":
            tokens[-1] = Token("text", tokens[-1].raw + raw)
            continue
        tokens.append(_classify(kind, raw, mode))
    if "".join(t.raw for t in tokens) != line:  # never seen; markup then counts as text
        return [Token("text", line)]
    return tokens


def _classify(kind: str, raw: str, mode: str) -> Token:
    if kind not in ("open", "close"):
        return Token(kind, raw)
    m = _TAG_NAME.match(raw)
    name = m.group(1) if m else raw
    if mode == "html":
        name = name.lower()
        if kind == "open" and name in VOID_ELEMENTS:
            return Token("point", raw, name)
    return Token(kind, raw, name)


def is_balanced(tokens: list[Token]) -> bool:
    """Every open tag closed by the matching close tag, properly nested."""
    stack: list[str] = []
    for t in tokens:
        if t.kind == "open":
            stack.append(t.name)
        elif t.kind == "close" and (not stack or stack.pop() != t.name):
            return False
    return not stack


def markup_signature(line: str, mode: str) -> tuple[Counter, list[str], bool]:
    """Multiset of tags and placeholders, their sequence, and whether the tags balance."""
    tokens = tokenize(line, mode)
    sequence: list[str] = []
    for t in tokens:
        if t.kind == "text":
            sequence += placeholders_in(unescape(t.raw))
        else:
            sequence.append(t.raw)
    return Counter(sequence), sequence, is_balanced(tokens)


# --- the parsed line -----------------------------------------------------------------------------


@dataclass
class Node:
    """An item of markup: a pair wrapping plain-text offsets [start, end), or a point."""

    raw: str  # the open tag, or the whole point item
    start: int  # offsets into the plain text
    end: int
    close: str | None = None  # the close tag of a pair; None for a point
    protected: bool = False  # a placeholder: decoded text, escaped when written back
    children: list[Node] = field(default_factory=list)


@dataclass
class Marked:
    """A source line without its markup: the text to translate and the items to put back."""

    line: str
    plain: str
    root: Node
    ordered: bool  # malformed markup: keep the items' input sequence, all as points
    mode: str

    @property
    def has_markup(self) -> bool:
        return bool(self.root.children)


def parse(line: str, mode: str) -> Marked:
    """Take tags and protected spans out of ``line``; the text left is what is translated."""
    tokens = tokenize(line, mode)
    root = Node("", 0, 0)
    stack, plain = [root], ""
    ordered = not is_balanced(tokens)
    for t in tokens:
        if t.kind == "text":
            plain = _add_text(unescape(t.raw), plain, stack[-1])
        elif t.kind == "point" or ordered:
            stack[-1].children.append(Node(t.raw, len(plain), len(plain)))
        elif t.kind == "open":
            node = Node(t.raw, len(plain), len(plain))
            stack[-1].children.append(node)
            stack.append(node)
        else:
            node = stack.pop()
            node.close, node.end = t.raw, len(plain)
    return Marked(line, plain, root, ordered, mode)


def _add_text(text: str, plain: str, parent: Node) -> str:
    """Append ``text`` to ``plain``; each protected span becomes a point and a space."""
    cursor = 0
    for found, at in _placeholder_spans(text):
        plain += text[cursor:at] + " "
        parent.children.append(Node(found, len(plain) - 1, len(plain) - 1, protected=True))
        cursor = at + len(found)
    return plain + text[cursor:]
