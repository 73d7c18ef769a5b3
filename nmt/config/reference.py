"""``configs/reference.yaml``: every key with its default and its documentation.

The documentation of a key is the comment after its field in :mod:`nmt.config.schema`
(and the comment lines just above or below it). This module turns the schema into the
reference config, so the two cannot drift: a test regenerates the file and compares.
After a schema change: ``python -m nmt.config.reference > configs/reference.yaml``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import yaml

from nmt.config import schema

_FIELD = re.compile(r"^\s+(\w+): [^=]+?(?:= (?P<default>.*?))?(?:\s+#\s?(?P<doc>.*))?$")
_COMMENT = re.compile(r"^\s+#\s?(?P<text>.*)$")
HEADER = """\
# Every configuration key, its default and what it means: generated from nmt/config/schema.py
# (python -m nmt.config.reference > configs/reference.yaml); a test keeps the two identical.
# A config file lists only the keys it changes; an unknown or misspelt key is an error.
"""


def field_docs(cls: type) -> dict[str, tuple[list[str], str]]:
    """Per field: (comment lines above it, its trailing comment with continuation lines)."""
    docs: dict[str, tuple[list[str], str]] = {}
    above: list[str] = []
    last: str | None = None
    for line in inspect.getsource(cls).splitlines():
        comment, fld = _COMMENT.match(line), _FIELD.match(line)
        if comment and last and comment.group("text").startswith("  "):  # `#   more` continues
            before, text = docs[last]
            docs[last] = (before, f"{text} {comment.group('text').strip()}")
        elif comment:
            above.append(comment.group("text"))
            last = None
        elif fld and fld.group(1) in {f.name for f in dataclasses.fields(cls)}:
            last = fld.group(1)
            docs[last] = (above, (fld.group("doc") or "").strip())
            above = []
    return docs


def _scalar(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if value == "":
        return '""'
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _section(obj: object, indent: str) -> list[str]:
    cls = type(obj)
    lines = []
    doc = inspect.getdoc(cls) or ""
    if not doc.startswith(f"{cls.__name__}("):  # dataclass puts its signature where none is
        lines += [f"{indent}# {line}".rstrip() for line in doc.splitlines()]
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        above, text = docs.get(f.name, ([], ""))
        lines += [f"{indent}# {line}".rstrip() for line in above]
        if dataclasses.is_dataclass(value):
            lines.append(f"{indent}{f.name}:")
            lines += _section(value, indent + "  ")
            continue
        entry = f"{indent}{f.name}: {_scalar(value)}"
        lines.append(f"{entry:<36}# {text}" if text else entry)
    return lines


def reference_yaml() -> str:
    """The text of ``configs/reference.yaml``."""
    cfg = schema.Config()
    out = [HEADER]
    for f in dataclasses.fields(cfg):
        out.append(f"{f.name}:")
        out += _section(getattr(cfg, f.name), "  ")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_yaml(), end="")
