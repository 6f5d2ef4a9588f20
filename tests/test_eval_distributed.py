"""Two processes (torchrun, gloo, CPU) give exactly the single-process evaluation results."""

import json
from pathlib import Path

import pytest

from launching import launch
from vlm2vec.testing import make_tiny_checkpoint
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

WORKER = Path(__file__).parent / "dist_scripts" / "eval_worker.py"
SRC = Path(__file__).resolve().parents[1] / "src"
KINDS = {"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i", "MSCOCO": "grounding"}


def _launch(nproc: int, data: Path, out: Path, model: Path) -> None:
    args = ["--data", str(data), "--out", str(out), "--model", str(model), "--batch-tokens", "60"]
    launch(WORKER, *args, nproc=nproc, timeout=240)


@pytest.mark.slow
def test_two_process_evaluation_equals_single_process(tmp_path):
    data = write_synthetic_mmeb_eval(
        tmp_path / "data", datasets=KINDS, num_queries=5, num_candidates=4, seed=4
    )
    model = make_tiny_checkpoint("qwen2_vl", tmp_path / "tiny")
    _launch(1, data, tmp_path / "one", model)
    _launch(2, data, tmp_path / "two", model)

    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    one.pop("config"), two.pop("config")
    assert one == two and set(one["datasets"]) == set(KINDS)
    for name in KINDS:  # scores to the last bit, ranks and top-k lists
        assert (tmp_path / "one" / "predictions" / f"{name}.jsonl").read_text() == (
            tmp_path / "two" / "predictions" / f"{name}.jsonl"
        ).read_text()
    # token-budget batches too: the layout is cut from the full item list, whatever the process count
    for name in KINDS:
        assert (tmp_path / "one" / "tokens" / "predictions" / f"{name}.jsonl").read_text() == (
            tmp_path / "two" / "tokens" / "predictions" / f"{name}.jsonl"
        ).read_text()
    rank0 = json.loads((tmp_path / "two" / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "two" / "rank1.json").read_text())
    assert rank0["summary"] == rank1["summary"]  # every process returns the same summary
    assert rank0["tokens_summary"] == rank1["tokens_summary"]
    # the work was really shared: each rank encoded part of the distinct items, together all of them
    total = sum(r["distinct_items"] for r in one["datasets"].values())
    assert rank0["num_processes"] == 2
    assert 0 < rank0["rows_encoded"] < total and rank0["rows_encoded"] + rank1["rows_encoded"] == total
    throughput = [json.loads(p.read_text()) for p in (tmp_path / "two" / "tokens" / "throughput").iterdir()]
    assert len(throughput) == len(KINDS) and all(t["processes"] == 2 for t in throughput)
    assert sum(t["items"] for t in throughput) == total  # both processes' items, each once
