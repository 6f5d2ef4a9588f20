"""Bad input during training: clear errors naming source/row/path, skipping when asked, and a
non-finite loss that stops the run without touching the last good checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from safetensors.torch import load_file

from training_setup import reset_accelerate, tiny_train_config
from vlm2vec import commands as cli
from vlm2vec.config import DataConfig, PairSourceConfig, save_config
from vlm2vec.losses import build_loss
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train
from vlm2vec.training import NonFiniteLossError, latest_checkpoint, list_checkpoints, train

pytestmark = pytest.mark.usefixtures("fresh_accelerate")


@pytest.fixture(scope="module")
def mmeb_dir(tmp_path_factory) -> Path:
    subsets = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
    return write_synthetic_mmeb_train(tmp_path_factory.mktemp("mmeb"), subsets=subsets, rows_per_subset=12)


class NaNAtThirdCall:
    """The configured loss, NaN at its third call."""

    def __init__(self, loss):
        self.loss, self.calls = loss, 0

    def __call__(self, *args, **kwargs):
        loss = self.loss(*args, **kwargs)
        self.calls += 1
        return loss * float("nan") if self.calls == 3 else loss


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_qwen_dir, mmeb_dir):
    out = tmp_path / "run"
    cfg = tiny_train_config(
        out, tiny_qwen_dir, DataConfig(mmeb_train_dir=str(mmeb_dir)), save_every=2, keep_last=3
    )
    with pytest.raises(NonFiniteLossError, match=r"step 3: loss nan.*last good checkpoint: .*step-00000002"):
        train(cfg, loss_fn=NaNAtThirdCall(build_loss(cfg)))
    assert [step for step, _ in list_checkpoints(out)] == [2]
    ckpt = latest_checkpoint(out)
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 2
    weights = load_file(ckpt / "model.safetensors")
    assert weights and all(bool(t.isfinite().all()) for t in weights.values())
    assert not (out / "final").exists()
    assert not any(p.name.startswith(".tmp") for p in (out / "checkpoints").iterdir())
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["stopped"] == "non-finite loss"

    # nothing was lost: the run resumes from step 2 and finishes
    reset_accelerate()
    cfg.train.resume = True
    result = train(cfg)
    assert result.step == 4 and (out / "final" / "vlm2vec.json").is_file()


def _pairs_with_missing_image(folder: Path) -> PairSourceConfig:
    from PIL import Image

    Image.new("RGB", (48, 48), "red").save(folder / "ok.png")
    lines = [
        json.dumps({"q": f"<|image_1|> item {i}", "img": "ok.png", "t": f"target {i}"}) for i in range(8)
    ]
    lines[5] = json.dumps({"q": "<|image_1|> item 5", "img": "missing/five.png", "t": "target 5"})
    path = folder / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return PairSourceConfig(name="mypairs", path=str(path), qry_text="q", qry_image="img", pos_text="t")


def test_missing_image_in_a_worker_prints_one_line_naming_source_row_and_path(
    tmp_path, tiny_qwen_dir, capsys
):
    data = DataConfig(pairs=[_pairs_with_missing_image(tmp_path)], num_workers=1)
    config = save_config(
        tiny_train_config(tmp_path / "run", tiny_qwen_dir, data, max_steps=4), tmp_path / "c.yaml"
    )
    assert cli.main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err  # besides progress bars (weights loading, steps)
    assert "Traceback" not in err and "DataLoader worker" not in err, err
    (line,) = [x for x in err.splitlines() if "error" in x.lower()]
    assert re.fullmatch(
        r"error: source 'mypairs' row 6: image file not found \(path: .*missing/five.png\)", line
    ), line
    assert not (tmp_path / "run" / "final").exists()


def test_skip_bad_rows_finishes_and_counts_the_skipped_rows(tmp_path, tiny_qwen_dir):
    data = DataConfig(pairs=[_pairs_with_missing_image(tmp_path)], skip_bad_rows=True)
    out = tmp_path / "run"
    result = train(tiny_train_config(out, tiny_qwen_dir, data, max_steps=4))
    assert result.step == 4 and result.skipped_rows >= 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["skipped_rows"] == result.skipped_rows


def test_fresh_run_refuses_an_output_dir_with_checkpoints(tmp_path, tiny_qwen_dir, mmeb_dir):
    out = tmp_path / "run"
    cfg = tiny_train_config(
        out, tiny_qwen_dir, DataConfig(mmeb_train_dir=str(mmeb_dir)), max_steps=2, save_every=1
    )
    train(cfg)
    reset_accelerate()
    with pytest.raises(Exception, match="already holds checkpoints: pass --resume"):
        train(cfg)
