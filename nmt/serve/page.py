"""The web page at ``/``: one self-contained HTML file (inline CSS and script, no CDN)."""

from __future__ import annotations

import functools
from importlib.resources import files


@functools.cache
def page_html() -> str:
    return (files("nmt.serve") / "static" / "index.html").read_text(encoding="utf-8")
