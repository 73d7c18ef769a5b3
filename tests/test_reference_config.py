"""configs/reference.yaml is the schema's documentation: generated from it, never edited."""

from __future__ import annotations

import dataclasses

import yaml

from nmt.config import Config, load_config
from nmt.config.reference import field_docs, reference_yaml
from tests.conftest import REPO

REFERENCE = REPO / "configs" / "reference.yaml"


def test_reference_config_is_generated_from_the_schema() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference_yaml(), (
        "regenerate: python -m nmt.config.reference > configs/reference.yaml"
    )


def test_every_key_is_documented_once_in_the_schema() -> None:
    missing = []

    def walk(section: object, where: str) -> None:
        docs = field_docs(type(section))
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{where}{f.name}.")
            elif not docs.get(f.name, ([], ""))[1] and not docs.get(f.name, ([], ""))[0]:
                missing.append(where + f.name)

    walk(Config(), "")
    assert not missing, f"undocumented config keys: {missing}"


def test_reference_config_loads_to_the_defaults() -> None:
    assert load_config(REFERENCE) == Config()


def test_configs_hold_only_what_differs_from_the_defaults() -> None:
    """The shipped configs repeat no default (but always name the backbone): what a file
    says is what it changes."""
    defaults = dataclasses.asdict(Config())
    repeated = []
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        if path == REFERENCE:
            continue
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for section, keys in raw.items():
            for key, value in (keys or {}).items():
                default = defaults[section][key]
                named = f"{section}.{key}"
                if named != "model.type" and not isinstance(value, dict) and value == default:
                    repeated.append(f"{path.relative_to(REPO)}: {named}")
    assert not repeated, repeated
