"""`run_compare`: per-dataset deltas of two or more result folders, published rows alongside."""

import csv
import json

import pytest

from eval_fakes import FakeEncoder
from vlm2vec.commands.compare import run as compare_command
from vlm2vec.config import EvalConfig
from vlm2vec.errors import UserError
from vlm2vec.evaluation import evaluate_model
from vlm2vec.evaluation.compare import run_compare
from vlm2vec.evaluation.registry import PUBLISHED_RESULTS
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

KINDS = {"ImageNet-1K": "classification", "OK-VQA": "vqa", "MSCOCO_t2i": "retrieval_t2i"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    data = write_synthetic_mmeb_eval(root / "data", datasets=KINDS, num_queries=6, num_candidates=4, seed=2)
    out = {}
    for seed, names in ((0, list(KINDS)), (1, list(KINDS)), (2, ["ImageNet-1K", "OK-VQA"])):
        cfg = EvalConfig(
            data_dir=str(data), output_dir=str(root / f"run{seed}"), datasets=names, batch_size=4
        )
        evaluate_model(FakeEncoder(seed=seed), cfg)
        out[seed] = root / f"run{seed}"
    return out


def test_delta_table_equals_the_difference_of_the_summaries(runs, tmp_path):
    md = run_compare([runs[0], runs[1], runs[2]], tmp_path / "c")
    assert md == tmp_path / "c" / "compare.md"
    a, b, c = (json.loads((runs[k] / "summary.json").read_text()) for k in (0, 1, 2))
    rows = {r["dataset"]: r for r in csv.DictReader((tmp_path / "c" / "compare.csv").open())}
    assert list(rows) == list(KINDS)
    for name in KINDS:
        pa, pb = a["datasets"][name]["precision@1"], b["datasets"][name]["precision@1"]
        assert float(rows[name]["run0"]) == pytest.approx(pa, abs=1e-4)
        assert float(rows[name]["delta_run1"]) == pytest.approx(pb - pa, abs=1e-4)
    assert rows["MSCOCO_t2i"]["run2"] == "" and rows["MSCOCO_t2i"]["delta_run2"] == ""  # absent, not zero
    assert float(rows["OK-VQA"]["delta_run2"]) == pytest.approx(
        c["datasets"]["OK-VQA"]["precision@1"] - a["datasets"]["OK-VQA"]["precision@1"], abs=1e-4
    )
    text = md.read_text()
    assert all(model in text for model in PUBLISHED_RESULTS)
    assert f"{b['overall'] - a['overall']:+.1f}" in text and "(partial)" in text
    groups = list(csv.DictReader((tmp_path / "c" / "compare_groups.csv").open()))
    assert any(r["source"].startswith("published: VLM2Vec Phi-3.5-V LoRA") for r in groups)
    assert (tmp_path / "c" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_under_different_tie_rules_or_without_summary_fail_naming_them(runs, tmp_path):
    other = tmp_path / "strict"
    summary = json.loads((runs[0] / "summary.json").read_text())
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({**summary, "ties": "strict"}))
    with pytest.raises(UserError, match=f"different tie rules.*{other}: strict"):
        run_compare([runs[0], other], tmp_path / "c")
    with pytest.raises(UserError, match=f"'{tmp_path}' is not an evaluation result folder"):
        run_compare([runs[0], tmp_path], tmp_path / "c")
    with pytest.raises(UserError, match="two or more"):
        run_compare([runs[0]], tmp_path / "c")


def test_main_writes_the_comparison_and_prints_it(runs, tmp_path, capsys):
    assert compare_command([str(runs[0]), str(runs[1]), "--output-dir", str(tmp_path / "m")]) == 0
    assert "| ImageNet-1K |" in capsys.readouterr().out
    assert (tmp_path / "m" / "compare.md").is_file()
