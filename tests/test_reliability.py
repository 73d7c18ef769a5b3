"""Issue 26: crafted artifacts, interrupted writes and odd inputs end in success or one
``error:`` line with the right exit status, fast and in bounded memory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import (
    CheckpointError,
    checkpoint_step,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
)
from nmt.artifacts.rundir import RunDir
from nmt.cli.app import app
from nmt.training import train_from_config
from tests.conftest import FIXTURES, REPO, tiny_config, tiny_model

runner = CliRunner()
QUICK = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def one_error_line(result, status: int = 2) -> str:
    """The result is exit ``status`` with one ``error:`` line and no traceback."""
    assert result.exit_code == status, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from nmt.tokenizer import Tokenizer
    from tests.conftest import FIXTURES

    tok = Tokenizer.load(FIXTURES / "spm.tiny", joint=True)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, tiny_model("transformer", tok), tok, tiny_config("transformer"))
    return path


def crafted(source: Path, target: Path, edit) -> Path:
    """``source`` with its header (a dict of parsed JSON fields) changed by ``edit``."""
    with safe_open(str(source), framework="pt") as f:
        header = f.metadata()
    fields = {k: json.loads(v) if k != "format" else v for k, v in header.items()}
    edit(fields)
    header = {k: v if k == "format" else json.dumps(v) for k, v in fields.items()}
    save_file(load_file(str(source)), str(target), metadata=header)
    return target


# --- 5: sizes read from a checkpoint are bounded by the tensors it stores ---------------------


@pytest.mark.parametrize(
    "key, value",
    [("encoder_layers", 1_000_000), ("d_model", 65536), ("ff_dim", 10**12), ("heads", 0)]
    + [("max_positions", 10**9), ("decoder_layers", -1)],
)
def test_crafted_model_sizes_are_refused_fast(checkpoint, tmp_path, key, value) -> None:
    def edit(h):
        h["config"]["model"]["transformer"][key] = value

    bad = crafted(checkpoint, tmp_path / "x.safetensors", edit)
    with pytest.raises(CheckpointError, match="damaged checkpoint metadata"):
        load_checkpoint(bad)
    line = one_error_line(runner.invoke(app, ["translate", str(bad)], input="a b\n"))
    assert str(bad) in line


@QUICK
@given(
    key=st.sampled_from(["d_model", "heads", "ff_dim", "encoder_layers", "max_positions"]),
    value=st.integers(-(2**40), 2**40),
)
def test_any_model_size_loads_or_is_refused(checkpoint, tmp_path, key, value) -> None:
    def edit(h):
        h["config"]["model"]["transformer"][key] = value

    bad = crafted(checkpoint, tmp_path / "x.safetensors", edit)
    with contextlib.suppress(CheckpointError):
        load_checkpoint(bad)


@pytest.mark.parametrize("aliases", [{"out.weight": "no.such.tensor"}, ["a"], {"a": 1}, "x"])
def test_bad_aliases_are_one_line_errors(checkpoint, tmp_path, aliases) -> None:
    bad = crafted(checkpoint, tmp_path / "x.safetensors", lambda h: h.update(aliases=aliases))
    one_error_line(runner.invoke(app, ["translate", str(bad)], input="a b\n"))


# --- 6: nmt-export.json names only bounded plain files inside the export ----------------------


@pytest.fixture(scope="module")
def export(checkpoint, tmp_path_factory) -> Path:
    from nmt.artifacts.ctranslate2 import export_ctranslate2

    return export_ctranslate2(checkpoint, tmp_path_factory.mktemp("export") / "ct2")


def edited_export(export: Path, folder: Path, edit) -> Path:
    import shutil

    copy = folder / "ct2"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(export, copy)
    meta = json.loads((copy / "nmt-export.json").read_text())
    edit(meta)
    (copy / "nmt-export.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize(
    "tokenizer",
    [
        {"joint": True, "src": "../outside.model"},
        {"joint": True, "src": "/dev/zero"},
        {"joint": True, "src": "big.model"},
        {"joint": True, "src": 3},
        {"joint": "yes", "src": "tokenizer.model"},
        "x",
    ],
)
def test_export_tokenizer_paths_are_confined(export, tmp_path, tokenizer) -> None:
    (tmp_path / "outside.model").write_bytes((export / "tokenizer.model").read_bytes())
    bad = edited_export(export, tmp_path, lambda m: m.update(tokenizer=tokenizer))
    with open(bad / "big.model", "wb") as f:
        f.truncate(65 << 20)  # sparse: larger than any tokenizer
    line = one_error_line(runner.invoke(app, ["translate", str(bad)], input="a b\n"))
    assert "export" in line or "tokenizer" in line


def test_a_symlink_out_of_the_export_is_refused(export, tmp_path) -> None:
    (tmp_path / "outside.model").write_bytes((export / "tokenizer.model").read_bytes())
    bad = edited_export(export, tmp_path, lambda m: None)
    (bad / "tokenizer.model").unlink()
    (bad / "tokenizer.model").symlink_to(tmp_path / "outside.model")
    assert "not a file inside" in one_error_line(runner.invoke(app, ["translate", str(bad)]))


@QUICK
@given(
    key=st.sampled_from(["tokenizer", "max_positions", "config", "format"]),
    value=st.one_of(
        st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)
    )
    | st.dictionaries(st.sampled_from(["joint", "src", "tgt"]), st.booleans() | st.text()),
)
def test_any_export_metadata_translates_or_is_refused(export, tmp_path, key, value) -> None:
    bad = edited_export(export, tmp_path, lambda m: m.update({key: value}))
    result = runner.invoke(app, ["translate", str(bad)], input="a b\n")
    if result.exit_code != 0:
        one_error_line(result)


# --- 2, 3: the resumable pair and the run's config are committed atomically ------------------

TINY = REPO / "configs" / "tiny" / "transformer.yaml"
SETS = [
    f"data.dir={FIXTURES}",
    f"tokenizer.model={FIXTURES / 'spm.tiny'}",
    "train.log_every=1",
    "train.valid_every=1",
    "train.valid_bleu=false",
    "train.valid_max_sentences=4",
    "train.keep_checkpoints=0",
]


def train(run: Path, steps: int, *extra: str, resume: bool = False):
    sets = SETS + [f"train.max_steps={steps}"]
    args = ["train", "--resume", str(run)] if resume else ["train", str(TINY), "--out", str(run)]
    return runner.invoke(app, args + list(extra) + [a for s in sets for a in ("--set", s)])


def pair_steps(run: Path) -> tuple[int | None, int]:
    rd = RunDir(run)
    return checkpoint_step(rd.last), load_train_state(rd.train_state)["trainer"]["step"]


@pytest.fixture
def run2(tmp_path) -> Path:
    run = tmp_path / "run"
    result = train(run, 2)
    assert result.exit_code == 0, result.output
    assert pair_steps(run) == (2, 2)
    return run


class Killed(BaseException):
    """A kill at a chosen point of a checkpoint write (nothing after it runs)."""


def test_a_kill_between_weights_and_state_leaves_one_pair(run2, monkeypatch) -> None:
    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr("nmt.training.state.save_train_state", killed)
    with pytest.raises(Killed):
        train_from_config(None, SETS + ["train.max_steps=3"], None, resume=run2)
    assert pair_steps(run2) == (2, 2)  # the step-3 weights did not replace the step-2 ones
    monkeypatch.undo()
    result = train(run2, 4, resume=True)
    assert result.exit_code == 0, result.output
    assert pair_steps(run2) == (4, 4) and not RunDir(run2).next_last.exists()


def test_a_kill_after_the_state_rolls_the_weights_forward(run2, monkeypatch) -> None:
    real = os.replace

    def killed(src, dst):
        if Path(src).name == "last.next.safetensors":
            raise Killed
        real(src, dst)

    monkeypatch.setattr("nmt.training.state.os.replace", killed)
    with pytest.raises(Killed):
        train_from_config(None, SETS + ["train.max_steps=3"], None, resume=run2)
    monkeypatch.undo()
    assert pair_steps(run2) == (2, 3) and checkpoint_step(RunDir(run2).next_last) == 3
    result = train(run2, 4, resume=True)
    assert result.exit_code == 0, result.output
    assert pair_steps(run2) == (4, 4)


def test_a_mismatched_pair_is_refused(run2, tmp_path) -> None:
    other = tmp_path / "other"
    assert train(other, 3).exit_code == 0
    shutil.copy(other / "last.safetensors", run2 / "last.safetensors")
    line = one_error_line(train(run2, 4, resume=True))
    assert "not one checkpoint" in line


def test_resume_does_not_rewrite_config_and_tokenizer(run2, monkeypatch) -> None:
    rd = RunDir(run2)
    before = {p: p.stat().st_mtime_ns for p in (rd.config, run2 / "tokenizer.model")}
    assert train(run2, 2, resume=True).exit_code == 0  # the same config: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in before} == before
    in_place = []
    real = Path.write_text
    monkeypatch.setattr(
        Path, "write_text", lambda p, *a, **k: in_place.append(p) or real(p, *a, **k)
    )
    assert train(run2, 3, resume=True).exit_code == 0  # max_steps changed: rewritten, atomically
    assert rd.config not in in_place and "max_steps: 3" in rd.config.read_text()
    assert (run2 / "tokenizer.model").stat().st_mtime_ns == before[run2 / "tokenizer.model"]


@pytest.mark.parametrize("text", ["", "  \n", "{}", "[1, 2]", "model: {"])
def test_an_empty_or_damaged_saved_config_is_refused(run2, text) -> None:
    RunDir(run2).config.write_text(text)
    line = one_error_line(train(run2, 3, resume=True))
    assert "config.yaml" in line


def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(run2) -> None:
    for p in (RunDir(run2).last, RunDir(run2).train_state):
        p.unlink()
    result = train(run2, 2, resume=True)
    assert result.exit_code == 0, result.output
    assert pair_steps(run2) == (2, 2)


# --- 1: one training at a time in a run directory ---------------------------------------------


def test_a_second_training_into_a_busy_run_dir_is_refused(tmp_path) -> None:
    from nmt.locking import file_lock

    run = tmp_path / "dual"
    with file_lock(RunDir(run).lock):  # as the first `nmt train --out dual` holds it
        line = one_error_line(train(run, 2, "--set", "train.seed=2"))
        assert "in use by another training" in line
        assert not RunDir(run).holds_run()
    result = train(run, 1)  # the first one ended: the directory is free again
    assert result.exit_code == 0, result.output


# --- 8: the server takes JSON only, and drops the work of clients that hung up -----------------


@pytest.fixture(scope="module")
def server(checkpoint):
    from fastapi.testclient import TestClient

    from nmt.serve.app import ServeLimits, create_app
    from nmt.serve.server import ServeOptions, load_service

    service = load_service(checkpoint, ServeOptions(beam=1, device="cpu"))
    with TestClient(create_app(service, ServeLimits())) as client:
        yield client


@pytest.mark.parametrize(
    "ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_the_server_refuses_bodies_not_sent_as_json(server, ctype) -> None:
    headers = {} if ctype is None else {"Content-Type": ctype}
    response = server.post("/translate", content=b'{"text": ["Hallo"]}', headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    ok = {"Content-Type": "application/json; charset=utf-8"}
    assert server.post("/translate", content=b'{"text": ["Hallo"]}', headers=ok).status_code == 200


def test_a_cancelled_job_is_not_translated() -> None:
    from nmt.serve.batcher import Batcher

    seen: list[str] = []
    batcher = Batcher(lambda key, lines: seen.extend(lines) or lines, 8, 0.0, 16)
    gone = batcher.submit("k", ["gone"])
    kept = batcher.submit("k", ["kept"])
    assert gone.cancel()  # the handler of a client that hung up
    batcher.start()
    assert kept.result(timeout=10) == ["kept"]
    batcher.stop()
    assert seen == ["kept"] and batcher.waiting == 0


def test_a_disconnected_client_has_its_queued_work_dropped() -> None:
    import asyncio

    from nmt.serve.app import ApiError, _queued
    from nmt.serve.batcher import Batcher

    seen: list[str] = []
    batcher = Batcher(lambda key, lines: seen.extend(lines) or lines, 8, 0.0, 16)

    class HungUp:
        async def is_disconnected(self) -> bool:
            return True

    with pytest.raises(ApiError):
        asyncio.run(_queued(batcher, ("translate", None), ["nobody waits"], HungUp()))
    batcher.start()  # the worker comes to the queue only now
    assert batcher.submit("k", ["next"]).result(timeout=10) == ["next"]
    batcher.stop()
    assert seen == ["next"] and batcher.waiting == 0


# --- 9: option values and odd models end in one error line, not a traceback ------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--sample", "topk:5", "--seed", "99999999999999999999"],
        ["--sample", "topk:5", "--seed", "-1"],
        ["--device", "tpu"],
        ["--device", "cuda:x"],
        ["--sample", "topk:5", "--temperature", "1e-45"],
        ["--sample", "topk:5", "--temperature", "1e308"],
        ["--sample", "topk:5", "--temperature", "inf"],
        ["--sample", "topk:5", "--temperature", "nan"],
        ["--sample", "topk:inf"],
        ["--sample", "topk:nan"],
        ["--sample", "topp:nan"],
    ],
)
def test_bad_translate_options_are_one_line_errors(checkpoint, args) -> None:
    one_error_line(runner.invoke(app, ["translate", str(checkpoint), *args], input="a b\n"))


@QUICK
@given(
    temperature=st.floats(allow_nan=True, allow_infinity=True),
    seed=st.integers(-(2**70), 2**70),
)
def test_any_temperature_and_seed_samples_or_is_refused(checkpoint, temperature, seed) -> None:
    args = ["--sample", "topk:3", "--temperature", repr(temperature), "--seed", str(seed)]
    result = runner.invoke(app, ["translate", str(checkpoint), *args], input="ein hund\n")
    if result.exit_code != 0:
        one_error_line(result)
    else:
        assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize("ids", ["99999 5", "-1", "12345678901234567890"])
def test_decoding_ids_outside_the_vocabulary_is_refused(ids) -> None:
    model = FIXTURES / "spm.tiny.model"
    result = runner.invoke(app, ["tokenize", "decode", "--model", str(model), "--ids"], input=ids)
    assert "not in the vocabulary" in one_error_line(result)


@pytest.mark.parametrize("text", ["", "\n\n  \n\t\n"])
def test_tokenizer_training_on_blank_text_is_a_usage_error(tmp_path, text) -> None:
    (tmp_path / "blank.txt").write_text(text)
    args = ["tokenize", "train", str(tmp_path / "blank.txt"), "--prefix", str(tmp_path / "x")]
    assert "no text" in one_error_line(runner.invoke(app, args))


def test_tokenizer_prefix_naming_a_folder_is_refused(tmp_path) -> None:
    (tmp_path / "dir").mkdir()
    args = ["tokenize", "train", str(FIXTURES / "train.de"), "--prefix", f"{tmp_path / 'dir'}/"]
    assert "is a folder" in one_error_line(runner.invoke(app, args + ["--vocab-size", "50"]))
    assert not (tmp_path / "dir.model").exists()


def test_nan_weights_with_a_beam_still_give_one_line_per_line(checkpoint, tmp_path) -> None:
    tensors = {k: v.clone() for k, v in load_file(str(checkpoint)).items()}
    for t in tensors.values():
        if t.is_floating_point():
            t.fill_(float("nan"))
    with safe_open(str(checkpoint), framework="pt") as f:
        header = f.metadata()
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=header)
    args = ["translate", str(tmp_path / "nan.safetensors"), "--beam", "2"]
    result = runner.invoke(app, args, input="ein hund\nzwei\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "\n\n"
