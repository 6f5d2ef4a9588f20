"""`evaluate.py --config configs/eval/mmeb_v2.yaml` on the synthetic V2 slice (plus a few synthetic
image datasets) ends with the 78-task report, marked partial, with the published rows beside it.

The image and document tasks run with a tiny real Qwen2-VL; the video tasks with the fake encoder
until the backbones take `Item.video` (then the `video` case runs the tiny model too)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_fakes import FakeEncoder
from vlm2vec.config import load_config
from vlm2vec.evaluation import evaluate_model
from vlm2vec.evaluation.v2_reports import format_v2_table
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval
from vlm2vec.testing.synthetic_v2 import VIDEO_TASKS, VISDOC_TASKS, write_synthetic_v2

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/eval/mmeb_v2.yaml"
IMAGES = {"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
#: the modalities the tiny model runs; video joins once the backbones turn Item.video into inputs
TINY_MODALITIES = [
    pytest.param(("image", "visdoc"), id="image+visdoc"),
    pytest.param(("video",), id="video"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    v1 = write_synthetic_mmeb_eval(
        base / "mmeb-eval", datasets=IMAGES, num_queries=3, num_candidates=3, seed=2
    )
    return write_synthetic_v2(base / "v2"), v1


def _flags(data, out, *extra):
    v2, v1 = data
    return [f"--eval.v2_root={v2}", f"--eval.data_dir={v1}", f"--eval.output_dir={out}",
            "--eval.skip_missing=true", "--eval.batch_size=4", "--eval.num_workers=0", *extra]  # fmt: skip


def _check_report(text: str, summary: dict, tasks: int) -> None:
    assert summary["partial"] and summary["coverage"] == f"{tasks}/78"
    assert text.splitlines()[0].startswith(f"PARTIAL MMEB-V2 run: {tasks}/78 tasks scored")
    for model in (
        "VLM2Vec-V2.0-2B",
        "VLM2Vec-V1-Qwen2VL-7B",
        "GME-7B",
        "ColPali v1.3",
        "Qwen3-VL-Embedding-8B",
    ):
        assert f"{model} (published)" in text
    assert "reference's rule" in text


def test_the_config_runs_every_slice_task_and_reports_78_way_with_the_fake(data, tmp_path):
    cfg = load_config(CONFIG, _flags(data, tmp_path / "out"))
    summary = evaluate_model(FakeEncoder(), cfg.eval)
    scored = len(IMAGES) + len(VIDEO_TASKS) + len(VISDOC_TASKS)
    _check_report(format_v2_table(summary), summary, scored)
    assert [n for n, r in summary["datasets"].items() if r["modality"] == "image"] == list(IMAGES)
    assert summary["modalities"]["image"] == {
        "value": pytest.approx(sum(summary["datasets"][n]["score"] for n in IMAGES) / 2),
        "n": 2,
        "of": 36,
        "partial": True,
    }
    sub = json.loads((tmp_path / "out" / "submission.json").read_text())
    assert sub["metrics"]["image"]["ImageNet-1K"]["hit@1"] * 100 == pytest.approx(
        summary["datasets"]["ImageNet-1K"]["score"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("modalities", TINY_MODALITIES)
def test_evaluate_py_with_a_tiny_model_ends_with_the_78_task_report(data, tmp_path, modalities):
    base = make_tiny_checkpoint("qwen2_vl", tmp_path / "base")
    saved = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", base)).save_pretrained(
        tmp_path / "saved"
    )
    tasks = f"--eval.v2_tasks=[{', '.join(modalities)}]"
    cmd = [sys.executable, str(ROOT / "evaluate.py"), "--config", str(CONFIG), f"--model.path={saved}"]
    cmd += _flags(data, tmp_path / "out", tasks)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    counts = {"image": len(IMAGES), "video": len(VIDEO_TASKS), "visdoc": len(VISDOC_TASKS)}
    scored = sum(counts[m] for m in modalities)
    report = proc.stdout[proc.stdout.index("MMEB-V2 run") - len("PARTIAL ") :]
    _check_report(report, summary, scored)
    assert {r["modality"] for r in summary["datasets"].values()} == set(modalities)
    lines = proc.stdout.rstrip().splitlines()
    missing = [i for i, line in enumerate(lines) if line.startswith("missing (")]
    header = next(i for i, line in enumerate(lines) if "MMEB-V2 run" in line)
    assert len(missing) == 1 and missing[0] > header  # the report names what is missing, once
