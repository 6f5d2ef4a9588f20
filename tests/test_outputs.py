"""Output folders belong to one run: a lock keeps a second writer out (a dead writer's lock is named and
taken over), `owner.json` keeps another model's or another job's results from being mixed in or
replaced unless `--overwrite` asks for it, and nothing the command did not create is deleted."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from eval_fakes import FakeEncoder
from launching import ROOT
from vlm2vec.atomic_files import atomic_path, replace_dir
from vlm2vec.commands import main as cli_main
from vlm2vec.commands.corpus_claims import claim_embed, claim_mine
from vlm2vec.config import Config, DataConfig, EmbedConfig, EvalConfig, MineConfig, ModelConfig
from vlm2vec.evaluation import evaluate_model
from vlm2vec.outputs import (
    LOCK_FILE,
    OWNER_FILE,
    OutputFolderError,
    OutputLockedError,
    OutputOwnedError,
    claim_output,
    read_owner,
)
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

KINDS = {"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("owner-eval")
    return write_synthetic_mmeb_eval(root / "data", datasets=KINDS, num_queries=4, num_candidates=3, seed=1)


@pytest.fixture
def live_process():
    """A process that stays alive while the test runs (it holds the fake locks)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _fake_lock(folder: Path, pid: int, command: str = "train") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": command, "time": "t0"}))
    return lock


def _eval_cfg(data: Path, out: Path) -> EvalConfig:
    return EvalConfig(data_dir=str(data), output_dir=str(out), datasets=list(KINDS), batch_size=4)


# ---------------------------------------------------------------------------------------- locks
def test_second_writer_is_refused_while_a_live_process_holds_the_lock(tmp_path, live_process):
    lock = _fake_lock(tmp_path / "run", live_process.pid)
    with pytest.raises(OutputLockedError) as info:
        claim_output(tmp_path / "run", "train", {})
    message = str(info.value)
    assert f"pid {live_process.pid}" in message and str(lock) in message and "\n" not in message
    assert lock.is_file()  # the holder's lock stays


def test_training_into_a_locked_folder_is_refused_before_anything_is_written(
    tmp_path, tiny_qwen_dir, live_process, fresh_accelerate
):
    from training_setup import tiny_train_config
    from vlm2vec.training import train

    out = tmp_path / "run"
    _fake_lock(out, live_process.pid)
    cfg = tiny_train_config(out, tiny_qwen_dir, DataConfig(mmeb_train_dir=str(tmp_path / "nodata")))
    with pytest.raises(OutputLockedError, match=f"pid {live_process.pid}"):
        train(cfg)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_stale_lock_of_a_dead_process_is_named_and_taken_over(tmp_path, caplog):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _fake_lock(tmp_path / "out", dead.pid, command="eval")
    with caplog.at_level(logging.WARNING), claim_output(tmp_path / "out", "eval", {"model": "m"}) as claim:
        holder = json.loads((tmp_path / "out" / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and claim.lock is not None
    warned = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    assert len(warned) == 1 and f"pid {dead.pid}" in warned[0] and "eval" in warned[0]
    assert not (tmp_path / "out" / LOCK_FILE).exists()  # released


def test_a_claim_that_wrote_nothing_leaves_no_folder_behind(tmp_path):
    with claim_output(tmp_path / "a" / "b", "compare", {"runs": []}) as claim:
        claim.record()
    assert not (tmp_path / "a").exists()


def test_an_output_path_that_is_a_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError, match=r"eval.output_dir .*f is a file"):
        claim_output(tmp_path / "f", "eval", {}, key="eval.output_dir")


# ---------------------------------------------------------------------------------------- owners
def test_eval_of_model_b_into_model_a_folder_is_refused_naming_both(eval_data, tmp_path):
    out = tmp_path / "eval"
    evaluate_model(FakeEncoder(seed=0), _eval_cfg(eval_data, out))
    before = (out / "summary.json").read_bytes()
    fp_a = read_owner(out)["match"]["model"]
    with pytest.raises(OutputOwnedError) as info:
        evaluate_model(FakeEncoder(seed=1), _eval_cfg(eval_data, out))
    message = str(info.value)
    assert fp_a[:12] in message and "--overwrite" in message and "eval.output_dir" in message
    fp_b = message.split("not of this")[1]
    assert fp_a[:12] not in fp_b and "[" in fp_b  # B named too, by its own fingerprint
    assert (out / "summary.json").read_bytes() == before and not (out / LOCK_FILE).exists()

    again = FakeEncoder(seed=0)
    evaluate_model(again, _eval_cfg(eval_data, out))  # the same model: its results are reused
    assert again.rows_encoded == 0
    other = FakeEncoder(seed=1)
    evaluate_model(other, _eval_cfg(eval_data, out), overwrite=True)  # asked for: B owns it now
    assert read_owner(out)["match"]["model"] != fp_a and other.rows_encoded > 0


def _corpus_cfg(tmp_path: Path, model: str, **embed) -> Config:
    return Config(
        model=ModelConfig(path=str(tmp_path / model)),
        data=DataConfig(mmeb_train_dir=str(tmp_path / "train")),
        embed=EmbedConfig(
            source="texts", path=str(tmp_path / "texts.txt"), output_dir=str(tmp_path / "emb"), **embed
        ),
        mine=MineConfig(output_dir=str(tmp_path / "mined")),
    )


def test_embed_into_a_folder_of_another_model_or_corpus_is_refused_before_loading(tmp_path):
    from vlm2vec.commands.embed import run as embed_command

    with claim_embed(_corpus_cfg(tmp_path, "model-a")) as claim:
        claim.record()
        (tmp_path / "emb" / "manifest.json").write_text("{}")  # what the job wrote
    with claim_embed(_corpus_cfg(tmp_path, "model-a")):  # the same job: a re-run reuses the folder
        pass
    with pytest.raises(OutputOwnedError, match=r"embed.output_dir .*model-a.*model-b"):
        embed_command(_corpus_cfg(tmp_path, "model-b"))  # refused before the (missing) model is loaded
    with pytest.raises(OutputOwnedError, match="corpus"):
        embed_command(_corpus_cfg(tmp_path, "model-a", side="qry"))


def test_mine_into_a_used_folder_is_refused_unless_the_job_is_the_same(tmp_path):
    from vlm2vec.commands.mine import run as mine_command

    with claim_mine(_corpus_cfg(tmp_path, "model-a")) as claim:
        claim.record()
        (tmp_path / "mined" / "mine.json").write_text("{}")  # what the job wrote
    with claim_mine(_corpus_cfg(tmp_path, "model-a")):
        pass
    with pytest.raises(OutputOwnedError, match=r"mine.output_dir .*model-a.*model-b"):
        mine_command(_corpus_cfg(tmp_path, "model-b"))
    assert read_owner(tmp_path / "mined")["details"]["model"].endswith("model-a")


def test_compare_does_not_overwrite_another_comparison(eval_data, tmp_path, capsys):
    runs = [tmp_path / "run0", tmp_path / "run1", tmp_path / "run2"]
    for seed in (0, 1):
        evaluate_model(FakeEncoder(seed=seed), _eval_cfg(eval_data, runs[seed]))
    shutil.copytree(runs[1], runs[2])  # a third run folder (a copy is enough for the report)
    out = tmp_path / "cmp"
    assert cli_main(["compare", str(runs[0]), str(runs[1]), "-o", str(out)]) == 0
    first = (out / "compare.md").read_text()
    assert cli_main(["compare", str(runs[0]), str(runs[1]), "-o", str(out)]) == 0  # the same comparison
    capsys.readouterr()
    assert cli_main(["compare", str(runs[0]), str(runs[2]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and str(runs[1].resolve()) in err[0]
    assert (out / "compare.md").read_text() == first
    assert cli_main(["compare", str(runs[0]), str(runs[2]), "-o", str(out), "--overwrite"]) == 0
    assert (out / "compare.md").read_text() != first


def _demo_module():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_does_not_delete_a_run_it_did_not_write(tmp_path):
    demo = _demo_module()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "model.safetensors").write_text("precious")
    with pytest.raises(OutputOwnedError, match="did not write"):
        demo._start_afresh(theirs)
    assert (theirs / "model.safetensors").read_text() == "precious"
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / OWNER_FILE).write_text(json.dumps({"command": "train", "program": "demo.py"}))
    demo._start_afresh(ours)  # an earlier demo's run: removed to start afresh
    assert not ours.exists()


# ---------------------------------------------------------------------------------------- modes
def test_saved_model_folder_is_group_readable(tmp_path, tiny_qwen_dir):
    from vlm2vec.model import EmbeddingModel
    from vlm2vec.testing import tiny_model_config

    old = os.umask(0o022)
    try:
        tmp = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700, as every save starts
        replace_dir(tmp, tmp_path / "plain")
        saved = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir)).save_pretrained(
            tmp_path / "model"
        )
        with atomic_path(tmp_path / "vectors.safetensors") as file:  # as the vector store writes
            save_file({"v": torch.zeros(2)}, str(file))
    finally:
        os.umask(old)
    for folder in (tmp_path / "plain", saved):
        mode = stat.S_IMODE(folder.stat().st_mode)
        assert mode & stat.S_IRGRP and mode & stat.S_IXGRP, oct(mode)
    files = [*saved.iterdir(), tmp_path / "vectors.safetensors"]
    assert all(stat.S_IMODE(f.stat().st_mode) & stat.S_IRGRP for f in files), files
