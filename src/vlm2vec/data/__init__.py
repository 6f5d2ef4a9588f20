"""Training data: MMEB-train and custom pair files -> weighted, resumable global batches -> processed tensors.

Pipeline (one module per step):
- `mmeb_train.read_mmeb_train`, `pairs.read_pairs` -> `records.PairSource` (a table + column mapping);
- `mixing.MixtureBatchSampler`: weighted mixing in same-source runs, reshuffled per epoch, resumable
  at an exact step, each rank taking its slice of every global batch;
- `dataset.PairDataset`: row -> decoded images (`images.load_image`), bad rows raise `BadRowError`
  naming source/row/path, or are replaced and counted with `skip_bad_rows`;
- `collate.PairCollator`: calls the backbone processor inside DataLoader workers and adds content
  keys for false-negative masking;
- `loader.build_sources`, `loader.build_train_loader`: wire it up from a `DataConfig`.
"""

from .collate import PairCollator
from .dataset import Example, PairDataset
from .images import load_image
from .loader import build_sources, build_train_loader
from .mixing import MixtureBatchSampler
from .mmeb_train import available_subsets, read_mmeb_train
from .pairs import read_pairs, read_table
from .records import BadRowError, ColumnMap, PairRecord, PairSource, Side

__all__ = [
    "BadRowError",
    "ColumnMap",
    "Example",
    "MixtureBatchSampler",
    "PairCollator",
    "PairDataset",
    "PairRecord",
    "PairSource",
    "Side",
    "available_subsets",
    "build_sources",
    "build_train_loader",
    "load_image",
    "read_mmeb_train",
    "read_pairs",
    "read_table",
]
