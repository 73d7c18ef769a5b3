"""Reading configs: YAML with strict keys, lossless coercion and dotted overrides.

An unknown or misspelt key is an error that names the key and suggests the closest valid
one, so a typo never silently falls back to a default. YAML that expands past a small
bound (alias "billion laughs") or nests too deeply is refused before it is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nmt.config.schema import Config
from nmt.config.validate import validate
from nmt.errors import ConfigError

# --- YAML ----------------------------------------------------------------------------------------
# PyYAML follows YAML 1.1, where yes/no/on/off are booleans: `src_lang: no` (Norwegian) would
# become False. Configs are read the YAML 1.2 way (only true/false are booleans), and every
# boolean or number keeps the text it was written as, so a field declared `str` gets that text
# (`test: 2016` stays "2016", `version: 1.10` stays "1.10").
_BOOL_TAG = "tag:yaml.org,2002:bool"
YAML11_BOOLS = {"yes": True, "no": False, "on": True, "off": False, "true": True, "false": False}


@dataclass(frozen=True)
class Written:
    """A YAML boolean or number together with its source text."""

    value: bool | int | float
    text: str

    def __repr__(self) -> str:  # error messages show the value, not the wrapper
        return repr(self.value)


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans whose booleans and numbers keep their text."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _keeping_text(construct: Any) -> Any:
    def construct_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Written:
        return Written(construct(loader, node), node.value)

    return construct_written


for _tag, _construct in [
    (_BOOL_TAG, yaml.SafeLoader.construct_yaml_bool),
    ("tag:yaml.org,2002:int", yaml.SafeLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.SafeLoader.construct_yaml_float),
]:
    ConfigLoader.add_constructor(_tag, _keeping_text(_construct))


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        got = type(raw.value if isinstance(raw, Written) else raw).__name__
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {got}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{path}'{hint}")
        kwargs[key] = _coerce(hints[key], value, path)
    obj = cls(**kwargs)
    return obj


# String keys whose choices are auto | true | false: a YAML boolean means its text.
AUTO_SWITCHES = ("train.tensorboard",)
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the type hint ``hint``; convert where it is lossless."""
    if path in AUTO_SWITCHES and isinstance(value, bool):
        return "true" if value else "false"
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is tuple and typing.get_args(hint)[1:] == (Ellipsis,):  # a list of any length
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{path}: unsupported union type")  # not used by the schema
    if isinstance(value, Written):
        if hint is str:  # `src_lang: no`, `test: 2016`: the text as written, not a bool or int
            return value.text
        value = value.value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, str) and value.lower() in YAML11_BOOLS:
        return YAML11_BOOLS[value.lower()]
    if hint is int and is_number and isinstance(value, int):
        return int(value)
    if hint is float and is_number:
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # `5e-4`: a float in YAML 1.2, a string to PyYAML
    if hint is str and isinstance(value, str):
        return value
    tname = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{path}: expected {tname}, got {value!r}")


MAX_YAML_VALUES = 10_000  # after alias expansion; a full config has about 100
MAX_YAML_DEPTH = 16  # sections nest 3 deep


def parse_yaml(text: str, name: str) -> Any:
    """The YAML document in ``text``, refused fast when aliases expand it past
    :data:`MAX_YAML_VALUES` values ("billion laughs") or it nests past :data:`MAX_YAML_DEPTH`."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, name)
        return loader.construct_document(node)
    except RecursionError:  # PyYAML composes recursively: thousands of levels
        raise ConfigError(f"{name}: nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, name: str) -> None:
    """Walk the node graph as construction would (an alias visits its target again)."""
    stack, seen = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise ConfigError(f"{name}: more than {MAX_YAML_VALUES} values (YAML aliases?)")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{name}: nested more than {MAX_YAML_DEPTH} levels deep")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((child, depth + 1) for pair in node.value for child in pair)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], the value parsed as in a config file)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, value = text.split("=", 1)
    try:
        parsed = parse_yaml(value, f"override '{text}'") if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply dotted overrides to a raw YAML mapping (validated later by :func:`from_dict`)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{k}' is not a section")
        node[keys[-1]] = value
    return raw


def from_dict(raw: dict) -> Config:
    return validate(_build(Config, raw, ""))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config, apply ``section.key=value`` overrides, validate."""
    raw: dict = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from e
        try:
            raw = parse_yaml(text, str(path)) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return from_dict(apply_overrides(raw, overrides or []))


def to_dict(cfg: Config) -> dict:
    """Plain mapping (tuples as lists) for YAML/JSON."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
