"""NMT_ALLOCATOR: the command re-executes itself once on the allocator it names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nmt import allocator

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import os, sys\n"
    "sys.argv[0] = 'nmt'\n"
    "print('PRELOAD', os.environ.get('LD_PRELOAD', ''), os.getpid(), flush=True)\n"
    "from nmt.cli.main import main\n"
    "main()\n"
)


def run_probe(env_allocator: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NMT_ALLOC")}
    env.pop("LD_PRELOAD", None)
    if env_allocator is not None:
        env["NMT_ALLOCATOR"] = env_allocator
    cmd = [sys.executable, "-c", PROBE, "--version"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_system_keeps_the_environment() -> None:
    assert allocator.preload_env({"NMT_ALLOCATOR": "system"}) is None
    assert allocator.preload_env({"NMT_ALLOCATOR": "jemalloc", allocator.APPLIED: "x"}) is None


def test_a_named_allocator_is_preloaded_once(monkeypatch, tmp_path) -> None:
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setattr(allocator, "SEARCH_DIRS", (str(tmp_path),))
    env = allocator.preload_env({"NMT_ALLOCATOR": "jemalloc", "LD_PRELOAD": "/x/other.so"})
    assert env is not None
    assert env["LD_PRELOAD"] == f"{lib} /x/other.so" and env[allocator.APPLIED] == "jemalloc"
    assert allocator.preload_env(env) is None  # the re-executed process does not loop
    auto = allocator.preload_env({})  # the default: the first installed of AUTO_ORDER
    assert auto is not None and auto["LD_PRELOAD"] == str(lib)  # no tcmalloc here
    tc = tmp_path / "libtcmalloc_minimal.so.4"
    tc.write_bytes(b"")
    assert allocator.preload_env({})["LD_PRELOAD"] == str(tc)
    monkeypatch.setattr(allocator, "SEARCH_DIRS", (str(tmp_path / "none"),))
    assert allocator.preload_env({"NMT_ALLOCATOR": "jemalloc"}) is None  # not installed
    assert allocator.preload_env({}) is None


def test_unknown_names_are_refused() -> None:
    assert allocator.known({}) and allocator.known({"NMT_ALLOCATOR": "TCMalloc"})
    assert allocator.known({"NMT_ALLOCATOR": "auto"})
    assert not allocator.known({"NMT_ALLOCATOR": "mimalloc"})
    result = run_probe("mimalloc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {allocator.UNKNOWN}"]


@pytest.mark.skipif(
    allocator.library_path(allocator.DEFAULT) is None, reason="the default allocator is missing"
)
def test_the_command_runs_on_the_default_allocator_in_the_same_process() -> None:
    result = run_probe(None)
    assert result.returncode == 0, result.stderr
    probes = [ln.split() for ln in result.stdout.splitlines() if ln.startswith("PRELOAD")]
    assert len(probes) == 2  # before and after the one re-execution
    first, second = probes
    assert len(first) == 2  # nothing preloaded at first
    assert second[1] == str(allocator.library_path(allocator.DEFAULT))
    assert first[-1] == second[-1]  # the same process id: exec, not a child
    assert result.stdout.splitlines()[-1].startswith("nmt ")  # --version still answered
    plain = run_probe("system")
    assert [ln.split() for ln in plain.stdout.splitlines() if ln.startswith("PRELOAD")] == [
        ["PRELOAD", plain.stdout.split()[1]]
    ]
