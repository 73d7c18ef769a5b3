"""The quick start: `nmt data multi30k` with no flags, then configs/quickstart.yaml."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nmt.cli.app import app
from nmt.config import load_config
from nmt.data.multi30k import MIRROR_ENV
from tests.conftest import REPO, mirror_dir


def test_quickstart_config_is_a_five_minute_budget_run_on_the_default_data_folder() -> None:
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    assert cfg.model.type == "transformer"
    assert (cfg.data.dir, cfg.data.src_lang, cfg.data.tgt_lang) == ("data/multi30k", "de", "en")
    t = cfg.train
    assert t.max_minutes == 5 and t.max_steps == 0 and t.schedule == "budget"
    assert 0 < t.valid_max_sentences <= 500 and t.warmup_steps <= 300


@pytest.mark.skipif(not (mirror_dir() / "val.de.gz").is_file(), reason="no Multi30k mirror")
def test_plain_data_command_takes_the_mirror_from_the_environment(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented command has no --mirror: CI points NMT_MULTI30K_MIRROR at its copy."""
    monkeypatch.setenv(MIRROR_ENV, str(mirror_dir()))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "multi30k"])
    assert result.exit_code == 0, result.output
    assert str(mirror_dir()) in " ".join(result.output.split())  # the source it used
    for name in ("train.de", "train.en", "val.de", "val.en", "test_2016_flickr.en"):
        assert (tmp_path / "data" / "multi30k" / name).is_file()
