"""Distributed training with the real backbones when ranks' chunks differ in images (issue 9).

DeepSpeed ZeRO-3 gathers a module's parameters when it runs and once per returned tensor in backward;
DDP and ZeRO-2 need every trainable parameter's gradient at the same point of every backward. MMEB
batches mix image and text-only rows, so one rank's chunk may have images while another's has none.

- single process (fast): for every backbone, full and LoRA (vision adapters on), a batch with an image, a text-only batch
  (the dummy-image path) and a two-image row record the same module trace (`module_trace`: call order
  and tensors returned). This is the check that catches both ZeRO-3 hangs.
- two processes (slow, one launch of tests/dist_scripts/lockstep_worker.py for all scenarios): one
  GradCache step with SGD under torch DDP, ZeRO-2, ZeRO-3 (the project's config files) and FSDP2, tiny
  Phi-3.5-V and Qwen2-VL, full and LoRA (dropout 0.1), chunk 1 and 3, and tiny Qwen3-VL and LLaVA-NeXT
  under ZeRO-3 with chunk 1 (full and LoRA); rank 0 holds an image row, a text
  row and a two-image row of queries while rank 1's queries are text only, the targets the other way
  round. The update equals one process on the global batch; a hang fails through the launch timeout.
- two processes with video rows (slow): ZeRO-3, Qwen-VL, one rank's chunk with a video where the
  other's has images or text; and chunks cut by a token budget that counts video tokens, so the ranks
  plan different numbers of chunks, with a second positive on one rank (different target counts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from launching import launch
from lockstep_checks import assert_same_module_trace, module_trace
from vlm2vec.backbones import available_backbones
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config

SCRIPTS = Path(__file__).parent / "dist_scripts"
VISION_NAMES = (".visual.", "vision_embed", ".vision_tower.")  # Qwen-VL, Phi-3.5-V, LLaVA-NeXT
sys.path.insert(0, str(SCRIPTS))
from lockstep_worker import BACKBONES, BUDGETS, image, scenarios  # noqa: E402


@pytest.fixture(scope="module")
def folders(tiny_checkpoint) -> dict[str, Path]:
    """A tiny checkpoint of every backbone."""
    return {name: tiny_checkpoint(name) for name in available_backbones()}


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_image_and_text_only_batches_record_the_same_module_trace(tiny_backbone, lora):
    """Every backbone: whenever the vision path must run (trainable vision parameters here;
    partitioned ones under ZeRO-3, checked by the two-process test; a frozen, unpartitioned tower is
    skipped on text-only batches, which no engine minds)."""
    backbone, folder = tiny_backbone
    torch.manual_seed(0)
    cfg = tiny_model_config(backbone, folder, lora=lora, lora_vision=lora)
    model = EmbeddingModel.from_config(cfg).train()
    proc = model.processor

    def run(texts, images=None):
        return lambda: model.encode(proc(texts, images))

    trace = assert_same_module_trace(
        model,
        {
            "image + text": run(["<|image_1|> a red circle", "blue"], [[image(100, 70, 1)], None]),
            "text only (dummy image)": run(["a red circle", "blue"]),
            "two-image row": run(["<|image_1|> and <|image_2|>"], [[image(60, 60, 2), image(70, 120, 3)]]),
        },
    )
    model.eval()  # inference skips the vision path on text-only batches: the compared trace includes it
    with torch.no_grad():
        assert len(module_trace(model, run(["a red circle", "blue"]))) < len(trace)


def _launch_worker(tmp_path_factory, folders, name: str, *args: str) -> tuple[dict, list[dict]]:
    """One two-process launch of the lockstep worker: the one-process references (both ranks' share)
    and each rank's runs."""
    out = tmp_path_factory.mktemp(name) / "result"
    folder_arg = json.dumps({k: str(v) for k, v in folders.items()})
    launch(
        SCRIPTS / "lockstep_worker.py",
        "--out",
        str(out),
        "--folders",
        folder_arg,
        *args,
        nproc=2,
        timeout=600,
    )
    ranks = [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(2)]
    return {**ranks[0]["refs"], **ranks[1]["refs"]}, [rank["runs"] for rank in ranks]


@pytest.fixture(scope="module")
def results(tmp_path_factory, folders):
    refs, runs = _launch_worker(tmp_path_factory, folders, "lockstep")
    return refs, runs[0]


def _ids(s):
    return f"{s[0]}-{s[1]}-{'lora' if s[2] else 'full'}-chunk{s[3]}"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", scenarios(), ids=_ids)
def test_two_process_step_equals_one_process_on_the_global_batch(results, scenario):
    """Relative error of the whole update <= 1e-5; per parameter <= 1e-2 wherever the update is not
    vanishingly small (fp32 reduction order leaves ~1e-7 absolute noise; a key bias's exact gradient is
    0), so a tower with a missing or wrong update cannot hide in the total."""
    refs, runs = results
    engine, backbone, lora, chunk = scenario
    _check_update(refs[(backbone, lora, chunk)], runs[scenario], lora)


def _check_update(ref: dict, run: dict, lora: bool) -> None:
    assert run["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert run["delta"].keys() == ref["delta"].keys()
    total = torch.sqrt(sum((d.double() ** 2).sum() for d in ref["delta"].values()))
    error = torch.sqrt(sum(((run["delta"][n] - d).double() ** 2).sum() for n, d in ref["delta"].items()))
    assert error <= 1e-5 * total, f"relative error of the update {error / total:.2e}"
    for name, d in ref["delta"].items():
        if d.norm() >= 1e-5 * total:
            err = (run["delta"][name] - d).norm() / d.norm()
            assert err <= 1e-2, f"{name}: relative error {err:.2e}"
    if not lora:  # the vision tower really is trained, so its update is compared too
        vision = [d.norm() for n, d in ref["delta"].items() if any(t in n for t in VISION_NAMES)]
        assert vision and max(vision) > 0


VIDEO_BACKBONES = ("qwen2_vl", "qwen3_vl")


@pytest.fixture(scope="module")
def video_results(tmp_path_factory, folders):
    args = ["--videos", "--engines", "zero3", "--backbones", ",".join(VIDEO_BACKBONES)]
    refs, runs = _launch_worker(tmp_path_factory, folders, "lockstep_videos", *args)
    return refs, runs[0]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", scenarios(("zero3",), VIDEO_BACKBONES), ids=_ids)
def test_two_process_zero3_step_with_video_rows_on_one_rank_equals_one_process(video_results, scenario):
    """One rank's chunk holds a video while the other's holds images or text only: the one vision call
    per forward keeps ZeRO-3's gathers in step, and the update is the one-process update."""
    refs, runs = video_results
    _, backbone, lora, chunk = scenario
    _check_update(refs[(backbone, lora, chunk)], runs[scenario], lora)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_zero3_parameter_groups_equal_one_process(results, backbone, lora):
    """After ZeRO-3 partitioned the parameters (1-D stand-ins), the decay / no-decay split by name is
    the one-process split, and DeepSpeed's optimizer has exactly the non-empty groups."""
    refs, runs = results
    run = runs[("zero3", backbone, lora, 1)]
    decay, no_decay = refs[(backbone, lora, 1)]["groups"]
    assert run["groups_before"] == (decay, no_decay) and run["groups"] == (decay, no_decay)
    assert decay and (no_decay or lora)
    assert run["optimizer_groups"] == (1 if not no_decay else 2)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ("phi3_v", "qwen2_vl"))
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fsdp2_checkpoint_round_trip_and_export_hold_the_trained_weights(results, backbone, lora):
    """After the FSDP2 step: load_state over scrambled parameters restores the saved shards exactly
    (LoRA: only the adapters are stored), and export_model gathers the shards into a folder (the full
    model in its official layout, or the adapter) that reopens with exactly the trained weights; a
    LoRA run's merged export gives the adapter model's embeddings."""
    _, runs = results
    state = runs[("fsdp2", backbone, lora, 1)]["state"]
    after = state["after"]
    assert all(torch.equal(state["reloaded"][n], after[n]) for n in after)
    assert state["exported"].keys() == after.keys()
    assert all(torch.equal(state["exported"][n], after[n]) for n in after)
    assert ("adapter_model.safetensors" in state["files"]) == lora
    assert ("model.safetensors" in state["files"]) == (not lora)
    if lora:
        adapter, merged = state["merged_reps"]
        torch.testing.assert_close(merged, adapter, rtol=1e-5, atol=1e-5)


BUDGET_SCENARIOS = [("zero3", "qwen2_vl", lora, b) for lora in (False, True) for b in BUDGETS["chunks"]]


@pytest.fixture(scope="module")
def budget_results(tmp_path_factory, folders):
    args = ["--videos", "--budgets", "--engines", "zero3", "--backbones", "qwen2_vl"]
    return _launch_worker(tmp_path_factory, folders, "lockstep_budgets", *args)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", BUDGET_SCENARIOS, ids=_ids)
def test_zero3_token_budget_chunks_with_videos_and_several_positives_equal_one_process(
    budget_results, scenario
):
    """Token-budget chunks count video tokens, so the ranks plan different numbers of chunks (the
    counts are agreed, the smaller plan split); rank 0 has four target rows, rank 1 three. The ranks
    stay in step and the update is the one-process update with every positive counted."""
    refs, runs = budget_results
    _, backbone, lora, budget = scenario
    own = [run[scenario]["own_counts"] for run in runs]
    assert own[0] != own[1]  # the ranks' own plans really differ in chunk count
    _check_update(refs[(backbone, lora, budget)], runs[0][scenario], lora)
