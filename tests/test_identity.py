"""Wrong results never pass silently: an adapter refuses a base it was not trained on (same shapes or
not), a setting the chosen backbone or mode would ignore is an error (one rule over the schema), a
warm-up longer than the run is an error, and a finished run asked for another length is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm2vec.base_identity import base_fingerprint
from vlm2vec.config import Config, ConfigError, ModelConfig, TrainConfig, validate_config
from vlm2vec.errors import ModelLoadError, ResumeError
from vlm2vec.model import META_FILE, EmbeddingModel
from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config


@pytest.fixture(scope="module")
def bases(tiny_qwen_dir, tmp_path_factory) -> dict[str, Path]:
    """The adapter's base, another base of the same shapes (other weights) and one of other shapes."""
    root = tmp_path_factory.mktemp("bases")
    return {
        "trained_on": tiny_qwen_dir,
        "same_shape": make_tiny_checkpoint("qwen2_vl", root / "same_shape", seed=1),
        "other_shape": make_tiny_checkpoint("qwen2_vl", root / "other_shape", hidden_size=32),
    }


@pytest.fixture(scope="module")
def adapter(bases, tmp_path_factory) -> Path:
    cfg = tiny_model_config("qwen2_vl", bases["trained_on"], lora=True, lora_r=4)
    model = EmbeddingModel.from_config(cfg)
    return model.save_pretrained(tmp_path_factory.mktemp("adapter") / "final")


def test_an_adapter_records_its_base_and_opens_over_a_copy_of_it(adapter, bases, tmp_path):
    import shutil

    record = json.loads((adapter / META_FILE).read_text())["base"]
    assert record["fingerprint"] == base_fingerprint(bases["trained_on"])
    copy = shutil.copytree(bases["trained_on"], tmp_path / "copied_base")  # another path, same model
    model = EmbeddingModel.from_pretrained(adapter, path=str(copy))
    assert model.is_lora


@pytest.mark.parametrize("other", ["same_shape", "other_shape"])
def test_an_adapter_over_another_base_is_refused_naming_both(adapter, bases, other):
    with pytest.raises(ModelLoadError) as err:
        EmbeddingModel.from_pretrained(adapter, path=str(bases[other]))
    message = str(err.value)
    assert str(adapter) in message and str(bases[other]) in message and "\n" not in message
    assert str(Path(bases["trained_on"]).resolve()) in message


def test_an_adapter_without_a_record_over_other_shapes_fails_in_one_line(adapter, bases, tmp_path):
    import shutil

    old = shutil.copytree(adapter, tmp_path / "old_adapter")  # saved before the record existed
    meta = json.loads((old / META_FILE).read_text())
    del meta["base"]
    (old / META_FILE).write_text(json.dumps(meta))
    assert EmbeddingModel.from_pretrained(old, path=str(bases["same_shape"])).is_lora  # loads as before
    with pytest.raises(ModelLoadError, match=r"adapter_model\.safetensors: adapter does not fit the base"):
        EmbeddingModel.from_pretrained(old, path=str(bases["other_shape"]))


def test_an_adapter_evaluated_drops_its_lora_settings_but_an_ignored_override_is_refused(adapter):
    from vlm2vec.encoding import load_embedding_model

    _, resolved = load_embedding_model(ModelConfig(path=str(adapter)), {"model.path"})
    assert resolved.cfg.checkpoint == str(adapter) and resolved.cfg.lora_r == ModelConfig().lora_r
    asked = ModelConfig(path=str(adapter), num_crops=2)  # not read by Qwen2-VL: refused, not dropped
    with pytest.raises(ConfigError, match=r"model\.num_crops=2: the qwen2_vl backbone does not read"):
        load_embedding_model(asked, {"model.path", "model.num_crops"})


@pytest.mark.parametrize(
    "model, key",
    [
        (ModelConfig(backbone="qwen2_vl", num_crops=2), "model.num_crops"),
        (ModelConfig(backbone="phi3_v", max_pixels=1000), "model.max_pixels"),
        (ModelConfig(backbone="phi3_v", prompt_format="native"), "model.prompt_format"),
        (ModelConfig(backbone="qwen2_vl", image_resolution="low"), "model.image_resolution"),
        (ModelConfig(lora_r=16), "model.lora_r"),
        (ModelConfig(use_dora=True), "model.use_dora"),
    ],
)
def test_a_model_setting_the_backbone_or_mode_ignores_is_an_error(model, key):
    with pytest.raises(ConfigError) as err:
        validate_config(Config(model=model))
    assert err.value.key == key and "remove it" in str(err.value)


def test_the_same_settings_where_they_apply_are_accepted():
    for model in (
        ModelConfig(backbone="phi3_v", num_crops=2),
        ModelConfig(backbone="qwen3_vl", max_pixels=1000, prompt_format="native"),
        ModelConfig(lora=True, lora_r=16, use_dora=True),
        ModelConfig(num_crops=2),  # backbone detected from the folder later: checked when the model loads
    ):
        validate_config(Config(model=model))


def test_a_setting_the_detected_backbone_ignores_is_refused_when_the_model_loads(tiny_qwen_dir):
    cfg = tiny_model_config("qwen2_vl", tiny_qwen_dir, num_crops=2)
    cfg.backbone = ""  # detected from config.json
    with pytest.raises(ConfigError, match=r"model\.num_crops=2: the qwen2_vl backbone does not read"):
        EmbeddingModel.from_config(cfg)


def test_an_embed_path_for_the_training_source_is_an_error():
    from vlm2vec.config import EmbedConfig

    with pytest.raises(ConfigError, match=r"embed\.path is read only with embed\.source=images or texts"):
        validate_config(Config(embed=EmbedConfig(path="corpus.txt")))


def test_a_run_name_without_a_metrics_backend_is_an_error():
    with pytest.raises(ConfigError, match=r"train\.run_name is read only with train\.report_to="):
        validate_config(Config(train=TrainConfig(run_name="x", report_to="none")))


def test_a_warm_up_longer_than_the_run_is_an_error():
    with pytest.raises(ConfigError, match=r"train\.warmup_steps \(20\) is longer than the run"):
        validate_config(Config(train=TrainConfig(max_steps=10, warmup_steps=20)))
    validate_config(Config(train=TrainConfig(max_steps=10, warmup_steps=10)))


class _OneProcess:
    is_main_process, num_processes = True, 1

    def wait_for_everyone(self) -> None:
        pass


def _finished_run(folder: Path, max_steps: int) -> Path:
    """What a run without checkpoints leaves once finished: its config and final/."""
    from vlm2vec.config import save_config

    (folder / "final").mkdir(parents=True)
    save_config(
        Config(train=TrainConfig(output_dir=str(folder), max_steps=max_steps)), folder / "config.yaml"
    )
    return folder


@pytest.mark.parametrize("allow", [[], ["train.max_steps"]])
def test_resuming_a_finished_run_with_another_max_steps_is_refused(tmp_path, allow):
    from vlm2vec.training.resume import RunStart

    out = _finished_run(tmp_path / "run", max_steps=4)
    train = TrainConfig(output_dir=str(out), max_steps=8, resume=True, allow_changed=allow)
    expected = "pass --allow-changed=train.max_steps" if not allow else "no checkpoint of that step"
    with pytest.raises(ResumeError, match=rf"finished at step 4.*{expected}"):
        RunStart.decide(Config(train=train), _OneProcess())
    same = TrainConfig(output_dir=str(out), max_steps=4, resume=True)
    assert RunStart.decide(Config(train=same), _OneProcess()).finished  # the same length: finished, as before
