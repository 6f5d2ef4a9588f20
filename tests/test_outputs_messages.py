"""What a command says at its end: an interrupt of an evaluation is one line saying what is kept and how
to continue (exit 130 / 143) and the cache it kept is reused; the end-of-run summaries name what was
written where, the headline figure and the next command; missing datasets are named once; DeepSpeed,
imported by accelerate on every save, is told the accelerator instead of warning."""

from __future__ import annotations

import logging
import os
import re
import signal

import pytest

from eval_fakes import FakeEncoder
from vlm2vec.commands.running import name_deepspeed_accelerator, run_command
from vlm2vec.commands.train import _print_summary
from vlm2vec.config import Config, EvalConfig, TrainConfig
from vlm2vec.evaluation import evaluate_model, format_table
from vlm2vec.evaluation.reports import print_eval_summary
from vlm2vec.outputs import LOCK_FILE
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval
from vlm2vec.training import TrainResult

KINDS = {"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("messages-eval")
    return write_synthetic_mmeb_eval(root / "data", datasets=KINDS, num_queries=4, num_candidates=3, seed=1)


def _cfg(data, out, **kw) -> EvalConfig:
    return EvalConfig(data_dir=str(data), output_dir=str(out), datasets=list(KINDS), **kw)


class SignallingEncoder(FakeEncoder):
    """Sends `signum` to its own process at its `after`-th encode call."""

    def __init__(self, signum: int, after: int) -> None:
        super().__init__()
        self.signum, self.after = signum, after

    def encode(self, inputs):
        if self.calls == self.after:
            os.kill(os.getpid(), self.signum)
        return super().encode(inputs)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_eval_says_what_is_kept_and_a_rerun_reuses_the_cache(eval_data, tmp_path, capsys, signum):
    cfg = _cfg(eval_data, tmp_path / "out", batch_size=2, cache_chunk_items=2)
    interrupted = SignallingEncoder(signum, after=3)
    assert run_command(lambda: evaluate_model(interrupted, cfg)) == 128 + signum
    err = [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith("encode ")]
    name = signal.Signals(signum).name
    assert len(err) == 1 and err[0].startswith(f"interrupted ({name}): "), err
    assert str(tmp_path / "out") in err[0] and "run the same command again to continue" in err[0]
    assert not (tmp_path / "out" / LOCK_FILE).exists()
    rerun, reference = SignallingEncoder(signum, after=-1), FakeEncoder()  # the same model, no signal
    resumed = evaluate_model(rerun, cfg)
    whole = evaluate_model(reference, _cfg(eval_data, tmp_path / "ref", batch_size=2))
    assert 0 < rerun.rows_encoded < reference.rows_encoded  # what was cached before the signal is reused
    assert resumed["datasets"] == whole["datasets"]


def test_missing_datasets_are_named_once_and_the_summary_gives_score_and_next_command(
    eval_data, tmp_path, caplog, capsys
):
    out = tmp_path / "out"
    cfg = EvalConfig(data_dir=str(eval_data), output_dir=str(out), batch_size=4, skip_missing=True)
    with caplog.at_level(logging.INFO):
        summary = evaluate_model(FakeEncoder(), cfg)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    table = format_table(summary)
    assert len(summary["missing"]) == 34 and "34 missing" in table
    for name in summary["missing"]:
        assert not re.search(rf"\b{re.escape(name)}\b", logged) and table.count(f"missing: {name} ") == 1, (
            name
        )
        assert name not in format_table(summary, per_dataset=False)  # the short table counts them

    print_eval_summary(summary, out)
    text = capsys.readouterr().out
    assert f"{out / 'summary.md'}" in text and f"overall {summary['overall']:.1f}" in text
    assert "2/36 datasets" in text and "34 missing" in text
    assert text.strip().splitlines()[-1].strip() == f"next: vlm2vec compare {out} OTHER_EVAL_DIR"


def test_train_summary_names_the_model_the_figures_and_the_next_command(tmp_path, capsys):
    cfg = Config(train=TrainConfig(output_dir=str(tmp_path), max_steps=8))
    _print_summary(cfg, TrainResult(tmp_path, 8, 0.4321, tmp_path / "final", 2))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"== train: model saved to {tmp_path / 'final'}"
    assert any(line.split() == ["wrote", "metrics", str(tmp_path / "metrics.jsonl")] for line in lines)
    assert "step 8 of 8" in lines[-2] and "last loss 0.4321" in lines[-2] and "2 rows skipped" in lines[-2]
    assert lines[-1].endswith(
        f"vlm2vec eval --config configs/eval/mmeb.yaml --model.path={tmp_path / 'final'}"
    )
    _print_summary(cfg, TrainResult(tmp_path, 3, 0.5, None, 0))  # stopped early: the resume command
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("--resume")


def test_deepspeed_is_told_the_accelerator_instead_of_warning(monkeypatch, capfd):
    torch = pytest.importorskip("torch")
    detection = pytest.importorskip("deepspeed.accelerator.real_accelerator")
    if torch.cuda.is_available():
        pytest.skip("with a GPU DeepSpeed detects it without a warning")
    monkeypatch.setenv("DS_ACCELERATOR", "unset")  # restored afterwards, whatever the test sets
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr(detection, "ds_accelerator", None)  # detect again, as a fresh import does
    name_deepspeed_accelerator()
    capfd.readouterr()
    assert detection.get_accelerator()._name == "cpu"
    said = capfd.readouterr()
    assert "Setting accelerator to CPU" not in said.out + said.err
