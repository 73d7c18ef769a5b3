"""Checkpoints that carry everything translation needs, and never run code when loaded.

A checkpoint is one safetensors file: the model weights, the SentencePiece model(s) as
byte tensors, and JSON metadata (resolved config, step, scores). Loading it needs no
other file, and safetensors holds only tensors, so a crafted file cannot execute code
the way a pickle can. The optimizer/scheduler/RNG state needed to resume training is
kept beside it (``*.state.pt``) and loaded with ``torch.load(weights_only=True)``.
Every write goes to a temporary file that is fsynced and then renamed, so a crash at
any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from nmt.artifacts.bounds import check_model_size, parse_aliases
from nmt.artifacts.rundir import RunDir
from nmt.config import Config, from_dict, to_dict
from nmt.errors import RuntimeFailure, UsageError
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer, TokenizerError

CHECKPOINT_FORMAT = "nmt-checkpoint-1"
_SRC_SPM, _TGT_SPM = "__tokenizer__.src", "__tokenizer__.tgt"


class CheckpointError(UsageError):
    """A file that is not a usable checkpoint; the message says why."""


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            write(Path(tmp))
        except (RuntimeError, SafetensorError) as e:  # torch.save: "basic_ios::clear"
            raise RuntimeFailure(
                f"cannot write {path} (disk full or file size limit?): {e}; the previous "
                "file is intact"
            ) from e
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically make ``path`` hold ``data``; a file that already does is not rewritten."""
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return True


def check_run_dir(run_dir: Path, n_params: int, copies: int, tokenizer_bytes: int = 0) -> None:
    """Fail before training if the run directory cannot be written or the disk is too full.

    ``copies`` checkpoints of ``n_params`` fp32 weights and the tokenizer each embeds
    (``tokenizer_bytes``), plus Adam's two moments for the training state, must fit; a
    disk that fills up later still cannot corrupt a checkpoint (see :func:`atomic_write`),
    but an early error saves the hours before it.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise CheckpointError(f"run directory {run_dir} is not writable: {e.strerror or e}") from e
    needed = 4 * n_params * (copies + 2) + tokenizer_bytes * copies
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise CheckpointError(
            f"only {free / 2**20:.0f} MiB free in {run_dir}; checkpoints need about "
            f"{needed / 2**20:.0f} MiB (free space or lower train.keep_checkpoints)"
        )


def _dedup(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tensors that share storage with an earlier one (tied weights); record aliases."""
    seen: dict[tuple, str] = {}
    tensors, aliases = {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            tensors[name] = t.detach().contiguous().cpu()
    return tensors, aliases


def save_checkpoint(
    path: Path, model: Seq2Seq, tok: Tokenizer, cfg: Config, meta: dict | None = None
) -> None:
    """Write weights + tokenizer + resolved config into one safetensors file."""
    tensors, aliases = _dedup(model.state_dict())
    tensors[_SRC_SPM] = torch.frombuffer(bytearray(tok.src_proto), dtype=torch.uint8)
    if not tok.joint:
        tensors[_TGT_SPM] = torch.frombuffer(bytearray(tok.tgt_proto), dtype=torch.uint8)
    header = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(to_dict(cfg)),
        "aliases": json.dumps(aliases),
        "meta": json.dumps(meta or {}),
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=header))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable nmt checkpoint ({e})") from e
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an nmt checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    return tensors, header


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
) -> tuple[Seq2Seq, Tokenizer, Config, dict]:
    """Rebuild model, tokenizer and config from one checkpoint file (eval mode)."""
    path = resolve_model_path(path)
    tensors, header = _read(path)
    try:
        cfg = from_dict(json.loads(header["config"]))
        meta = json.loads(header.get("meta", "{}"))
        src = tensors.pop(_SRC_SPM).numpy().tobytes()
        tgt = tensors.pop(_TGT_SPM).numpy().tobytes() if _TGT_SPM in tensors else None
        tok = Tokenizer(src, tgt)
        aliases = parse_aliases(header.get("aliases"), tensors)
        vocab = (tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
        check_model_size(cfg.model, tensors, aliases, vocab)
    except (KeyError, TypeError, json.JSONDecodeError, UsageError, TokenizerError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({e})") from e
    model = build_model(cfg.model, *vocab)
    for name, target in aliases.items():
        tensors[name] = tensors[target]
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model in its config ({e})") from e
    return model.to(device).eval(), tok, cfg, meta


def resolve_model_path(path: str | Path) -> Path:
    """A run directory means its best checkpoint (or its last, before any validation)."""
    path = Path(path)
    if path.is_dir():
        found = RunDir(path).model_file()
        if found is not None:
            return found
        raise CheckpointError(f"{path} holds no checkpoint (best.safetensors or last.safetensors)")
    return path


def checkpoint_step(path: Path) -> int | None:
    """The step recorded in a checkpoint's metadata (read from its header only)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            step = json.loads((f.metadata() or {}).get("meta", "{}")).get("step")
    except (SafetensorError, OSError, ValueError, AttributeError):
        return None
    return step if type(step) is int else None


def save_train_state(path: Path, state: dict) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_train_state(path: Path) -> dict:
    """Optimizer/scheduler/RNG state; ``weights_only`` refuses anything but plain data."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(f"{path} is not a loadable training state ({e})") from e
