"""Fine-tuning an embedding model in its own format: training from a Qwen3-VL-Embedding base uses its
prompt format unless the config sets one, as evaluation does; the recipe that does it loads."""

from __future__ import annotations

import json
import shutil

import pytest

from vlm2vec.commands import parse_cli
from vlm2vec.training.loop import with_base_folder_defaults


def _release(tmp_path, tiny_checkpoint):
    """A tiny Qwen3-VL folder that says it is a Qwen3-VL-Embedding release."""
    release = tmp_path / "Qwen3-VL-Embedding"
    shutil.copytree(tiny_checkpoint("qwen3_vl"), release)
    cfg = json.loads((release / "config.json").read_text())
    (release / "config.json").write_text(json.dumps({**cfg, "architectures": ["Qwen3VLForEmbedding"]}))
    return release


def test_training_from_a_qwen3_vl_embedding_base_uses_its_prompt_format_unless_set(tmp_path, tiny_checkpoint):
    release = _release(tmp_path, tiny_checkpoint)
    implied = parse_cli([f"--model.path={release}"])
    assert with_base_folder_defaults(implied.config, implied.explicit).model.prompt_format == (
        "qwen3_vl_embedding"
    )
    chosen = parse_cli([f"--model.path={release}", "--model.prompt_format=vlm2vec"])
    assert with_base_folder_defaults(chosen.config, chosen.explicit).model.prompt_format == "vlm2vec"
    plain = parse_cli([f"--model.path={tiny_checkpoint('qwen3_vl')}"])
    assert with_base_folder_defaults(plain.config, plain.explicit).model.prompt_format == "vlm2vec"


def test_the_qwen3_vl_embedding_lora_recipe_trains_in_its_format_with_lora(tmp_path, tiny_checkpoint):
    release = _release(tmp_path, tiny_checkpoint)
    parsed = parse_cli(["--config=configs/train/qwen3vl_embedding_lora.yaml", f"--model.path={release}"])
    cfg = with_base_folder_defaults(parsed.config, parsed.explicit)
    assert cfg.model.prompt_format == "qwen3_vl_embedding"
    assert cfg.model.lora and cfg.model.lora_r == 32 and cfg.data.pairs


def test_train_runs_with_the_prompt_format_the_base_implies(tmp_path, tiny_checkpoint, monkeypatch):
    import vlm2vec.training.loop as loop

    seen = {}

    class Stop(Exception):
        pass

    def capture(cfg):  # the first thing train() builds from the resolved config
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(loop, "build_accelerator", capture)
    parsed = parse_cli([f"--model.path={_release(tmp_path, tiny_checkpoint)}"])
    with pytest.raises(Stop):
        loop.train(parsed.config, validated=True, explicit=parsed.explicit)
    assert seen["cfg"].model.prompt_format == "qwen3_vl_embedding"
