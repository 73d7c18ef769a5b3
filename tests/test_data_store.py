"""The binary data store: same pairs and batches as the in-memory path, staleness,
integrity, input formats, errors that name file and line, and sharding over ranks."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from typer.testing import CliRunner

from nmt.cli.app import app
from nmt.config import Config, ConfigError
from nmt.data import readers
from nmt.data.batch import ParallelCorpus, encode_corpus
from nmt.data.readers import PairReader
from nmt.data.sources import resolve_split
from nmt.data.store import batches, build, manifest
from nmt.data.store.batches import (
    epoch_batches,
    key_counts,
    length_keys,
    make_batch,
    shuffled_indices,
    sort_into,
)
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.ensure import ensure_store, plan_store, store_problem
from nmt.data.store.fileread import FileArray
from nmt.data.store.manifest import StoreError
from nmt.data.store.plan import open_plan, plan_key, write_plan
from nmt.data.store.stats import percentiles
from nmt.data.store.training_data import load_training_data, prepare_tokenizer
from nmt.textio import CorpusError, read_parallel
from nmt.tokenizer import Tokenizer, train_tokenizer
from nmt.training.distributed import DistContext, current, shard_batches
from nmt.training.setup import load_corpora
from tests import reference_batcher as batching
from tests.conftest import FIXTURES, tiny_config

MAX_LEN = 60  # the tiny configs' data.max_len


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny models train fastest on one thread, above all on a busy machine."""
    torch.set_num_threads(1)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A copy of the fixture corpus (the tests change files in it)."""
    out = tmp_path / "data"
    out.mkdir()
    for name in ("train.de", "train.en", "val.de", "val.en"):
        shutil.copy(FIXTURES / name, out / name)
    return out


def config_for(data_dir: Path, **sets: str) -> Config:
    return tiny_config("transformer", **{"data.dir": str(data_dir), **sets})


def in_memory(data_dir: Path, tok: Tokenizer) -> ParallelCorpus:
    """Today's path: read both files whole, encode into lists, filter."""
    src, tgt = read_parallel(data_dir / "train.de", data_dir / "train.en")
    return encode_corpus(tok, src, tgt, MAX_LEN)


def rows(corpus: StoreCorpus) -> tuple[list[list[int]], list[list[int]]]:
    n = len(corpus)
    return (
        [corpus.src.row(i).tolist() for i in range(n)],
        [corpus.tgt.row(i).tolist() for i in range(n)],
    )


def store_of(cfg: Config, tok: Tokenizer, **kwargs: bool) -> StoreCorpus:
    return StoreCorpus.open(ensure_store(cfg.data, cfg.data.train, tok, **kwargs))


def built_at(directory: Path) -> tuple:
    """Identifies one build of a store (its manifest's build record and array checksums)."""
    m = manifest.read_manifest(directory)
    return m["built"]["at"], m["built"]["seconds"], m["arrays"]["src.ids"]["sha256"]


# --- same data, same batches, same tensors ----------------------------------------------------
def test_store_holds_the_pairs_encode_corpus_keeps(data_dir: Path, tok: Tokenizer) -> None:
    reference = in_memory(data_dir, tok)
    corpus = store_of(config_for(data_dir, **{"data.max_len": str(MAX_LEN)}), tok)
    assert rows(corpus) == (reference.src, reference.tgt)
    assert isinstance(corpus.src.ids, np.memmap)
    assert corpus.src.ids.dtype == np.uint16  # the vocabulary fits


def test_filter_drops_as_encode_corpus(data_dir: Path, tok: Tokenizer) -> None:
    """A short max_len drops many pairs; empty lines are dropped whatever max_len is."""
    lines = (data_dir / "train.en").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[10] = ""
    (data_dir / "train.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    src, tgt = read_parallel(data_dir / "train.de", data_dir / "train.en")
    reference = encode_corpus(tok, src, tgt, 12)
    directory = ensure_store(config_for(data_dir, **{"data.max_len": "12"}).data, "train", tok)
    assert rows(StoreCorpus.open(directory)) == (reference.src, reference.tgt)
    counts = manifest.read_manifest(directory)["counts"]
    assert counts["read"] == 400 and counts["kept"] == len(reference.src)
    assert counts["empty"] == 2 and counts["too_long"] == 400 - 2 - len(reference.src)


@pytest.mark.parametrize("batch_tokens", [30, 800, 5000])
def test_same_batches_as_in_memory_on_fixtures(
    data_dir: Path, tok: Tokenizer, batch_tokens: int
) -> None:
    reference = in_memory(data_dir, tok)
    corpus = store_of(config_for(data_dir), tok)
    for seed, epoch in [(1, 0), (1, 1), (7, 3)]:
        old = batching.epoch_batches(reference, batch_tokens, seed, epoch)
        new = epoch_batches(corpus, batch_tokens, seed, epoch)
        assert [b.tolist() for b in new] == old
        new.reverse()  # the caller's list is its own: the corpus keeps the epoch
        assert [b.tolist() for b in epoch_batches(corpus, batch_tokens, seed, epoch)] == old


def test_same_batches_as_in_memory_on_a_random_corpus() -> None:
    rng = random.Random(3)
    n = 3000
    src = [[5] * rng.randint(1, 70) for _ in range(n)]
    tgt = [[6] * rng.randint(0, 70) for _ in range(n)]
    reference, corpus = ParallelCorpus(src, tgt), StoreCorpus.from_sequences(src, tgt)
    for batch_tokens, seed, epoch in [(50, 0, 0), (600, 5, 2), (4096, 11, 1)]:
        old = batching.epoch_batches(reference, batch_tokens, seed, epoch)
        new = epoch_batches(corpus, batch_tokens, seed, epoch)
        assert [b.tolist() for b in new] == old


@pytest.mark.parametrize("longest", [200, 3000, 70_000])  # 16-, 32- and 64-bit keys
def test_the_chunked_counting_sort_is_a_stable_sort(
    longest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "CHUNK", 777)  # pieces of several chunks per key
    rng = np.random.default_rng(longest)
    tgt = rng.choice([0, 7, 8, longest - 1], 5000).astype(np.int32)  # many ties
    src = rng.choice([1, 3, longest - 1], 5000).astype(np.int32)
    keys, width = length_keys(src, tgt)
    assert keys.dtype.itemsize == {200: 2, 3000: 4, 70_000: 8}[longest]
    counts = key_counts(keys, width)
    shuffled = rng.permutation(5000).astype(np.int32)
    out = np.full(5000, -1, dtype=np.int32)
    sort_into(
        shuffled, keys, counts, lambda at, pairs: out.__setitem__(slice(at, at + len(pairs)), pairs)
    )
    expected = sorted(shuffled.tolist(), key=lambda i: (tgt[i], src[i]))  # ties: shuffled order
    assert out.tolist() == expected


def test_a_plan_file_holds_the_reference_batches(
    data_dir: Path, tok: Tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written piece by piece, read back with pread: the reference's batches and the token
    counts of the batches themselves; another epoch or a cut file is not taken for it."""
    monkeypatch.setattr(batches, "CHUNK", 97)
    corpus, root = store_of(config_for(data_dir), tok), tmp_path / "plans"
    key = plan_key(corpus, 300, 1, 2)
    plan = write_plan(root, corpus, key)
    assert isinstance(plan.order, FileArray)
    assert [b.tolist() for b in plan.batches()] == batching.epoch_batches(
        in_memory(data_dir, tok), 300, 1, 2
    )
    made = [make_batch(corpus, b, tok).n_tokens for b in plan.batches()]
    assert [plan.tokens(g) for g in range(len(plan))] == made
    reopened = open_plan(root, key)
    assert np.array_equal(reopened.table, plan.table)
    assert (
        open_plan(root, {**key, "epoch": 3}) is None and open_plan(root, {**key, "seed": 2}) is None
    )
    write_plan(root, corpus, {**key, "epoch": 3})
    assert sorted(p.name for p in root.iterdir()) == ["epoch-3"]  # one epoch's plan is kept
    with open(root / "epoch-3" / "order.bin", "r+b") as f:
        f.truncate(8)
    assert open_plan(root, {**key, "epoch": 3}) is None


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_shuffle_is_pythons(n: int) -> None:
    order = list(range(n))
    random.Random(42).shuffle(order)
    assert shuffled_indices(n, 42).tolist() == order


def test_make_batch_gives_identical_tensors(data_dir: Path, tok: Tokenizer) -> None:
    reference = in_memory(data_dir, tok)
    corpus = store_of(config_for(data_dir), tok)
    batches = batching.epoch_batches(reference, 800, 1, 0)
    for indices in batches + [[0], [5, 3, 399 - 20]]:
        old = batching.make_batch(reference, indices, tok)
        new = make_batch(corpus, np.asarray(indices), tok)
        for name in ("src", "src_mask", "tgt_in", "tgt_out"):
            assert torch.equal(getattr(old, name), getattr(new, name)), name
        assert old.n_tokens == new.n_tokens


def test_empty_targets_batch_like_collate(tok: Tokenizer) -> None:
    """Validation pairs are not filtered: an empty target still gets BOS / EOS."""
    src, tgt = [[7, 3], [8, 9, 3]], [[], [11]]
    old = batching.make_batch(ParallelCorpus(src, tgt), [0, 1], tok)
    new = StoreCorpus.from_sequences(src, tgt).make_batch([0, 1], tok)
    for name in ("src", "src_mask", "tgt_in", "tgt_out"):
        assert torch.equal(getattr(old, name), getattr(new, name)), name


def test_first_20_losses_equal_the_in_memory_path(
    data_dir: Path, tmp_path: Path, tok: Tokenizer
) -> None:
    """Training on the store's batches gives exactly the losses of today's in-memory path."""
    from nmt.training import Trainer

    cfg = config_for(data_dir)
    memory = in_memory(data_dir, tok), batching.epoch_batches, batching.make_batch
    store = load_training_data(cfg, tok).train, epoch_batches, make_batch

    def losses(corpus: object, epochs: object, make: object, name: str) -> list[float]:
        trainer = Trainer(cfg, tmp_path / name)  # same seed: same weights, same dropout
        out, epoch, t = [], 0, cfg.train
        while len(out) < 20:
            for indices in epochs(corpus, t.batch_tokens, t.seed, epoch):
                loss, _ = trainer.train_step([make(corpus, indices, trainer.tok)])
                out.append(loss)
            epoch += 1
        return out[:20]

    expected = losses(*memory, "memory")
    assert losses(*store, "store") == expected
    assert len(set(expected)) > 10  # it trained on varied batches


# --- staleness and integrity ------------------------------------------------------------------
def test_unchanged_store_is_reused(data_dir: Path, tok: Tokenizer) -> None:
    cfg = config_for(data_dir)
    first = ensure_store(cfg.data, "train", tok)
    before = built_at(first)
    assert ensure_store(cfg.data, "train", tok, hash_inputs=True) == first
    assert built_at(first) == before


def test_changed_corpus_rebuilds(data_dir: Path, tok: Tokenizer) -> None:
    cfg = config_for(data_dir)
    directory = ensure_store(cfg.data, "train", tok)
    before = rows(StoreCorpus.open(directory))
    text = (data_dir / "train.en").read_text(encoding="utf-8")
    changed = text.replace("a", "e", 1)  # same size: only the checksum tells
    assert len(changed) == len(text) and changed != text
    (data_dir / "train.en").write_text(changed, encoding="utf-8")
    assert ensure_store(cfg.data, "train", tok) == directory
    after = rows(StoreCorpus.open(directory))
    assert after[0] == before[0] and after[1] != before[1]
    assert after == rows(StoreCorpus.from_sequences(*_encoded(data_dir, tok)))


def _encoded(data_dir: Path, tok: Tokenizer) -> tuple[list, list]:
    corpus = in_memory(data_dir, tok)
    return corpus.src, corpus.tgt


def test_touched_file_keeps_its_store_and_old_files_are_not_hashed(
    data_dir: Path, tok: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_for(data_dir)
    old = 1_600_000_000
    for name in ("train.de", "train.en"):
        os.utime(data_dir / name, (old, old))
    directory = ensure_store(cfg.data, "train", tok)
    before = built_at(directory)
    hashed: list[Path] = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    ensure_store(cfg.data, "train", tok)  # size and time as recorded: the corpus is not read
    assert not any(p.parent == data_dir for p in hashed)
    os.utime(data_dir / "train.de")  # touched: hashed, found equal, store kept
    ensure_store(cfg.data, "train", tok)
    assert data_dir / "train.de" in hashed and built_at(directory) == before


def test_store_of_another_tokenizer_is_never_used(
    data_dir: Path, tok: Tokenizer, tmp_path: Path
) -> None:
    cfg = config_for(data_dir)
    mine = ensure_store(cfg.data, "train", tok)
    other_tok = train_tokenizer(
        tmp_path / "other", [data_dir / "train.de"], [data_dir / "train.en"], 300
    )
    theirs = ensure_store(cfg.data, "train", other_tok)
    assert theirs != mine
    reference = in_memory(data_dir, other_tok)
    assert rows(StoreCorpus.open(theirs)) == (reference.src, reference.tgt)
    # a store whose manifest names another tokenizer, in this tokenizer's folder: rebuilt
    meta = manifest.read_manifest(mine)
    meta["identity"]["tokenizer"]["src"] = "0" * 64
    manifest.write_manifest(mine, meta)
    ensure_store(cfg.data, "train", tok)
    assert manifest.read_manifest(mine)["identity"] == plan_store(cfg.data, "train", tok).identity


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest"])
def test_damaged_store_is_detected_and_rebuilt(data_dir: Path, tok: Tokenizer, damage: str) -> None:
    cfg = config_for(data_dir)
    directory = ensure_store(cfg.data, "train", tok)
    expected = rows(StoreCorpus.open(directory))
    ids = directory / "tgt.ids.bin"
    data = bytearray(ids.read_bytes())
    if damage == "flip":
        data[100] ^= 0xFF
        ids.write_bytes(bytes(data))
    elif damage == "truncate":
        ids.write_bytes(bytes(data[:-7]))
        with pytest.raises(StoreError, match="truncated"):
            StoreCorpus.open(directory)  # never read
    else:
        (directory / "manifest.json").write_text("{not json", encoding="utf-8")
    problem = store_problem(plan_store(cfg.data, "train", tok), hash_inputs=False, hash_arrays=True)
    assert problem and {"flip": "corrupted", "truncate": "truncated"}.get(damage, "") in problem
    assert ensure_store(cfg.data, "train", tok) == directory
    assert rows(StoreCorpus.open(directory)) == expected


def test_unwritable_store_folder_is_a_clear_error(data_dir: Path, tok: Tokenizer) -> None:
    (data_dir / "a-file").write_text("", encoding="utf-8")
    cfg = config_for(data_dir, **{"data.store_dir": str(data_dir / "a-file" / "stores")})
    with pytest.raises(StoreError, match="cannot build the data store .*set data.store_dir"):
        ensure_store(cfg.data, "train", tok)


def test_interrupted_build_leaves_no_store(
    data_dir: Path, tok: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_for(data_dir, **{"data.store_dir": str(data_dir / "stores")})

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(build.Counts, "add", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_store(cfg.data, "train", tok)
    assert [p.suffix for p in (data_dir / "stores").iterdir()] == [".lock"]


def test_parallel_build_equals_serial_build(data_dir: Path, tok: Tokenizer, tmp_path: Path) -> None:
    cfg = config_for(data_dir)
    plan = plan_store(cfg.data, "train", tok)
    serial = build.build_store(
        plan.source, tok, MAX_LEN, tmp_path / "serial", plan.identity, 1, chunk_pairs=64
    )
    parallel = build.build_store(
        plan.source, tok, MAX_LEN, tmp_path / "parallel", plan.identity, 2, chunk_pairs=64
    )
    assert parallel["built"]["processes"] == 2
    assert parallel["arrays"] == serial["arrays"]
    assert parallel["counts"] == serial["counts"]


# --- input formats and errors -----------------------------------------------------------------
def test_gzip_and_tsv_inputs_give_the_same_store(data_dir: Path, tok: Tokenizer) -> None:
    plain = rows(store_of(config_for(data_dir), tok))
    gz_dir, tsv_dir = data_dir / "gz", data_dir / "tsv"
    gz_dir.mkdir()
    tsv_dir.mkdir()
    for name in ("train.de", "train.en", "val.de", "val.en"):
        (gz_dir / f"{name}.gz").write_bytes(gzip.compress((data_dir / name).read_bytes()))
    for split in ("train", "val"):
        src, tgt = read_parallel(data_dir / f"{split}.de", data_dir / f"{split}.en")
        text = "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt))
        (tsv_dir / f"{split}.tsv.gz").write_bytes(gzip.compress(text.encode()))
    assert rows(store_of(config_for(gz_dir), tok)) == plain
    tsv_cfg = config_for(tsv_dir, **{"data.train": "train.tsv.gz", "data.valid": "val"})
    assert resolve_split(tsv_cfg.data, "val").is_tsv  # auto: no plain pair, a .tsv.gz
    assert rows(store_of(tsv_cfg, tok)) == plain
    data = load_training_data(tsv_cfg, tok)
    assert (
        data.valid_text[0].src[0]
        == (data_dir / "val.de").read_text(encoding="utf-8").split("\n")[0]
    )


def test_plain_files_win_over_a_tsv_beside_them(data_dir: Path) -> None:
    (data_dir / "train.tsv").write_text("a\tb\n", encoding="utf-8")
    cfg = config_for(data_dir)
    assert not resolve_split(cfg.data, "train").is_tsv
    assert resolve_split(config_for(data_dir, **{"data.format": "tsv"}).data, "train").is_tsv
    with pytest.raises(ConfigError, match="data.format"):
        config_for(data_dir, **{"data.format": "csv"})


def test_line_count_mismatch_names_files_and_line(data_dir: Path) -> None:
    lines = (data_dir / "train.en").read_text(encoding="utf-8").splitlines()[:-3]
    (data_dir / "train.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = resolve_split(config_for(data_dir).data, "train")
    with pytest.raises(
        CorpusError,
        match=r"train.de has 400 lines but .*train.en has 397 "
        r"\(line 398 has no partner\)",
    ):
        list(PairReader(source, chunk_pairs=50))


@pytest.mark.parametrize("compress", [False, True])
def test_bad_byte_names_file_and_line_across_blocks(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64)  # the bad line is many blocks in
    lines = (data_dir / "train.de").read_bytes().split(b"\n")
    lines[299] = lines[299] + b" \xff\xfe"
    data = b"\n".join(lines)
    name = "train.de.gz" if compress else "train.de"
    (data_dir / "train.de").unlink()
    (data_dir / name).write_bytes(gzip.compress(data) if compress else data)
    source = resolve_split(config_for(data_dir).data, "train")
    with pytest.raises(CorpusError, match=rf"{name}, line 300: not valid UTF-8"):
        list(PairReader(source))


def test_tsv_line_without_one_tab_is_named(data_dir: Path) -> None:
    (data_dir / "t.tsv").write_text("a\tb\nc\td\ne f\ng\th\n", encoding="utf-8")
    source = resolve_split(config_for(data_dir, **{"data.train": "t.tsv"}).data, "t.tsv")
    with pytest.raises(CorpusError, match=r"t.tsv, line 3: expected source<TAB>target, found 0"):
        list(PairReader(source))


def test_truncated_gzip_and_empty_and_missing_files(data_dir: Path) -> None:
    whole = gzip.compress((data_dir / "train.de").read_bytes())
    (data_dir / "train.de").unlink()
    (data_dir / "train.de.gz").write_bytes(whole[: len(whole) // 2])
    cfg = config_for(data_dir)
    with pytest.raises(CorpusError, match="train.de.gz, after line .*truncated"):
        list(PairReader(resolve_split(cfg.data, "train")))
    for name in ("val.de", "val.en"):
        (data_dir / name).write_text("", encoding="utf-8")
    with pytest.raises(CorpusError, match="val.de is empty"):
        list(PairReader(resolve_split(cfg.data, "val")))
    with pytest.raises(CorpusError, match="test.de does not exist"):
        resolve_split(cfg.data, "test")


def test_tokenizer_is_trained_from_a_tsv_corpus(data_dir: Path, tmp_path: Path) -> None:
    src, tgt = read_parallel(data_dir / "train.de", data_dir / "train.en")
    (data_dir / "all.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(src, tgt)), "utf-8")
    prefix = tmp_path / "spm"
    sets = {"data.train": "all.tsv", "tokenizer.model": str(prefix), "tokenizer.vocab_size": "300"}
    tok = prepare_tokenizer(config_for(data_dir, **sets))
    assert Path(f"{prefix}.model").is_file() and tok.src_vocab_size == 300


# --- ranks ------------------------------------------------------------------------------------
def test_shards_of_two_ranks_are_disjoint(data_dir: Path, tok: Tokenizer) -> None:
    corpus = store_of(config_for(data_dir), tok)
    batches = epoch_batches(corpus, 300, 1, 0)
    shards = [shard_batches(batches, DistContext(rank, 2)) for rank in (0, 1)]
    seen = [set(np.concatenate(s).tolist()) for s in shards]
    assert not seen[0] & seen[1]
    assert len(shards[0]) == len(shards[1]) == len(batches) // 2


def _rank(rank: int, port: int, data_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE="2", LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        tok = Tokenizer.load(FIXTURES / "spm.tiny", joint=True)
        data = load_corpora(config_for(Path(data_dir)), tok, current())
        shard = shard_batches(epoch_batches(data.train, 300, 1, 0), current())
        tgt = [make_batch(data.train, idx, tok).tgt_out.tolist() for idx in shard]
        record = {"store": str(data.train.directory), "indices": [b.tolist() for b in shard]}
        Path(out, f"rank{rank}.json").write_text(json.dumps({**record, "tgt": tgt}))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_build_once_and_read_disjoint_shards(data_dir: Path, tok: Tokenizer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(data_dir), str(data_dir)), nprocs=2, join=True)
    ranks = [json.loads((data_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["store"] == ranks[1]["store"]
    assert len([p for p in (data_dir / "nmt-store").iterdir() if p.is_dir()]) == 1
    corpus = StoreCorpus.open(Path(ranks[0]["store"]))
    everything = epoch_batches(corpus, 300, 1, 0)
    assert [b.tolist() for b in everything[0::2][: len(ranks[0]["indices"])]] == ranks[0]["indices"]
    assert [b.tolist() for b in everything[1::2][: len(ranks[1]["indices"])]] == ranks[1]["indices"]
    mine = [set(sum(r["indices"], [])) for r in ranks]
    assert mine[0] and not mine[0] & mine[1]
    expected = [make_batch(corpus, idx, tok).tgt_out.tolist() for idx in ranks[1]["indices"]]
    assert ranks[1]["tgt"] == expected


# --- commands ---------------------------------------------------------------------------------
def test_prepare_and_stats_commands(data_dir: Path, tok: Tokenizer) -> None:
    runner = CliRunner()
    config = str(Path(__file__).parents[1] / "configs" / "tiny" / "transformer.yaml")
    sets = ["--set", f"data.dir={data_dir}", "--set", f"tokenizer.model={FIXTURES / 'spm.tiny'}"]
    sets += ["--set", "data.max_len=12"]
    result = runner.invoke(app, ["data", "prepare", config, *sets])
    assert result.exit_code == 0, result.output
    kept = len(encode_corpus(tok, *read_parallel(data_dir / "train.de", data_dir / "train.en"), 12))
    assert f"kept       {kept:,}; dropped {400 - kept:,}" in result.output
    result = runner.invoke(app, ["data", "stats", config, *sets, "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["train"]["pairs"] == 400 and stats["train"]["kept"] == kept
    assert stats["valid"]["pairs"] == 60
    assert stats["train"]["lengths"]["tgt"]["max"] < 12
    assert stats["train"]["lengths_before_filter"]["tgt"]["max"] >= 12


def test_percentiles_match_numpy() -> None:
    lengths = np.random.default_rng(0).integers(0, 90, 1001)
    got = percentiles(np.bincount(lengths))
    for p in (50, 90, 99):
        assert got[f"p{p}"] == int(np.percentile(lengths, p, method="inverted_cdf"))
    assert got["max"] == lengths.max()


def test_a_dying_encoding_process_is_an_error_not_a_hang(data_dir: Path, tok: Tokenizer) -> None:
    class Broken:  # a tokenizer whose model the worker processes cannot load
        src_proto, tgt_proto, joint, target = b"not a model", None, True, None

    reader = PairReader(resolve_split(config_for(data_dir).data, "train"), chunk_pairs=50)
    with pytest.raises(build.BuildFailure, match="encoding process"):
        list(build._encoded(reader, Broken(), MAX_LEN, processes=2))
