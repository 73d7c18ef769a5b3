"""Tests for the Multi30k fetcher, run against the local mirror (no network needed).

The mirror is ``$NMT_MULTI30K_MIRROR`` if set, else ``shared/data/multi30k`` beside the
repository checkout. Downloads are exercised with ``urlopen`` replaced by a fake that
serves the mirror's files, so the network path is tested without a network.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from nmt.data import multi30k
from nmt.data.multi30k import MIRROR_ENV, DataError, fetch_multi30k, load_checksums
from nmt.errors import exit_code

REPO_ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get(MIRROR_ENV) or REPO_ROOT.parent / "shared" / "data" / "multi30k")
SCRIPT = REPO_ROOT / "data_scripts" / "fetch_multi30k.py"
EXPECTED_LINES = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}

pytestmark = pytest.mark.skipif(
    not (MIRROR / "train.de.gz").is_file(), reason=f"Multi30k mirror not found at {MIRROR}"
)


def line_count(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def fake_mirror(tmp_path: Path, langs: tuple[str, ...] = ("de", "en")) -> Path:
    """Copy the mirror's archives for ``langs`` into a folder the test may damage."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for src in MIRROR.glob("*.gz"):
        if src.name.split(".")[1] in langs:
            shutil.copyfile(src, mirror / src.name)
    return mirror


def test_checksum_list_covers_all_upstream_files() -> None:
    sums = load_checksums()
    assert len(sums) == 22
    assert "test_2017_mscoco.cs.gz" not in sums
    assert (MIRROR / "SHA256SUMS").read_text() == multi30k.CHECKSUM_FILE.read_text()


def test_fetch_de_en_from_mirror(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="nmt.data"):
        paths = fetch_multi30k(out, langs=("de", "en"), mirror=MIRROR)
    assert [p.name for p in paths] == [
        f"{s}.{lang}" for s in EXPECTED_LINES for lang in ("de", "en")
    ]
    for split, n in EXPECTED_LINES.items():
        for lang in ("de", "en"):
            assert line_count(out / f"{split}.{lang}") == n
    assert (out / "train.en").read_text(encoding="utf-8").startswith("Two young, White males")
    warned = " ".join(r.getMessage() for r in caplog.records if r.name == "nmt.data")
    for name in ("test_2017_flickr.de.gz", "test_2017_mscoco.en.gz", "test_2018_flickr.de.gz"):
        assert name in warned
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.part"))


def test_rerun_skips_verified_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetch_multi30k(tmp_path, mirror=MIRROR, splits=("val",))

    def must_not_run(*args: object) -> None:
        raise AssertionError("verified output was rewritten")

    monkeypatch.setattr(multi30k, "_atomic_write", must_not_run)
    assert [p.name for p in fetch_multi30k(tmp_path, mirror=MIRROR, splits=("val",))] == [
        "val.de",
        "val.en",
    ]


def test_stale_sidecar_triggers_rewrite(tmp_path: Path) -> None:
    fetch_multi30k(tmp_path, langs=("de",), mirror=MIRROR, splits=("val",))
    (tmp_path / "val.de").write_text("truncated\n", encoding="utf-8")
    (tmp_path / ".val.de.sha256").write_text("0" * 64 + "\n", encoding="ascii")
    fetch_multi30k(tmp_path, langs=("de",), mirror=MIRROR, splits=("val",))
    assert line_count(tmp_path / "val.de") == 1014


def test_corrupt_archive_is_rejected(tmp_path: Path) -> None:
    mirror = fake_mirror(tmp_path)
    with (mirror / "val.en.gz").open("ab") as f:
        f.write(b"tampered")
    out = tmp_path / "out"
    expected = load_checksums()["val.en.gz"]
    with pytest.raises(DataError, match=rf"val\.en\.gz.*{expected}.*got [0-9a-f]{{64}}"):
        fetch_multi30k(out, mirror=mirror)
    assert not (out / "val.en").exists()
    assert not (out / ".val.en.sha256").exists()
    assert not list(out.glob(".*.tmp"))


def test_missing_required_file(tmp_path: Path) -> None:
    mirror = fake_mirror(tmp_path)
    (mirror / "train.de.gz").unlink()
    with pytest.raises(DataError, match=r"train\.de\.gz"):
        fetch_multi30k(tmp_path / "out", mirror=mirror)


def test_czech_skips_pairs_absent_upstream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="nmt.data"):
        paths = fetch_multi30k(tmp_path, langs=("cs",), mirror=MIRROR)
    assert [p.name for p in paths] == ["train.cs", "val.cs", "test_2016_flickr.cs"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "test_2018_flickr.cs.gz" in warned
    assert "test_2017" not in warned


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"langs": ("de", "xx")}, "unknown language 'xx'"),
        ({"langs": ("../../etc",)}, "unknown language"),
        ({"langs": ()}, "no language"),
        ({"splits": ("dev",)}, "unknown split 'dev'"),
    ],
)
def test_invalid_requests(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        fetch_multi30k(tmp_path / "out", mirror=MIRROR, **kwargs)
    assert not (tmp_path / "out").exists()


def test_mirror_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(MIRROR))
    paths = fetch_multi30k(tmp_path, langs=("en",), splits=("test_2016_flickr",))
    assert [p.name for p in paths] == ["test_2016_flickr.en"]


def serve_mirror(mirror: Path, corrupt: str | None = None):
    """A stand-in for ``urlopen`` that serves ``mirror`` and 404s on absent files."""

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        assert timeout > 0
        name = url.rsplit("/", 1)[1]
        if not (mirror / name).is_file():
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        data = (mirror / name).read_bytes()
        return io.BytesIO(data + b"x" if name == corrupt else data)

    return urlopen


def test_download_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setattr(multi30k.urllib.request, "urlopen", serve_mirror(MIRROR))
    paths = fetch_multi30k(tmp_path, langs=("de",), splits=("val", "test_2017_flickr"))
    assert [p.name for p in paths] == ["val.de"]
    assert line_count(tmp_path / "val.de") == 1014
    assert not list(tmp_path.glob(".*.part"))


def test_download_mismatch_removes_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setattr(multi30k.urllib.request, "urlopen", serve_mirror(MIRROR, "val.de.gz"))
    with pytest.raises(DataError, match=r"checksum mismatch for val\.de\.gz"):
        fetch_multi30k(tmp_path, langs=("de",), splits=("val",))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_network_failure_of_a_required_file_is_a_runtime_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network is not the user's mistake: exit 1 (retry later), not 2 (fix the command),
    and no partial file is left behind."""

    def offline(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError(OSError("Temporary failure in name resolution"))

    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setattr(multi30k.urllib.request, "urlopen", offline)
    with pytest.raises(multi30k.DownloadFailed, match="name resolution") as info:
        fetch_multi30k(tmp_path, langs=("de",), splits=("val",))
    assert exit_code(info.value) == 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="not found in mirror"):  # a wrong mirror: exit 2
        fetch_multi30k(tmp_path, langs=("de",), splits=("val",), mirror=tmp_path)


def test_script_runs_on_mirror(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--mirror", str(MIRROR)]
    result = subprocess.run(
        cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "train.de" in result.stdout and "29000" in result.stdout
    assert line_count(out / "test_2016_flickr.en") == 1000


def test_script_reports_data_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--langs", "xx"]
    result = subprocess.run(
        cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "unknown language 'xx'" in result.stderr
