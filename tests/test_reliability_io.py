"""Issue 26, continued: what one input line may cost, interrupted output files, data that
leaves no batch, broken pipes, and what train.log holds."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nmt.textio import MAX_LINE_BYTES, iter_lines
from tests.test_reliability import checkpoint, one_error_line, runner  # noqa: F401

MEASURE = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF)"
    ".ru_maxrss, file=sys.stderr))\n"
    "sys.argv[0] = 'nmt'\n"
    "from nmt.cli import main\n"
    "main()\n"
)


def nmt(*args: str, **kwargs) -> subprocess.CompletedProcess:
    cwd = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-c", MEASURE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300, **kwargs)


def peak_mib(result: subprocess.CompletedProcess) -> float:
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("MAXRSS"))
    return int(line.split()[1]) / 1024


# --- 10: one line costs bounded memory, however long ------------------------------------------


def test_an_endless_line_is_cut_while_read(tmp_path) -> None:
    path = tmp_path / "nul.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        block = b"\0" * (1 << 20)
        for _ in range(64):
            f.write(block)
        f.write(b"\nnext\n")
    lines = list(iter_lines(path))
    assert len(lines) == 2 and lines[1] == "next"
    assert len(lines[0].encode()) <= MAX_LINE_BYTES


def test_a_cut_line_keeps_whole_characters(tmp_path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"a" + "é".encode() * MAX_LINE_BYTES + b"\nb\n")
    assert [len(x) for x in iter_lines(path)][1:] == [1]


def test_translating_a_huge_line_has_bounded_memory(checkpoint, tmp_path) -> None:  # noqa: F811
    small, huge = tmp_path / "small.de", tmp_path / "huge.de"
    small.write_text("ein hund läuft\n")
    huge.write_text("ein hund läuft " * 2_000_000)  # 30 MB, no newline
    base = nmt("translate", str(checkpoint), "-i", str(small), "--device", "cpu")
    assert base.returncode == 0, base.stderr
    result = nmt("translate", str(checkpoint), "-i", str(huge), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "truncated" in result.stderr
    assert peak_mib(result) < peak_mib(base) + 300, (peak_mib(base), peak_mib(result))


def test_sigterm_leaves_no_part_file(checkpoint, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "out.en"
    cmd = [sys.executable, "-m", "nmt", "translate", str(checkpoint), "-o", str(out)]
    cwd = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 120
        while not out.with_name("out.en.part").exists():  # reading stdin, output open
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
        proc.wait()
    assert not out.with_name("out.en.part").exists() and not out.exists()
