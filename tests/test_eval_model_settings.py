"""A saved folder's settings run unless set explicitly; overrides are applied, reported and recorded."""

import json
from dataclasses import asdict

import pytest
import yaml

from vlm2vec.commands import parse_cli
from vlm2vec.config import Config, ConfigError, EvalConfig, ModelConfig
from vlm2vec.encoding import resolve_model_config

SAVED = ModelConfig(
    backbone="phi3_v", path="/base", max_length=40, num_crops=3, normalize=False, temperature=0.05
)


def _saved_folder(tmp_path, kind="full", cfg=SAVED):
    folder = tmp_path / f"saved-{kind}"
    folder.mkdir(parents=True)
    (folder / "vlm2vec.json").write_text(json.dumps({"format": 1, "kind": kind, "model": asdict(cfg)}))
    return folder


def explicit_keys(path, overrides):
    """The keys the YAML file or a flag set, as the command line reports them."""
    return parse_cli(([f"--config={path}"] if path else []) + overrides).explicit


def test_explicit_keys_from_yaml_file_and_overrides(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("model:\n  path: x\n  dtype: bfloat16\neval:\n  data_dir: d\n")
    keys = explicit_keys(file, ["--model.max_length=128", "--eval.ties=strict", "--model={num_crops: 2}"])
    # a mapping flag replaces the whole section (the file's model keys and the earlier flag are gone)
    assert keys == {"eval.data_dir", "eval.ties", "model.num_crops"}
    assert explicit_keys(file, ["--model.max_length=128"]) == {
        "model.path",
        "model.dtype",
        "eval.data_dir",
        "model.max_length",
    }
    assert explicit_keys(None, []) == set()


def test_saved_folder_settings_run_unless_explicit(tmp_path):
    folder = _saved_folder(tmp_path)
    requested = ModelConfig(path=str(folder), max_length=100, num_crops=8, dtype="bfloat16")
    plain = resolve_model_config(requested, {"model.path"})
    assert (plain.cfg.max_length, plain.cfg.num_crops, plain.cfg.normalize, plain.cfg.backbone) == (
        40,
        3,
        False,
        "phi3_v",
    )
    assert plain.cfg.dtype == "float32" and plain.cfg.path == str(folder) and plain.overrides == {}
    assert plain.saved_from == str(folder / "vlm2vec.json")

    over = resolve_model_config(
        requested, {"model.path", "model.max_length", "model.num_crops", "model.temperature"}
    )
    assert (over.cfg.max_length, over.cfg.num_crops, over.cfg.dtype) == (100, 8, "float32")
    assert over.overrides == {"max_length": {"saved": 40, "used": 100}, "num_crops": {"saved": 3, "used": 8}}
    assert over.ignored == ["temperature"] and "max_length: 40 -> 100 (override)" in over.describe()


def test_adapter_form_uses_the_adapters_saved_settings(tmp_path):
    ckpt = _saved_folder(tmp_path, kind="adapter", cfg=ModelConfig(**{**asdict(SAVED), "lora": True}))
    base = tmp_path / "base"
    base.mkdir()
    requested = ModelConfig(path=str(base), checkpoint=str(ckpt), lora=True)
    run = resolve_model_config(requested, {"model.path", "model.checkpoint"}).cfg
    assert (run.path, run.checkpoint) == (str(base), str(ckpt))
    assert (run.max_length, run.num_crops, run.normalize) == (40, 3, False)
    assert run.lora is False  # evaluation loads the adapter frozen, never adds a fresh one

    # the same adapter given as model.path finds its base from vlm2vec.json
    moved = _saved_folder(
        tmp_path / "m", kind="adapter", cfg=ModelConfig(**{**asdict(SAVED), "path": str(base)})
    )
    run = resolve_model_config(ModelConfig(path=str(moved)), {"model.path"}).cfg
    assert (run.path, run.checkpoint, run.num_crops) == (str(base), str(moved), 3)
    gone = _saved_folder(
        tmp_path / "g", kind="adapter", cfg=ModelConfig(**{**asdict(SAVED), "path": "/nope"})
    )
    with pytest.raises(ConfigError, match=f"--model.checkpoint={gone}"):
        resolve_model_config(ModelConfig(path=str(gone)), set())


def test_folder_without_saved_settings_runs_as_requested(tmp_path):
    requested = ModelConfig(path=str(tmp_path), max_length=77)
    resolved = resolve_model_config(requested, set())
    assert resolved.cfg == requested and resolved.saved_from is None
    with pytest.raises(ConfigError, match="max_lenght"):
        resolve_model_config(requested, {"model.max_lenght"})


@pytest.mark.slow
def test_override_of_max_length_and_num_crops_on_a_saved_folder_changes_what_runs(tmp_path, monkeypatch):
    import vlm2vec.evaluation.runner as runner
    from vlm2vec.model import EmbeddingModel
    from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config
    from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

    data = write_synthetic_mmeb_eval(
        tmp_path / "data", datasets={"MSCOCO_i2t": "retrieval_i2t"}, num_queries=2, num_candidates=2, seed=1
    )
    base = make_tiny_checkpoint("phi3_v", tmp_path / "base")
    saved = EmbeddingModel.from_config(
        tiny_model_config("phi3_v", base, num_crops=3, max_length=40)
    ).save_pretrained(tmp_path / "saved")
    seen = []
    real = runner.evaluate_model

    def spy(model, eval_cfg, **kw):
        seen.append((model.cfg.max_length, model.cfg.num_crops, model.processor.num_crops))
        return real(model, eval_cfg, **kw)

    monkeypatch.setattr(runner, "evaluate_model", spy)

    def run(out, explicit, **model_kw):
        cfg = Config(
            model=ModelConfig(path=str(saved), **model_kw),
            eval=EvalConfig(data_dir=str(data), output_dir=str(out), datasets=["MSCOCO_i2t"]),
        )
        summary = runner.run_evaluation(cfg, explicit)
        return summary, yaml.safe_load((out / "config.yaml").read_text())["model"]

    plain, plain_yaml = run(tmp_path / "plain", {"model.path"}, max_length=256, num_crops=4)
    over, over_yaml = run(
        tmp_path / "over", {"model.path", "model.max_length", "model.num_crops"}, max_length=16, num_crops=1
    )
    assert seen == [(40, 3, 3), (16, 1, 1)]  # the saved settings, then the overrides, really ran
    assert (plain_yaml["max_length"], plain_yaml["num_crops"]) == (40, 3)
    assert (over_yaml["max_length"], over_yaml["num_crops"]) == (16, 1)
    assert plain["model_settings"]["overrides"] == {}
    assert over["model_settings"]["overrides"] == {
        "max_length": {"saved": 40, "used": 16},
        "num_crops": {"saved": 3, "used": 1},
    }
    assert over["model_fingerprint"] != plain["model_fingerprint"]
    assert over["config"]["model"]["num_crops"] == 1


def test_a_qwen3_vl_embedding_base_folder_evaluates_in_its_own_format(tmp_path):
    """evaluate.py / embed / mine open a base folder with the settings it implies, as from_pretrained
    does (a Qwen3-VL-Embedding release: its prompt format); an explicit key still wins."""
    from vlm2vec.encoding import load_embedding_model
    from vlm2vec.testing import make_tiny_checkpoint

    release = make_tiny_checkpoint("qwen3_vl", tmp_path / "Qwen3-VL-Embedding-tiny")
    cfg = json.loads((release / "config.json").read_text())
    (release / "config.json").write_text(json.dumps({**cfg, "architectures": ["Qwen3VLForEmbedding"]}))
    model, resolved = load_embedding_model(ModelConfig(path=str(release)), {"model.path"})
    assert model.cfg.prompt_format == "qwen3_vl_embedding" == model.processor.format_name
    assert resolved.report()["folder_defaults"] == {"prompt_format": "qwen3_vl_embedding"}
    assert "implied by the folder" in resolved.describe()
    model, resolved = load_embedding_model(
        ModelConfig(path=str(release), prompt_format="vlm2vec"), {"model.path", "model.prompt_format"}
    )
    assert model.cfg.prompt_format == "vlm2vec" and resolved.folder_defaults == {}
