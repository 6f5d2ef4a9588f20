"""The one search layer: shard-streamed exact search and FAISS indexes equal one blockwise search over
all vectors; indexes record their recall; wrong inputs are refused in one line naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from vlm2vec.config import IndexConfig, MineConfig
from vlm2vec.corpus import ShardFolder, read_store, search_shards, search_topk, topk_exact
from vlm2vec.corpus.index import build_index
from vlm2vec.corpus.mine import candidates
from vlm2vec.corpus.retrieval import Target, results_table
from vlm2vec.corpus.sources import CorpusError
from vlm2vec.corpus.store import shard_name, write_items, write_manifest, write_shard
from vlm2vec.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _vectors(n: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    v = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(v, dim=1)


def _folder(
    path: Path, vectors: torch.Tensor, shard_rows: int, *, dtype="float32", fp="model-a", seed=0
) -> Path:
    """An embed output written the way `embed` writes one: shards in a shuffled (encoding) order."""
    order = torch.randperm(vectors.shape[0], generator=torch.Generator().manual_seed(seed))
    groups = [order[s : s + shard_rows] for s in range(0, len(order), shard_rows)]
    names = [shard_name(j, len(groups)) for j in range(len(groups))]
    for name, rows in zip(names, groups):
        write_shard(path / name, vectors[rows], rows, {"dtype": dtype, "model_fingerprint": fp})
    n = vectors.shape[0]
    items = pa.table(
        {
            "row": range(n),
            "key": [f"k{i}" for i in range(n)],
            "text": [f"t{i}" for i in range(n)],
            "image": [""] * n,
        }
    )
    write_items(path, items)
    write_manifest(path, n, vectors.shape[1], dtype, names, {"model_fingerprint": fp})
    return path


def test_streamed_shards_equal_one_blockwise_search_over_all_vectors(tmp_path):
    corpus, queries = _vectors(503), _vectors(41, seed=1)
    folder = ShardFolder.open(_folder(tmp_path / "c", corpus, shard_rows=60))
    assert len(folder.shards) == 9
    ref_s, ref_i = topk_exact(queries, corpus, 12)
    scores, rows = search_shards(queries, folder, 12, query_block=7, corpus_block=16)
    assert torch.equal(rows, ref_i) and torch.allclose(scores, ref_s, atol=1e-6)
    vectors, _, _ = read_store(folder.folder)
    assert torch.equal(vectors, corpus)  # shards in encoding order, read back in item order


def test_faiss_flat_and_sharded_faiss_backend_equal_exact_search(tmp_path):
    pytest.importorskip("faiss")
    corpus, queries = _vectors(400), _vectors(30, seed=1)
    target = _folder(tmp_path / "c", corpus, shard_rows=70)
    ref_s, ref_i = topk_exact(queries, corpus, 10)
    _, rows = search_topk(queries, target, 10, backend="faiss")
    assert torch.equal(rows, ref_i)
    ic = IndexConfig(
        corpus_dir=str(target), output_dir=str(tmp_path / "flat"), kind="flat", max_part_bytes=150 * 72
    )
    meta = json.loads((build_index(ic) / "index.json").read_text())
    assert [p["num_items"] for p in meta["parts"]] == [140, 140, 120]  # whole shards of 70, <= 150 a part
    scores, rows = search_topk(queries, tmp_path / "flat", 10, query_fingerprint="model-a")
    assert torch.equal(rows, ref_i) and torch.allclose(scores, ref_s, atol=1e-5)
    assert meta["recall"]["recall"] == 1.0 and meta["model_fingerprint"] == "model-a"


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq", "hnsw"])
def test_approximate_index_records_its_recall_against_exact_search(tmp_path, kind):
    pytest.importorskip("faiss")
    corpus = _vectors(600, dim=16)
    target = _folder(tmp_path / "c", corpus, shard_rows=200)
    ic = IndexConfig(
        corpus_dir=str(target), output_dir=str(tmp_path / kind), kind=kind, nlist=8, nprobe=1, pq_m=4,
        train_sample=320, recall_queries=50, recall_k=10,
    )  # fmt: skip
    build_index(ic)
    meta = json.loads((tmp_path / kind / "index.json").read_text())
    held = Target.open(tmp_path / kind)
    # recompute the recall by hand: exact top-10 of the same held-out rows against the index's answer
    rows = np.setdiff1d(np.arange(600), np.sort(np.random.default_rng(0).choice(600, 320, replace=False)))
    if kind == "hnsw":
        rows = np.arange(600)
    queries_rows = np.sort(np.random.default_rng(1).choice(rows, size=50, replace=False))
    q = corpus[torch.from_numpy(queries_rows)]
    _, exact = (q @ corpus.T).topk(10, dim=1)
    _, approx = held.search(q, 10)
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact))
    assert meta["recall"]["recall"] == pytest.approx(hits / 500)
    assert meta["recall"]["queries"] == 50 and meta["settings"]["kind"] == kind
    if kind == "ivf_flat":  # visiting every list is exact search
        _, all_lists = held.search(q, 10, nprobe=8)
        assert torch.equal(all_lists, exact)


def test_queries_of_another_model_or_width_are_refused_naming_both(tmp_path):
    target = _folder(tmp_path / "c", _vectors(50), shard_rows=20, fp="model-a")
    with pytest.raises(UserError, match="model model-a, the queries come from model model-b") as info:
        search_topk(_vectors(3), target, 5, query_fingerprint="model-b")
    assert "manifest.json" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="16-dim vectors, the queries have 8 dims"):
        search_topk(_vectors(3, dim=8), target, 5, query_fingerprint="model-a")
    # mining against another model's corpus: refused unless allowed
    m = MineConfig(corpus_dir=str(target), scope="all")
    with pytest.raises(UserError, match="model-a.*model-b.*allow_other_model"):
        candidates(m, {"model_fingerprint": "model-b", "dim": 16}, None, None, {})
    m.allow_other_model = True
    assert isinstance(candidates(m, {"model_fingerprint": "model-b", "dim": 16}, None, None, {})[0], Target)


def test_bad_folders_are_one_line_errors_naming_the_file(tmp_path):
    corpus = _vectors(50)
    good = _folder(tmp_path / "good", corpus, shard_rows=20)
    with pytest.raises(CorpusError, match="k=51 but it holds 50 items") as info:
        search_topk(corpus[:2], good, 51)
    assert str(good / "manifest.json") in str(info.value)

    half = _folder(tmp_path / "half", corpus, shard_rows=20)
    (half / "manifest.json").unlink()
    with pytest.raises(CorpusError, match=r"half-written shard folder \(3 shards"):
        search_topk(corpus[:2], half, 5)

    mixed = _folder(tmp_path / "mixed", corpus, shard_rows=20)
    name = shard_name(2, 3)
    write_shard(
        mixed / name, corpus[:10], torch.arange(40, 50), {"dtype": "float16", "model_fingerprint": "x"}
    )
    with pytest.raises(CorpusError, match=f"{name}: mixed dtypes"):
        ShardFolder.open(mixed)

    short = _folder(tmp_path / "short", corpus, shard_rows=20)
    manifest = json.loads((short / "manifest.json").read_text())
    (short / "manifest.json").write_text(json.dumps({**manifest, "num_items": 49}))
    with pytest.raises(CorpusError, match="49 items but its shards hold 50"):
        ShardFolder.open(short)


def test_an_index_and_a_shard_folder_that_disagree_in_size_are_refused(tmp_path):
    pytest.importorskip("faiss")
    target = _folder(tmp_path / "c", _vectors(60), shard_rows=30)
    build_index(
        IndexConfig(corpus_dir=str(target), output_dir=str(tmp_path / "ix"), kind="flat", recall_queries=5)
    )
    _folder(target, _vectors(70), shard_rows=30)  # the corpus re-embedded with more items
    with pytest.raises(CorpusError, match="built over 60 items.*now holds 70") as info:
        search_topk(_vectors(2), tmp_path / "ix", 5)
    assert "index.json" in str(info.value) and "manifest.json" in str(info.value)


def test_float16_storage_searches_the_rounded_vectors(tmp_path):
    corpus, queries = _vectors(120), _vectors(9, seed=2)
    folder = ShardFolder.open(_folder(tmp_path / "h", corpus, shard_rows=50, dtype="float16"))
    assert folder.dtype == "float16" and (tmp_path / "h" / shard_name(0, 3)).stat().st_size < 50 * 16 * 4
    ref_s, ref_i = topk_exact(queries, corpus.half().float(), 7)
    scores, rows = search_shards(queries, folder, 7)
    assert torch.equal(rows, ref_i) and torch.equal(scores, ref_s)


def test_results_table_names_each_query_its_rank_and_item(tmp_path):
    target = Target.open(_folder(tmp_path / "c", _vectors(40), shard_rows=15))
    queries = pa.table({"text": ["q0", "q1"]})
    scores, rows = target.search(_vectors(40)[[3, 7]], 2)
    table = results_table(queries, target.shards.items_table(), scores, rows).to_pylist()
    assert [(r["query_text"], r["rank"]) for r in table] == [("q0", 1), ("q0", 2), ("q1", 1), ("q1", 2)]
    assert table[0]["key"] == "k3" and table[2]["text"] == "t7"  # a vector's best match is itself


@pytest.mark.slow
def test_exact_search_works_without_faiss(tmp_path):
    """A process where `import faiss` fails searches shard folders exactly; asking for faiss names the extra."""
    target = _folder(tmp_path / "c", _vectors(30), shard_rows=10)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["faiss"] = None
        import torch
        from vlm2vec.corpus import search_topk
        from vlm2vec.errors import MissingExtraError
        q = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
        _, rows = search_topk(q, {str(target)!r}, 3)
        assert rows.shape == (4, 3), rows.shape
        try:
            search_topk(q, {str(target)!r}, 3, backend="faiss")
        except MissingExtraError as exc:
            assert "pip install 'vlm2vec[faiss]'" in str(exc), exc
            print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
