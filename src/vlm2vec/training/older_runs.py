"""Checkpoints written by older versions, read in today's terms, so that they resume without
`--allow-changed` when nothing that a step computes has changed.

Two things age in a stored run definition: a setting added since (the older version behaved as its
default, which is how every new setting is introduced) and a setting renamed since (its value is
translated). The sampler's stored data order ages the same way.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import Config, to_dict

#: old key -> (new key, old value -> new value)
RENAMED_SETTINGS: dict[str, tuple[str, dict[Any, Any]]] = {
    # one source per global batch (true) or i.i.d. rows (false): the same batches as these presets
    "data.per_source_batches": ("data.sub_batch", {True: "source", False: "iid"}),
}


def _defaults(cfg: Config) -> dict[str, Any]:
    """`section.key -> default` of the run-defining sections, flattened as `run_definition` flattens."""
    flat = {
        f"{section}.{key}": value
        for section in ("model", "data", "train")
        for key, value in to_dict(type(getattr(cfg, section))()).items()
    }
    return json.loads(json.dumps(flat))


def current_definition(
    stored: dict[str, Any] | None, cfg: Config, not_defining: frozenset[str]
) -> dict[str, Any] | None:
    """A stored run definition with renamed keys translated and run-defining keys added since at their
    defaults (`not_defining`: the keys that are never part of a definition)."""
    if stored is None:
        return None
    run = dict(stored)
    for old, (new, values) in RENAMED_SETTINGS.items():
        if old in run and new not in run and run[old] in values:
            run[new] = values[run.pop(old)]
    for key, default in _defaults(cfg).items():
        if key not in not_defining and key not in run:
            run[key] = default
    return run


def current_data_order(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sampler's stored fingerprint in today's terms (`per_source_batches` -> `run_length`; no
    `weight_mode`: weights scaled rows)."""
    if stored is None:
        return None
    order = {**stored}
    if "per_source_batches" in order:
        whole_batch = order.pop("per_source_batches")
        order["run_length"] = order["global_batch_size"] if whole_batch else 1
    order.setdefault("weight_mode", "rows")
    return order
