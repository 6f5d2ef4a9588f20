"""Embedding with `EmbeddingModel` needs none of the `train` extra: DeepSpeed, wandb and TensorBoard are
training-only dependencies, kept out of the core install (pyproject's `train` extra)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ONLY = ("deepspeed", "wandb", "tensorboard")


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for r in requirements}


def test_training_only_dependencies_are_an_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    assert not core & set(TRAIN_ONLY), f"training-only packages in the core install: {core & set(TRAIN_ONLY)}"
    assert set(TRAIN_ONLY) <= _names(project["optional-dependencies"]["train"])


def test_embedding_runs_without_the_train_extra(tmp_path):
    """A process in which importing deepspeed, wandb or tensorboard fails embeds images and text."""
    script = textwrap.dedent(
        f"""
        import sys
        for name in {TRAIN_ONLY!r} + ("torch.utils.tensorboard",):
            sys.modules[name] = None  # `import name` now raises ImportError
        from PIL import Image
        from vlm2vec import EmbeddingModel
        from vlm2vec.testing import make_tiny_checkpoint
        folder = make_tiny_checkpoint("qwen2_vl", {str(tmp_path / "tiny")!r})
        model = EmbeddingModel.from_pretrained(str(folder), dtype="float32")
        reps = model.embed(["<|image_1|> a picture", "a red circle"], [[Image.new("RGB", (32, 32))], []])
        assert reps.shape[0] == 2, reps.shape
        loaded = sorted(n for n in {TRAIN_ONLY!r} if sys.modules.get(n) is not None)
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_a_missing_training_package_is_one_line_naming_the_setting_and_the_extra(tmp_path, monkeypatch):
    from vlm2vec.errors import MissingExtraError, UserError
    from vlm2vec.training.logging import MetricsLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were absent
    with pytest.raises(MissingExtraError) as info:
        MetricsLogger(tmp_path, report_to="tensorboard", config={}, run_name="r")
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "train.report_to=tensorboard" in message and "pip install 'vlm2vec[train]'" in message
    assert "\n" not in message
