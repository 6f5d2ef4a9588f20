"""Configuration: typed loading, clear errors that name the key, lossless round trips."""

import pytest
import yaml

from vlm2vec.commands import parse_cli
from vlm2vec.config import (
    Config,
    ConfigError,
    PairSourceConfig,
    dump_config,
    load_config,
    save_config,
)


def test_yaml_round_trip_is_lossless(tmp_path):
    cfg = load_config(
        None,
        [
            "--model.backbone=phi3_v",
            "--train.lr=3e-4",
            "--data.subsets=[A, B]",
            "--data.subset_weights={A: 2.0}",
            "--model.lora=true",
            "--model.lora_target_modules=[q_proj]",
        ],
    )
    cfg.data.pairs = [PairSourceConfig(name="mine", path="x.jsonl", neg_text="neg")]
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert dump_config(again) == path.read_text()


def test_overrides_parse_values_as_yaml_and_convert_ints_to_float():
    cfg = load_config(
        None,
        [
            "--train.lr=1e-5",
            "--train.warmup_steps=7",
            "--model.lora=true",
            "--train.max_grad_norm=null",
            "--train.weight_decay=0",
        ],
    )
    assert cfg.train.lr == 1e-5 and isinstance(cfg.train.weight_decay, float)
    assert cfg.train.warmup_steps == 7 and cfg.model.lora is True and cfg.train.max_grad_norm is None


def test_unknown_key_names_the_key_and_lists_valid_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"lr": 1e-4, "learning_rate": 1e-4}}))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "train.learning_rate" in msg and "lr" in msg and "per_device_batch_size" in msg and str(bad) in msg


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="'trainer'.*model, data, train, eval"):
        load_config(None, ["--trainer.lr=1"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("--train.max_steps=ten", "train.max_steps"),
        ("--model.lora=maybe", "model.lora"),
        ("--data.subsets=abc", "data.subsets"),
        ("--train.per_device_batch_size=1.5", "train.per_device_batch_size"),
    ],
)
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_nested_list_of_dataclasses_is_typed():
    cfg = load_config(None, ["--data.pairs=[{name: a, path: a.csv, weight: 2}]"])
    assert isinstance(cfg.data.pairs[0], PairSourceConfig) and cfg.data.pairs[0].weight == 2.0
    with pytest.raises(ConfigError, match=r"data\.pairs\[0\]\.colour"):
        load_config(None, ["--data.pairs=[{name: a, colour: red}]"])


def test_parse_cli_reads_config_file_and_resume_flag(tmp_path):
    path = save_config(Config(), tmp_path / "c.yaml")
    parsed = parse_cli(["--config", str(path), "--train.seed=3", "--resume"])
    cfg, overrides = parsed.config, parsed.overrides
    assert cfg.train.seed == 3 and cfg.train.resume is True
    assert overrides == ["--train.seed=3", "--train.resume=true"]


def test_every_shipped_config_file_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted((root / "train").glob("*.yaml")) + sorted((root / "eval").glob("*.yaml"))
    for f in files:
        assert isinstance(load_config(f), Config), f


def test_yaml_12_scalars_keep_no_as_a_string_and_read_exponent_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n  lr: 2e-5\n  resume: false\n")
    cfg = load_config(path, ["--train.weight_decay=1e-2"])
    assert cfg.train.mixed_precision == "no" and cfg.train.lr == 2e-5 and cfg.train.weight_decay == 0.01
    assert load_config(None, ["--train.mixed_precision=no"]).train.mixed_precision == "no"


def _choice_fields():
    import dataclasses

    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory):
            if f.metadata["choices"] is not None:
                yield section.name, f


def test_every_field_with_choices_rejects_another_value_naming_the_key():
    found = list(_choice_fields())
    assert len(found) >= 13
    for section, f in found:
        assert getattr(getattr(Config(), section), f.name) in f.metadata["choices"], (section, f.name)
        flag = f"--{section}.{f.name}=bogus"
        with pytest.raises(
            ConfigError, match=rf"^command-line flag {flag}: {section}\.{f.name} must be one of"
        ):
            load_config(None, [flag])


def test_applies_when_names_a_mode_field_of_the_same_section_and_its_choices():
    import dataclasses

    from vlm2vec.backbones import available_backbones
    from vlm2vec.config import choices_of

    def allowed(cls, mode):  # a backbone is a registry key, a switch is true/false, else declared choices
        if mode == "backbone":
            return set(available_backbones())
        if isinstance(getattr(cls(), mode), bool):
            return {True, False}
        return set(choices_of(cls, mode))

    for section in dataclasses.fields(Config):
        cls = section.default_factory
        for f in dataclasses.fields(cls):
            for mode, values in (f.metadata["applies_when"] or {}).items():
                assert set(values) <= allowed(cls, mode), (section.name, f.name)


def test_a_setting_the_mode_ignores_is_an_error_and_a_default_value_is_not_set():
    from vlm2vec.config import MineConfig, validate_config

    with pytest.raises(ConfigError, match=r"mine\.seed is read only with mine\.strategy=sample, not top"):
        validate_config(Config(mine=MineConfig(seed=3)))
    # a saved config lists every key at its value: the defaults of unused keys do not count as set
    assert validate_config(Config(mine=MineConfig(strategy="sample", seed=3))).mine.seed == 3
    assert load_config(None, ["--mine.strategy=sample", "--mine.rank_start=1"]).mine.strategy == "sample"


def test_tables_keyed_by_a_choice_hold_exactly_its_values():
    from vlm2vec.backbones.base import DTYPES
    from vlm2vec.backbones.llava_next import RESOLUTIONS
    from vlm2vec.config import ModelConfig, choices_of

    assert tuple(DTYPES) == choices_of(ModelConfig, "dtype")
    assert tuple(RESOLUTIONS) == choices_of(ModelConfig, "image_resolution")
