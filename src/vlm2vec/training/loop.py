"""The training loop: data -> GradCache step -> clip -> AdamW step -> schedule, with checkpoints and logs.

One global step = one global batch (`per_device_batch_size` x processes) = one optimizer step. The
backward is always `GradCache.step` (plain when every side fits in one chunk), for one process, DDP and
DeepSpeed alike. Everything that depends on the data order (the sampler) is a pure function of the
seed and the step, and everything else that is random (dropout) is restored from the checkpoint's RNG
states, so `--resume` continues exactly where the checkpoint left off; `resume.RunStart` checks that
the run is the same one (or that each difference was allowed).

Nothing is written before the config, the data sources and the model have been checked: the output
folder is only claimed (`outputs.claim_output`: a lock file, no second writer), and `owner.json`,
`config.yaml` (what runs from this start on) and `history.jsonl` appear just before step one. SIGINT
and SIGTERM stop the run at the next step boundary (the same one on every rank), with a checkpoint and
the resume command (`outputs.Interrupted`, exit status 130 / 143).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..config import Config, ConfigError, to_dict, validate_config
from ..data import build_sources, build_train_loader
from ..encoding.model_loading import ResolvedModel, apply_folder_defaults, default_explicit_keys
from ..errors import ModelLoadError, UserError, unwrap_worker_error
from ..gradcache import GradCache
from ..losses import build_loss
from ..model import EmbeddingModel, move_batch
from ..outputs import Interrupted, OutputClaim, claim_output, rerun_command, stop_at_step_boundary
from .checkpoint import install_trainable_only_hook, latest_checkpoint, save_checkpoint
from .engine import build_accelerator, deepspeed_float_dtype, fsdp2_requested
from .export import export_model
from .fsdp2 import is_sharded
from .fsdp2_state import prepare_fsdp2
from .logging import MetricsLogger
from .optim import build_optimizer_and_scheduler, parameter_counts, trainable_parameters
from .progress import TrainingProgress
from .resume import RunStart

logger = logging.getLogger(__name__)

LossFn = Callable[..., torch.Tensor]


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


def train(
    cfg: Config,
    model: EmbeddingModel | None = None,
    loss_fn: LossFn | None = None,
    *,
    validated: bool = False,
    explicit: set[str] | None = None,
) -> TrainResult:
    """Run (or resume) training as configured; returns where the model went. Collective in distributed runs.

    `model`: an already built model to train instead of `EmbeddingModel.from_config(cfg.model)` (e.g. a
    randomly initialised full-size one for benchmarks). `loss_fn`: the loss instead of
    `build_loss(cfg)`. `validated`: the config came from `load_config`, which checked it; a config built
    in code is checked here. `explicit`: the keys the YAML file or a flag set (None: those that differ
    from the defaults); the base model folder's own settings apply to the others, as at evaluation.
    """
    if not validated:
        validate_config(cfg)
    cfg = with_base_folder_defaults(cfg, explicit)
    accelerator = build_accelerator(cfg)
    out = Path(cfg.train.output_dir)
    claim = claim_output(
        out,
        "train",
        {},  # which run it continues is the resume contract's to check (resume.RunStart)
        details={"model": cfg.model.path},
        key="train.output_dir",
        main=accelerator.is_main_process,
        continue_hint=f"stopped outside a step; the newest checkpoint in {out} (if any) is kept: "
        f"continue with {rerun_command('--resume-if-present')}",
    )
    with claim:
        return _train(cfg, accelerator, claim, model, loss_fn)


def _train(
    cfg: Config,
    accelerator: Accelerator,
    claim: OutputClaim,
    model: EmbeddingModel | None,
    loss_fn: LossFn | None,
) -> TrainResult:
    """`train` in the claimed output folder."""
    t, out = cfg.train, Path(cfg.train.output_dir)
    start = RunStart.decide(cfg, accelerator)
    if start.finished:
        return _already_finished(start)
    sources = build_sources(cfg.data)  # data problems show before a large model is loaded
    negatives = num_negatives(cfg)

    set_seed(t.seed)
    model, optimizer, scheduler = _prepare_model(cfg, accelerator, model)
    unwrapped: EmbeddingModel = accelerator.unwrap_model(model)
    trainable_only = unwrapped.is_lora  # checkpoints then hold only the trainable weights
    start.restore(accelerator, optimizer, scheduler, trainable_only=trainable_only)
    loader, sampler = _train_loader(cfg, sources, unwrapped, negatives, accelerator, start.step)
    start.check_data_order(sampler.state_dict())
    if accelerator.is_main_process:  # everything checked: from here on the run is what config.yaml says
        claim.record()
        start.record()

    loss_fn = build_loss(cfg) if loss_fn is None else loss_fn
    steps = _TrainingStep(cfg, accelerator, model, optimizer, scheduler, loss_fn)
    progress = _start_progress(cfg, accelerator, start, unwrapped, sampler.epochs)
    stop_at = progress.stop_at
    step, loss = start.step, None
    with stop_at_step_boundary() as stop:  # workers forked from here on inherit the handlers
        try:
            for batch in _batches(loader, stop_at - step):
                data_time = progress.lap()
                loss, norm = steps.backward(batch)
                if not math.isfinite(loss) or (norm is not None and not math.isfinite(norm)):
                    progress.stopped(step + 1, loss, norm)
                    raise NonFiniteLossError(_non_finite_message(step + 1, loss, norm, batch, out))
                lr = steps.update()
                step += 1
                masked = getattr(loss_fn, "masked", None) if t.mask_false_negatives else None
                progress.step_done(step, loss, norm, lr, data_time, steps.counts(batch), batch, masked)
                signum = _agreed_stop(accelerator, stop.signum)
                if _checkpoint_due(cfg, step, stop_at) or signum:
                    state = start.checkpoint_state(sampler.state_dict(), progress.skipped_rows, loss)
                    saved = save_checkpoint(
                        accelerator, out, step, state, keep_last=t.keep_last, trainable_only=trainable_only
                    )
                    progress.lap()  # saving is not part of the next step's time
                if signum:
                    raise Interrupted(
                        signum,
                        f"checkpoint of step {step} saved in {saved}; resume with: {rerun_command('--resume')}",
                    )
        finally:
            progress.close()

    final_dir = export_model(accelerator, model, out, merged=t.save_merged) if step >= t.max_steps else None
    accelerator.wait_for_everyone()
    return TrainResult(out, step, loss, final_dir, progress.skipped_rows)


def with_base_folder_defaults(cfg: Config, explicit: set[str] | None = None) -> Config:
    """The config with the settings the base folder implies (`Backbone.folder_defaults`: a
    Qwen3-VL-Embedding base trains in its own prompt format) for the model keys not set explicitly."""
    keys = default_explicit_keys(cfg.model) if explicit is None else explicit
    resolved = apply_folder_defaults(ResolvedModel(cfg.model), keys)
    if not resolved.folder_defaults:
        return cfg
    logger.info("%s", resolved.describe())
    return dataclasses.replace(cfg, model=resolved.cfg)


def _already_finished(start: RunStart) -> TrainResult:
    out = Path(start.cfg.train.output_dir)
    logger.info(
        "run in %s is already finished (step %d); model in %s", out, start.finished_step, out / "final"
    )
    return TrainResult(out, start.finished_step, None, out / "final", 0, finished_before=True)


def _prepare_model(
    cfg: Config, accelerator: Accelerator, model: EmbeddingModel | None
) -> tuple[Any, Any, Any]:
    """The model (loaded unless given) in training mode, its optimizer and schedule, all prepared for
    the launch; a LoRA model's checkpoints keep only its trainable weights."""
    if model is None:
        try:
            model = EmbeddingModel.from_config(cfg.model)
        except OSError as exc:  # a missing folder or file: the message names it
            raise ModelLoadError(f"cannot load the model: {exc}") from exc
    model.train()
    if fsdp2_requested(cfg.train):
        return prepare_fsdp2(cfg, accelerator, model)
    optimizer, scheduler = build_optimizer_and_scheduler(model, cfg.train, accelerator)
    prepared = accelerator.prepare(model, optimizer, scheduler)
    if model.is_lora:
        install_trainable_only_hook(accelerator)
    return prepared


def _train_loader(
    cfg: Config,
    sources: list,
    model: EmbeddingModel,
    negatives: int,
    accelerator: Accelerator,
    start_step: int,
) -> tuple[Any, Any]:
    """This rank's loader of global batches from `start_step` on, and the sampler behind it."""
    return build_train_loader(
        cfg.data,
        sources,
        model.processor,
        per_device_batch_size=cfg.train.per_device_batch_size,
        num_negatives=negatives,
        max_length=cfg.model.max_length,
        seed=cfg.train.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        start_step=start_step,
        max_steps=cfg.train.max_steps,
        multi_positive=cfg.train.multi_positive,
    )


def _batches(loader: Any, count: int) -> Iterator[dict[str, Any]]:
    """The next `count` batches; a data worker's error is raised as the worker's own."""
    batches = iter(loader)
    for _ in range(count):
        try:
            batch = next(batches)
        except UserError as exc:  # from a worker: its message is the worker's whole traceback
            raise unwrap_worker_error(exc) from None
        yield batch


class _TrainingStep:
    """One global step: `backward` (GradCache, then clipping), then `update` (optimizer and schedule)."""

    def __init__(
        self,
        cfg: Config,
        accelerator: Accelerator,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        loss_fn: LossFn,
    ) -> None:
        t = cfg.train
        self.accelerator, self.model, self.optimizer, self.scheduler = (
            accelerator,
            model,
            optimizer,
            scheduler,
        )
        self.grad_cache = GradCache(
            loss_fn,
            t.qry_chunk_size,
            t.tgt_chunk_size,
            accelerator=accelerator,
            split_fn=accelerator.unwrap_model(model).split_batch,
            qry_chunk_tokens=t.qry_chunk_tokens,
            tgt_chunk_tokens=t.tgt_chunk_tokens,
            group_by_length=t.chunk_by_length,
        )
        self.float_dtype = deepspeed_float_dtype(accelerator)
        self.params = trainable_parameters(model)
        self.max_grad_norm = t.max_grad_norm

    def _on_device(self, inputs: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if inputs is None else move_batch(inputs, self.accelerator.device, self.float_dtype)

    def backward(self, batch: dict[str, Any]) -> tuple[float, float | None]:
        """Gradients of the global batch's loss; returns the loss and the gradient norm before clipping."""
        loss = self.grad_cache.step(
            self.model,
            self._on_device(batch["qry"]),
            self._on_device(batch["tgt"]),
            self._on_device(batch["neg"]),
            qry_keys=batch["qry_keys"],
            tgt_keys=batch["tgt_keys"],
            neg_keys=batch["neg_keys"],
            tgt_owner=batch["tgt_owner"],
        )
        grad_norm = None
        if self.max_grad_norm:
            grad_norm = self.accelerator.clip_grad_norm_(self.params, self.max_grad_norm)
        return float(loss), float(grad_norm) if grad_norm is not None else None

    def update(self) -> float:
        """Apply the gradients; returns the lr they were applied with."""
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr

    def counts(self, batch: dict[str, Any]) -> list[int]:
        """Tokens, skipped rows, real and padded tokens of the step, summed over the ranks."""
        counts = torch.tensor(
            [batch["num_tokens"], len(batch["skipped"]), *self.grad_cache.last_padding],
            device=self.accelerator.device,
        )
        return [int(c) for c in self.accelerator.reduce(counts, "sum")]


def _start_progress(
    cfg: Config,
    accelerator: Accelerator,
    start: RunStart,
    model: EmbeddingModel,
    epochs: Callable[[int], float],
) -> TrainingProgress:
    """Open the metrics sinks, log what is trained and how, and start the progress bar."""
    t, main = cfg.train, accelerator.is_main_process
    resuming = start.checkpoint is not None
    metrics = MetricsLogger(
        t.output_dir,
        report_to=t.report_to,
        run_name=t.run_name,
        config=to_dict(cfg),
        enabled=main,
        resume_step=start.step if resuming else None,
    )
    global_batch = t.per_device_batch_size * accelerator.num_processes
    if main:
        n_trainable, n_total = parameter_counts(model)  # real sizes under ZeRO-3 too
        logger.info(
            "training %s: %d processes x %d = global batch %d, %d steps (%.2f epochs), %d of %d params trainable, %s",
            model.cfg.backbone,  # the detected one when model.backbone is empty
            accelerator.num_processes,
            t.per_device_batch_size,
            global_batch,
            t.max_steps,
            epochs(t.max_steps),
            n_trainable,
            n_total,
            "FSDP2" if is_sharded(model) else accelerator.distributed_type.value,
        )
    return TrainingProgress(
        metrics,
        start_step=start.step,
        stop_at=min(t.max_steps, t.stop_at_step) if t.stop_at_step else t.max_steps,
        max_steps=t.max_steps,
        log_every=t.log_every,
        global_batch=global_batch,
        skipped_rows=int(start.state.get("skipped_rows", 0)),
        device=accelerator.device,
        epochs=epochs,
        enabled=main,
    )


def _agreed_stop(accelerator: Accelerator, signum: int) -> int:
    """The stop signal any rank received (0: none), the same on every rank: all stop at the same step
    boundary, or the checkpoint's collectives would wait forever for the ranks that went on."""
    if accelerator.num_processes == 1:
        return signum
    flags = accelerator.gather(torch.tensor([signum], device=accelerator.device))
    return int(flags.max())


def _checkpoint_due(cfg: Config, step: int, stop_at: int) -> bool:
    """Every `train.save_every` steps and at the last step, and always when `train.stop_at_step` stops early."""
    t, at_stop = cfg.train, step == stop_at
    return bool(t.save_every and (step % t.save_every == 0 or at_stop)) or (at_stop and stop_at < t.max_steps)


def _non_finite_message(step: int, loss: float, norm: float | None, batch: dict[str, Any], out: Path) -> str:
    rows = batch["rows"]
    shown = f"{[(src, r + 1) for src, r in rows[:8]]}{'...' if len(rows) > 8 else ''}"
    return (
        f"step {step}: loss {loss}, grad norm {norm}: stopping; rows {shown}; nothing from this step "
        f"was saved, last good checkpoint: {latest_checkpoint(out) or 'none'}"
    )


__all__ = ["NonFiniteLossError", "TrainResult", "num_negatives", "train"]
