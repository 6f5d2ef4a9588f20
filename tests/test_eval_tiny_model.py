"""End to end with a tiny Qwen2-VL EmbeddingModel: results equal a naive per-query evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vlm2vec.config import EvalConfig
from vlm2vec.evaluation import evaluate_model, load_eval_dataset
from vlm2vec.evaluation.metrics import positive_rank
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

KINDS = {"ImageNet-1K": "classification", "MSCOCO_i2t": "retrieval_i2t", "VisDial": "retrieval_t2i"}


def _naive_ranks(model, ds):
    """Embed every query and every candidate slot separately with model.embed (no dedup, no cache)."""

    def load(rel):
        return [Image.open(ds.image_root / rel).convert("RGB")] if rel else []

    ranks = []
    for ex in ds.examples:
        q = model.embed([ex.qry_text], [load(ex.qry_img)])
        t = model.embed(list(ex.tgt_texts), [load(p) for p in ex.tgt_imgs], batch_size=1)
        ranks.append(positive_rank((t @ q[0]).numpy()))
    return ranks


@pytest.mark.slow
def test_tiny_qwen2vl_matches_naive_evaluation_and_cache_skips_rerun(tmp_path):
    data = write_synthetic_mmeb_eval(
        tmp_path / "data", datasets=KINDS, num_queries=4, num_candidates=4, seed=6
    )
    model = EmbeddingModel.from_config(
        tiny_model_config("qwen2_vl", make_tiny_checkpoint("qwen2_vl", tmp_path / "m"))
    )
    rows = []
    encode = model.encode
    model.encode = lambda inputs, **kw: rows.append(inputs["input_ids"].shape[0]) or encode(inputs, **kw)

    summary = evaluate_model(
        model,
        EvalConfig(data_dir=str(data), output_dir=str(tmp_path / "out"), batch_size=3, skip_missing=True),
    )
    assert sum(rows) == sum(r["distinct_items"] for r in summary["datasets"].values())
    for name in KINDS:
        ds = load_eval_dataset(data, name)
        preds = [json.loads(line) for line in (tmp_path / "out" / "predictions" / f"{name}.jsonl").open()]
        assert [p["rank"] for p in preds] == _naive_ranks(model, ds)
        assert summary["datasets"][name]["precision@1"] == pytest.approx(
            100 * sum(p["rank"] == 1 for p in preds) / len(preds)
        )

    rows.clear()
    again = evaluate_model(
        model,
        EvalConfig(
            data_dir=str(data),
            output_dir=str(tmp_path / "out2"),
            cache_dir=str(tmp_path / "out" / "cache"),
            batch_size=3,
            skip_missing=True,
        ),
    )
    assert rows == [] and {k: v for k, v in again.items() if k != "config"} == {
        k: v for k, v in summary.items() if k != "config"
    }


@pytest.mark.slow
def test_evaluate_cli_on_a_saved_model_prints_table_and_writes_outputs(tmp_path):
    data = write_synthetic_mmeb_eval(
        tmp_path / "data", datasets={"OK-VQA": "vqa"}, num_queries=3, num_candidates=3, seed=7
    )
    base = make_tiny_checkpoint("qwen2_vl", tmp_path / "base")
    saved = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", base)).save_pretrained(
        tmp_path / "saved"
    )
    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        str(root / "evaluate.py"),
        "--config",
        str(root / "configs/eval/demo.yaml"),
        f"--model.path={saved}",
        f"--eval.data_dir={data}",
        f"--eval.output_dir={tmp_path / 'out'}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Overall" in proc.stdout and "ours: " in proc.stdout and "OK-VQA" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["datasets"]) == ["OK-VQA"] and summary["model"] == str(saved)
    assert (tmp_path / "out" / "config.yaml").is_file()
