"""Streaming embed and the search commands on a tiny model: a run killed with SIGKILL between shards
resumes with nothing lost or duplicated, and `vlm2vec embed` / `index` / `search` chain end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from vlm2vec.config import EmbedConfig
from vlm2vec.corpus import ShardFolder, embed_corpus, read_store
from vlm2vec.corpus.sources import text_file_corpus
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"item number {i} " + "word " * (i % 5) for i in range(11)]


def _texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


@pytest.mark.slow
def test_sigkill_between_shards_then_resume_loses_and_duplicates_nothing(tmp_path, tiny_qwen_dir):
    texts, ecfg = _texts(tmp_path), EmbedConfig(batch_size=2, chunk_items=2, shard_rows=4)
    script = textwrap.dedent(
        f"""
        import os, signal
        import vlm2vec.corpus.embed as embed
        from vlm2vec.config import EmbedConfig
        from vlm2vec.corpus.sources import text_file_corpus
        from vlm2vec.model import EmbeddingModel
        from vlm2vec.testing import tiny_model_config

        written = []
        write = embed.write_shard
        def write_then_die(*args):
            write(*args)
            written.append(args[0])
            if len(written) == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # no handler runs, nothing is flushed
        embed.write_shard = write_then_die
        model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", {str(tiny_qwen_dir)!r}))
        ecfg = EmbedConfig(batch_size=2, chunk_items=2, shard_rows=4)
        embed.embed_corpus(model, text_file_corpus({str(texts)!r}), {str(tmp_path / "killed")!r}, ecfg)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    killed = tmp_path / "killed"
    kept = {p: p.stat().st_mtime_ns for p in killed.glob("vectors-*.safetensors")}
    assert len(kept) == 2 and not (killed / "manifest.json").exists()

    model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir))
    encoded = []
    encode = model.encode
    model.encode = lambda x: encoded.append(len(x["input_ids"])) or encode(x)
    embed_corpus(model, text_file_corpus(texts), killed, ecfg)
    shards = ShardFolder.open(killed)
    assert len(shards.shards) == 3 and all(
        p.stat().st_mtime_ns == t for p, t in kept.items()
    )  # kept as written
    assert sum(encoded) == shards.shards[2].num_rows  # only the shard no file held
    rows = torch.cat([r for r, _ in shards.iter_shards()])
    assert sorted(rows.tolist()) == list(range(len(TEXTS)))  # every item once: none lost, none twice

    model.encode = encode
    embed_corpus(model, text_file_corpus(texts), tmp_path / "fresh", ecfg)
    resumed, table, _ = read_store(killed)
    fresh, fresh_table, _ = read_store(tmp_path / "fresh")
    assert torch.equal(resumed, fresh) and table.equals(fresh_table)


def test_embed_index_and_search_commands_chain_on_a_tiny_model(tmp_path, tiny_qwen_dir, capsys):
    from vlm2vec.commands import main as vlm2vec

    texts = _texts(tmp_path)
    model = [f"--model.path={tiny_qwen_dir}", "--model.backbone=qwen2_vl", "--model.dtype=float32"]
    assert vlm2vec(["embed", *model, "--embed.source=texts", f"--embed.path={texts}",
                    f"--embed.output_dir={tmp_path / 'emb'}", "--embed.shard_rows=4", "--embed.batch_size=2", "--embed.dtype=float16"]) == 0  # fmt: skip
    shards = ShardFolder.open(tmp_path / "emb")
    assert shards.dtype == "float16" and len(shards.shards) == 3
    assert vlm2vec(["index", f"--index.corpus_dir={tmp_path / 'emb'}", f"--index.output_dir={tmp_path / 'ix'}",
                    "--index.kind=flat", "--index.recall_queries=4"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "ix" / "index.json").read_text())["recall"]["recall"] == 1.0
    queries = tmp_path / "queries.txt"
    queries.write_text(TEXTS[3] + "\n" + TEXTS[8] + "\n")
    for target in ("emb", "ix"):
        out = tmp_path / f"search-{target}"
        assert vlm2vec(["search", *model, f"--search.target={tmp_path / target}", "--search.query_source=texts",
                        f"--search.queries={queries}", "--search.k=3", f"--search.output_dir={out}"]) == 0  # fmt: skip
        table = pq.read_table(out / "results.parquet").to_pylist()
        assert [r["text"] for r in table if r["rank"] == 1] == [TEXTS[3], TEXTS[8]]  # each text finds itself
    capsys.readouterr()
    assert vlm2vec(["search", f"--search.target={tmp_path / 'ix'}", f"--search.queries={tmp_path / 'emb'}",
                    "--search.k=12", f"--search.output_dir={tmp_path / 's'}"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "k=12 but it holds 11 items" in err and "index.json" in err
    # another search into a search's folder, another index into the flat index's folder: refused
    assert vlm2vec(["search", *model, f"--search.target={tmp_path / 'emb'}", "--search.query_source=texts",
                    f"--search.queries={queries}", "--search.k=2", f"--search.output_dir={tmp_path / 'search-emb'}"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "search.output_dir" in err
    # another index into the flat index's folder is refused (its parts would be replaced), one line
    assert vlm2vec(["index", f"--index.corpus_dir={tmp_path / 'emb'}", f"--index.output_dir={tmp_path / 'ix'}",
                    "--index.kind=hnsw", "--index.recall_queries=4"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index.output_dir" in err
    assert json.loads((tmp_path / "ix" / "index.json").read_text())["kind"] == "flat"
