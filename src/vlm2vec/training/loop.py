"""The training loop: data -> GradCache step -> clip -> AdamW step -> schedule, with checkpoints and logs.

One global step = one global batch (`per_device_batch_size` x processes) = one optimizer step. The
backward is always `GradCache.step` (plain when every side fits in one chunk), for one process, DDP and
DeepSpeed alike. Everything that depends on the data order (the sampler) is a pure function of the
seed and the step, and everything else that is random (dropout) is restored from the checkpoint's RNG
states, so `--resume` continues exactly where the checkpoint left off; `resume` checks that the run
is the same one (or that each difference was allowed).

Nothing is written before the config, the data sources and the model have been checked: the output
folder, `config.yaml` (what runs from this start on) and `history.jsonl` appear just before step one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..chunking import PaddingMeter
from ..config import Config, ConfigError, save_config, to_dict, validate_config
from ..data import build_sources, build_train_loader
from ..errors import ModelLoadError, ResumeError, UserError, unwrap_worker_error
from ..gradcache import GradCache
from ..losses import ContrastiveLoss, MatryoshkaLoss
from ..model import EmbeddingModel, move_batch
from .checkpoint import (
    install_trainable_only_hook,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    newest_readable_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from .engine import build_accelerator, deepspeed_float_dtype, zero_stage
from .export import zero3_export
from .logging import MetricsLogger
from .optim import (
    build_optimizer,
    build_scheduler,
    lr_lambda,
    param_groups,
    parameter_counts,
    trainable_parameters,
)
from .resume import DATA_ORDER_KEY, allowed_keys, append_history, check_changes, run_definition

logger = logging.getLogger(__name__)


class NonFiniteLossError(UserError, RuntimeError):
    """The loss or gradient norm became NaN/inf; the run stops before saving anything from that step."""


@dataclass
class TrainResult:
    output_dir: Path
    step: int
    loss: float | None
    final_dir: Path | None  # the exported model (None when stopped early by train.stop_at_step)
    skipped_rows: int
    finished_before: bool = False  # --resume found the run already finished; nothing was done


def num_negatives(cfg: Config) -> int:
    """Hard negatives per query: `data.num_hard_negatives` (at least 1) when `train.hard_negatives`."""
    if cfg.data.num_hard_negatives and not cfg.train.hard_negatives:
        raise ConfigError("data.num_hard_negatives is set but train.hard_negatives is false")
    return max(1, cfg.data.num_hard_negatives) if cfg.train.hard_negatives else 0


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB (process RSS)


class _Interval:
    """Per-step values summed between two log lines; `pop()` returns their means and starts over.

    Throughput is total work over total time; `data_hash` covers this rank's rows of every step of
    the interval, so two runs with the same data order log the same hashes.
    """

    def __init__(self) -> None:
        self.steps, self.loss, self.norm, self.norms = 0, 0.0, 0.0, 0
        self.time, self.data_time, self.samples, self.tokens = 0.0, 0.0, 0, 0
        self.hash = hashlib.blake2b(digest_size=6)

    def add(
        self,
        loss: float,
        norm: float | None,
        step_time: float,
        data_time: float,
        samples: int,
        tokens: int,
        rows: list,
    ) -> None:
        self.steps += 1
        self.loss += loss
        if norm is not None:
            self.norm, self.norms = self.norm + norm, self.norms + 1
        self.time += step_time
        self.data_time += data_time
        self.samples += samples
        self.tokens += tokens
        self.hash.update(repr(rows).encode())

    @property
    def mean_loss(self) -> float:
        return self.loss / max(1, self.steps)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.time if self.time else 0.0

    def pop(self) -> dict[str, Any]:
        record = {
            "loss": self.mean_loss,
            "grad_norm": self.norm / self.norms if self.norms else None,
            "samples_per_s": self.samples_per_s,
            "tokens_per_s": self.tokens / self.time if self.time else 0.0,
            "step_time": self.time / max(1, self.steps),
            "data_time": self.data_time / max(1, self.steps),
            "data_hash": self.hash.hexdigest(),
        }
        self.__init__()
        return record


class _Stopwatch:
    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


def _build_optimizer_and_scheduler(model: torch.nn.Module, cfg: Config, accelerator) -> tuple[Any, Any]:
    t = cfg.train
    ds_config = (
        accelerator.state.deepspeed_plugin.deepspeed_config if accelerator.state.deepspeed_plugin else {}
    )
    if "optimizer" in ds_config:  # DeepSpeed builds the optimizer; our schedule wraps it after prepare
        from accelerate.utils import DummyOptim, DummyScheduler  # exported only when deepspeed is installed

        optimizer = DummyOptim(param_groups(model, t.weight_decay), lr=t.lr, weight_decay=t.weight_decay)
        multiplier = lr_lambda(t.scheduler, t.warmup_steps, t.max_steps)
        scheduler = DummyScheduler(
            optimizer,
            total_num_steps=t.max_steps,
            warmup_num_steps=t.warmup_steps,
            lr_scheduler_callable=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, multiplier),
        )
        return optimizer, scheduler
    optimizer = build_optimizer(model, t)
    return optimizer, build_scheduler(optimizer, t)


@dataclass
class _Plan:
    checkpoint: Path | None = None
    state: dict[str, Any] | None = None
    changes: dict[str, list[Any]] | None = None
    finished: bool = False


def _plan_start(cfg: Config, num_processes: int) -> _Plan:
    """Decide, reading only, where the run starts: fresh, from which checkpoint (with which allowed
    changes), or not at all because it is finished. Refuses what cannot continue this run exactly."""
    t = cfg.train
    out = Path(t.output_dir)
    final = out / "final"
    finished = final.is_dir()  # complete: exports are swapped in whole (leftovers were tidied)
    if not (t.resume or t.resume_if_present):
        if list_checkpoints(out):
            raise ConfigError(
                f"{out} already holds checkpoints: pass --resume to continue, or choose another train.output_dir"
            )
        if finished:
            raise ConfigError(
                f"{out} holds a finished run ({final}): choose another train.output_dir, or remove it"
            )
        return _Plan()
    allowed = allowed_keys(cfg, num_processes)
    checkpoint, state = newest_readable_checkpoint(out, num_processes)
    if checkpoint is None:
        if finished:
            return _Plan(finished=True)
        if t.resume_if_present and not t.resume:
            logger.info("--resume-if-present: no checkpoint in %s, starting the run", out)
            return _Plan()
        raise ResumeError(
            f"--resume: {out} holds no complete checkpoint; start without --resume "
            "(or use --resume-if-present, which starts when there is nothing to resume)"
        )
    step = int(state["step"])
    stored_max = (state.get("run") or {}).get("train.max_steps", t.max_steps)
    if finished and not (step >= stored_max and t.max_steps > step and "train.max_steps" in allowed):
        # final/ exists only once max_steps was reached; only a longer run from its last step goes on
        return _Plan(checkpoint, state, finished=True)
    changes = check_changes(state.get("run"), run_definition(cfg, num_processes), allowed, checkpoint)
    if step > t.max_steps:
        raise ResumeError(f"{checkpoint} is at step {step}, past train.max_steps={t.max_steps}")
    if step == t.max_steps:
        logger.warning("%s is the last step, but final/ was never exported: exporting it now", checkpoint)
    return _Plan(checkpoint, state, changes)


def _apply_changed_hyperparameters(optimizer, scheduler, cfg: Config) -> None:
    """A resumed optimizer and schedule carry the checkpoint's lr, weight decay and betas; after an
    allowed change, put the configured ones in (the schedule's multiplier is already the new one)."""
    t = cfg.train
    inner = getattr(scheduler, "scheduler", scheduler)
    groups = optimizer.param_groups
    for i, group in enumerate(groups):
        group["initial_lr"] = t.lr
        group["betas"] = (t.adam_beta1, t.adam_beta2)
        group["eps"] = t.adam_eps
        if group.get("decay", i == 0 and len(groups) == 2):  # param_groups() marks the decayed group
            group["weight_decay"] = t.weight_decay
    if hasattr(inner, "base_lrs"):
        inner.base_lrs = [t.lr] * len(groups)
        for group, fn in zip(groups, inner.lr_lambdas):
            group["lr"] = t.lr * fn(inner.last_epoch)
        inner._last_lr = [g["lr"] for g in groups]


def train(cfg: Config, model: EmbeddingModel | None = None) -> TrainResult:
    """Run (or resume) training as configured; returns where the model went. Collective in distributed runs.

    `model`: an already built model to train instead of `EmbeddingModel.from_config(cfg.model)` (e.g. a
    randomly initialised full-size one for benchmarks).
    """
    t = cfg.train
    validate_config(cfg)
    accelerator = build_accelerator(cfg)
    main = accelerator.is_main_process
    out = Path(t.output_dir)
    if main:
        remove_stale_temporaries(out)  # what a kill during a save, prune or export left
    accelerator.wait_for_everyone()
    plan = _plan_start(cfg, accelerator.num_processes)
    if plan.finished:
        stored = (plan.state or {}).get("run") or {}
        step = int(stored.get("train.max_steps", t.max_steps))
        logger.info("run in %s is already finished (step %d); model in %s", out, step, out / "final")
        return TrainResult(out, step, None, out / "final", 0, finished_before=True)
    resume_from = plan.checkpoint
    sources = build_sources(cfg.data)  # data problems show before a large model is loaded
    negatives = num_negatives(cfg)

    set_seed(t.seed)
    if model is None:
        try:
            model = EmbeddingModel.from_config(cfg.model)
        except OSError as exc:  # a missing folder or file: the message names it
            raise ModelLoadError(f"cannot load the model: {exc}") from exc
    model.train()
    trainable_only = model.is_lora
    optimizer, scheduler = _build_optimizer_and_scheduler(model, cfg, accelerator)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if trainable_only:
        install_trainable_only_hook(accelerator)
    unwrapped: EmbeddingModel = accelerator.unwrap_model(model)

    start_step, state = 0, {}
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from, trainable_only=trainable_only)
        start_step = int(state["step"])
        if plan.changes:
            _apply_changed_hyperparameters(optimizer, scheduler, cfg)
        logger.info("resumed from %s at step %d", resume_from, start_step)

    loader, sampler = build_train_loader(
        cfg.data,
        sources,
        unwrapped.processor,
        per_device_batch_size=t.per_device_batch_size,
        num_negatives=negatives,
        max_length=cfg.model.max_length,
        seed=t.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        start_step=start_step,
        max_steps=t.max_steps,
    )
    changes = dict(plan.changes or {})
    if resume_from is not None:
        data_now = {DATA_ORDER_KEY: json.loads(json.dumps(sampler.state_dict()))}
        stored = {DATA_ORDER_KEY: state.get("data")} if state.get("data") is not None else data_now
        allowed = allowed_keys(cfg, accelerator.num_processes) | ({DATA_ORDER_KEY} if changes else set())
        changes.update(check_changes(stored, data_now, allowed, resume_from))
    definition = run_definition(cfg, accelerator.num_processes)
    if main:  # everything checked: from here on the run is what config.yaml says
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        event = {"event": "resume", "step": start_step, "checkpoint": str(resume_from), "changed": changes}
        append_history(out, event if resume_from is not None else {"event": "start", "step": 0})
    loss_fn = ContrastiveLoss(
        temperature=cfg.model.temperature,
        mask_false_negatives=t.mask_false_negatives,
        symmetric=t.symmetric_loss,
        hardness_alpha=t.hardness_alpha,
    )
    if t.matryoshka_dims:
        loss_fn = MatryoshkaLoss(loss_fn, t.matryoshka_dims, key="train.matryoshka_dims")
    grad_cache = GradCache(
        loss_fn,
        t.qry_chunk_size,
        t.tgt_chunk_size,
        accelerator=accelerator,
        split_fn=unwrapped.split_batch,
        qry_chunk_tokens=t.qry_chunk_tokens,
        tgt_chunk_tokens=t.tgt_chunk_tokens,
        group_by_length=t.chunk_by_length,
    )
    padding = PaddingMeter()
    float_dtype = deepspeed_float_dtype(accelerator)

    def _on_device(inputs: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if inputs is None else move_batch(inputs, accelerator.device, float_dtype)

    params = trainable_parameters(model)
    global_batch = t.per_device_batch_size * accelerator.num_processes

    metrics = MetricsLogger(
        out,
        report_to=t.report_to,
        run_name=t.run_name,
        config=to_dict(cfg),
        enabled=main,
        resume_step=start_step if resume_from is not None else None,
    )
    if main:
        n_trainable, n_total = parameter_counts(unwrapped)  # real sizes under ZeRO-3 too
        logger.info(
            "training %s: %d processes x %d = global batch %d, %d steps (%.2f epochs), %d of %d params trainable, %s",
            unwrapped.cfg.backbone,  # the detected one when model.backbone is empty
            accelerator.num_processes,
            t.per_device_batch_size,
            global_batch,
            t.max_steps,
            sampler.epochs(t.max_steps),
            n_trainable,
            n_total,
            accelerator.distributed_type.value,
        )
    stop_at = min(t.max_steps, t.stop_at_step) if t.stop_at_step else t.max_steps
    skipped_total = int(state.get("skipped_rows", 0))
    step, loss_value = start_step, None
    bar = tqdm(total=t.max_steps, initial=start_step, disable=not main, desc="train", dynamic_ncols=True)
    watch, interval = _Stopwatch(), _Interval()

    def checkpoint_state() -> dict[str, Any]:
        return {
            "data": sampler.state_dict(),
            "run": definition,
            "skipped_rows": skipped_total,
            "loss": loss_value,
        }

    try:
        batches = iter(loader)
        while step < stop_at:
            try:
                batch = next(batches)
            except UserError as exc:  # from a worker: its message is the worker's whole traceback
                raise unwrap_worker_error(exc) from None
            data_time = watch.lap()
            loss = grad_cache.step(
                model,
                _on_device(batch["qry"]),
                _on_device(batch["tgt"]),
                _on_device(batch["neg"]),
                qry_keys=batch["qry_keys"],
                tgt_keys=batch["tgt_keys"],
                neg_keys=batch["neg_keys"],
            )
            grad_norm = None
            if t.max_grad_norm:
                grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm)
            loss_value = float(loss)
            norm_value = float(grad_norm) if grad_norm is not None else None
            if not math.isfinite(loss_value) or (norm_value is not None and not math.isfinite(norm_value)):
                last = latest_checkpoint(out)
                metrics.log(
                    step + 1,
                    {"stopped": "non-finite loss", "loss": str(loss_value), "grad_norm": str(norm_value)},
                )
                raise NonFiniteLossError(
                    f"step {step + 1}: loss {loss_value}, grad norm {norm_value}: stopping; rows "
                    f"{[(src, r + 1) for src, r in batch['rows'][:8]]}{'...' if len(batch['rows']) > 8 else ''}; nothing from this step "
                    f"was saved, last good checkpoint: {last or 'none'}"
                )
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            counts = torch.tensor(
                [batch["num_tokens"], len(batch["skipped"]), *grad_cache.last_padding],
                device=accelerator.device,
            )
            counts = accelerator.reduce(counts, "sum")
            skipped_total += int(counts[1])
            padding.add(int(counts[2]), int(counts[3]))
            interval.add(
                loss_value,
                norm_value,
                data_time + watch.lap(),
                data_time,
                global_batch,
                int(counts[0]),
                batch["rows"],
            )
            if batch["skipped"] and main:
                logger.warning(
                    "step %d: skipped %d bad row(s), e.g. %s",
                    step,
                    len(batch["skipped"]),
                    batch["skipped"][0],
                )
            bar.update(1)
            bar.set_postfix(
                loss=f"{interval.mean_loss:.4f}",
                lr=f"{lr:.2e}",
                sps=f"{interval.samples_per_s:.1f}",
                pad=f"{int(counts[3])}/{int(counts[2] + counts[3])}",
                refresh=False,
            )
            if step % t.log_every == 0 or step == stop_at:
                record = interval.pop() | padding.pop()
                record.update(
                    lr=lr,
                    peak_mem_gb=_peak_memory_gb(accelerator.device),
                    epoch=sampler.epochs(step),
                    skipped_rows=skipped_total,
                )
                metrics.log(step, record)
            at_stop = step == stop_at
            if (t.save_every and (step % t.save_every == 0 or at_stop)) or (
                at_stop and stop_at < t.max_steps
            ):
                save_checkpoint(
                    accelerator,
                    out,
                    step,
                    checkpoint_state(),
                    keep_last=t.keep_last,
                    trainable_only=trainable_only,
                )
                watch.lap()  # saving is not part of the next step's time
    finally:
        bar.close()
        metrics.close()

    final_dir = export_model(accelerator, model, out, merged=t.save_merged) if step >= t.max_steps else None
    accelerator.wait_for_everyone()
    return TrainResult(out, step, loss_value, final_dir, skipped_total)


def export_model(accelerator, model: torch.nn.Module, output_dir: Path, *, merged: bool = False) -> Path:
    """Write `<output_dir>/final` (adapters, or the full model) and, with `merged`, `final_merged`.

    Collective: under ZeRO-3 every rank takes part in gathering the partitioned weights.
    """
    unwrapped: EmbeddingModel = accelerator.unwrap_model(model)
    gather: contextlib.AbstractContextManager = contextlib.nullcontext()
    if zero_stage(accelerator) == 3:
        gather = zero3_export(unwrapped)  # gathered weights, official key names
    final = output_dir / "final"
    with gather:
        if accelerator.is_main_process:
            unwrapped.save_pretrained(final)
            if merged and unwrapped.is_lora:
                unwrapped.save_pretrained(output_dir / "final_merged", merged=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        logger.info("exported model to %s", final)
    return final


__all__ = ["NonFiniteLossError", "TrainResult", "export_model", "num_negatives", "train"]
