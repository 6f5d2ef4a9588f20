"""Training: the accelerate loop (`loop.train`), optimiser and schedules, atomic checkpoints, metrics.

- `loop.train(cfg) -> TrainResult`: build model, data, optimizer; run GradCache steps; checkpoint every
  `train.save_every` steps (keeping `train.keep_last`); export `<output_dir>/final` (adapters or full
  model, `final_merged` with `train.save_merged`) that `EmbeddingModel.from_pretrained` opens.
- `engine`: the Accelerator for plain / DDP / DeepSpeed / FSDP2 launches; `fsdp2`, `fsdp2_state`: FSDP2's
  sharding and sharded checkpoints; `optim`: AdamW + warm-up schedules;
  `checkpoint`: atomic save / verified load; `resume`: what defines a run and the `--resume` check;
  `logging`: JSONL + wandb or TensorBoard; `progress`: the bar and the per-interval metrics lines;
  `export`: the final model folder.
"""

from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .export import export_model
from .loop import NonFiniteLossError, TrainResult, train

__all__ = [
    "NonFiniteLossError",
    "TrainResult",
    "export_model",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
