"""The command line: generated --help (every key, no torch import), one-line errors that name their
source, validation of every numeric setting at parse time, nothing written by a failing bare run."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from vlm2vec import commands as cli
from vlm2vec.commands import parse_cli
from vlm2vec.config import Config, ConfigError, PairSourceConfig, load_config
from vlm2vec.data import BadRowError, read_pairs
from vlm2vec.errors import unwrap_worker_error, user_message

ROOT = Path(__file__).resolve().parents[1]


def _all_fields(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, help) of every field, walking nested dataclasses and lists of dataclasses."""
    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            found += _all_fields(tp, f"{prefix}{f.name}.")
            continue
        found.append((f"{prefix}{f.name}", f.metadata["help"]))
        args = typing.get_args(tp)
        if args and dataclasses.is_dataclass(args[0]):
            found += _all_fields(args[0], f"{prefix}{f.name}[i].")
    return found


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_lists_every_config_key_with_its_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    fields = _all_fields(Config)
    assert len(fields) > 80 and any(k.startswith("data.pairs[i].") for k, _ in fields)
    lines = out.splitlines()
    for key, help_text in fields:
        line = next((x for x in lines if x.split() and x.split()[0] == key), None)
        assert line is not None, f"--help misses {key}"
        assert help_text in line and "default:" in line, line


def test_help_runs_where_importing_torch_fails():
    script = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "for entry in ('train.py', 'evaluate.py'):\n"
        "    sys.argv = [entry, '--help']\n"
        "    try:\n"
        "        runpy.run_path(entry, run_name='__main__')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("train.lr ") == 2 and "usage: evaluate.py" in proc.stdout


def test_mistyped_flag_is_one_line_naming_the_flag_and_suggesting_the_key(capsys):
    assert cli.main(["train", "--train.lrr=1"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: command-line flag --train.lrr=1:")
    assert "did you mean 'lr'?" in lines[0] and "Traceback" not in captured.err


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  max_length: 32\ntrain:\n  lr: 1e-4\n  per_device_batch_size: 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}:5: train\.per_device_batch_size must be >= 1, got 0"):
        load_config(path)
    path.write_text("train:\n  seed: 1\n  warmup_step: 3\n")
    with pytest.raises(
        ConfigError, match=rf"^{path}:3: unknown config key 'train.warmup_step'; did you mean 'warmup_steps'"
    ):
        load_config(path)
    # the flag, not the file, is blamed for what the flag set
    with pytest.raises(ConfigError, match=r"^command-line flag --train.seed=x: train.seed: expected int"):
        load_config(path, ["--train.warmup_steps=2", "--train.seed=x"])


@pytest.mark.parametrize(
    "flag",
    [
        "--train.per_device_batch_size=0",
        "--train.per_device_batch_size=-4",
        "--train.log_every=0",
        "--model.max_length=0",
        "--train.save_every=-1",
        "--train.keep_last=-1",
        "--train.qry_chunk_size=0",
        "--train.tgt_chunk_size=-2",
        "--train.lr=0",
        "--train.lr=.nan",
        "--train.max_steps=0",
        "--train.warmup_steps=-1",
        "--eval.batch_size=0",
        "--data.num_workers=-1",
        "--model.temperature=0",
        "--train.qry_chunk_tokens=0",
        "--train.tgt_chunk_tokens=-8",
        "--train.hardness_alpha=.inf",
        "--eval.dim=0",
        "--embed.batch_size=0",
        "--embed.shard_rows=0",
    ],
)
def test_every_numeric_setting_is_validated_when_parsed(flag):
    key = flag[2:].split("=")[0]
    with pytest.raises(ConfigError, match=rf"^command-line flag {flag}: {key} must be"):
        load_config(None, [flag])


def test_matryoshka_sizes_and_fixed_choices_are_validated_when_parsed():
    with pytest.raises(ConfigError, match=r"train\.matryoshka_dims\[1\] must be >= 1, got 0"):
        load_config(None, ["--train.matryoshka_dims=[8, 0]"])
    with pytest.raises(ConfigError, match=r"train\.matryoshka_dims repeats a size"):
        load_config(None, ["--train.matryoshka_dims=[8, 8]"])
    for flag in ("--model.prompt_format=qwen3_embedding", "--model.image_resolution=mid"):
        key = flag[2:].split("=")[0]
        with pytest.raises(ConfigError, match=rf"^command-line flag {flag}: {key} must be one of"):
            load_config(None, [flag])


def test_null_is_allowed_where_documented():
    cfg = load_config(None, ["--train.qry_chunk_size=null", "--train.max_grad_norm=null"])
    assert cfg.train.qry_chunk_size is None and cfg.train.max_grad_norm is None


def test_parse_cli_reports_explicit_keys_and_sources(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  seed: 3\ndata:\n  pairs:\n    - {name: a, path: a.jsonl}\n")
    parsed = parse_cli(["--config", str(path), "--model.lora=true", "--allow-changed=train.lr, train.seed"])
    cfg, overrides = parsed.config, parsed.overrides
    assert cfg is parsed.config and overrides == parsed.overrides
    assert parsed.explicit == {"train.seed", "data.pairs", "model.lora", "train.allow_changed"}
    assert cfg.train.allow_changed == ["train.lr", "train.seed"]
    assert parse_cli(["--allow-changed=*"]).config.train.allow_changed == ["*"]
    assert parsed.sources["train.seed"] == f"{path}:2"


def test_print_config_shows_the_resolved_config(capsys):
    assert cli.main(["train", "--print-config", "--train.seed=5"]) == 0
    out = capsys.readouterr().out
    assert "seed: 5" in out and load_config(None, ["--train.seed=5"]).train.seed == 5


def test_bare_train_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "data" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "model_flags, message",
    [
        (["--model.path=NOPE"], "model.path 'NOPE' is not a folder"),
        (["--model.path=."], "no config.json, cannot tell which backbone"),
        (["--model.path=.", "--model.backbone=qwen9"], "model.backbone: unknown backbone 'qwen9'"),
    ],
)
def test_a_model_folder_that_cannot_be_opened_is_one_line_for_every_command(
    tmp_path, monkeypatch, capsys, model_flags, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("a red circle\n")
    for command in ("eval", "embed"):
        flags = ["--eval.data_dir=.", "--embed.source=texts", "--embed.path=t.txt"]
        assert cli.main([command, *model_flags, *flags]) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (command, err)


def test_debug_shows_the_traceback_and_bugs_keep_theirs(capsys, monkeypatch):
    def fail():
        raise ConfigError("train.lr must be > 0, got 0")

    assert cli.run_command(fail, debug=True) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "error: train.lr must be > 0, got 0"
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert cli.run_command(fail) == 2 and "Traceback" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        cli.run_command(lambda: 1 / 0)


def test_unknown_subcommand_suggests_one(capsys):
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err


def test_worker_traceback_message_is_reduced_to_the_original_line():
    from torch._utils import ExceptionWrapper

    try:
        raise BadRowError("mine", 4, "image file not found", "/data/x.png")
    except BadRowError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(BadRowError) as err:
        wrapper.reraise()
    assert "Traceback" in str(err.value)
    assert user_message(err.value) == "source 'mine' row 5: image file not found (path: /data/x.png)"
    again = unwrap_worker_error(err.value)
    assert type(again) is BadRowError and str(again) == user_message(err.value)


def test_no_product_module_imports_the_test_kit():
    src = ROOT / "src" / "vlm2vec"
    offenders = []
    for path in src.rglob("*.py"):
        if "testing" in path.relative_to(src).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            offenders += [f"{path}: {n}" for n in names if "testing" in n.split(".")]
    assert offenders == []


def _pairs_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_wrong_type_cell_names_line_and_column(tmp_path):
    path = _pairs_file(tmp_path, [{"q": "a", "t": "x"}, {"q": "b", "t": "y"}, {"q": 5, "t": "z"}])
    with pytest.raises(ValueError, match=rf"{path}: line 3, column 'q': a number .*line 1 holds a string"):
        read_pairs(PairSourceConfig(name="p", path=str(path), qry_text="q", pos_text="t"))


def test_image_paths_must_stay_under_their_root(tmp_path):
    rows = [{"q": "a", "t": "x", "img": "ok/a.png"}, {"q": "b", "t": "y", "img": "../outside.png"}]
    rows.append({"q": "c", "t": "z", "img": str(tmp_path / "abs.png")})
    cfg = PairSourceConfig(
        name="p", path=str(_pairs_file(tmp_path, rows)), qry_text="q", pos_text="t", pos_image="img"
    )
    src = read_pairs(cfg)
    assert src.record(0).pos.images == (str(tmp_path / "ok" / "a.png"),)
    with pytest.raises(
        BadRowError,
        match=r"source 'p' row 2: image path is outside the image root .*\(path: \.\./outside\.png\)",
    ):
        src.record(1)
    with pytest.raises(BadRowError, match=r"source 'p' row 3: image path is absolute"):
        src.record(2)
    allowed = read_pairs(cfg, outside_root=True)
    assert allowed.record(1).pos.images == (str(tmp_path / "../outside.png"),)
    assert allowed.record(2).pos.images == (str(tmp_path / "abs.png"),)


def test_a_prompt_format_the_backbone_lacks_is_one_line(tiny_qwen_dir, tmp_path, capsys):
    # qwen3_vl_embedding is a valid model.prompt_format, but not for a Qwen2-VL folder
    flags = [f"--model.path={tiny_qwen_dir}", "--model.prompt_format=qwen3_vl_embedding"]
    assert cli.main(["eval", *flags, f"--eval.output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]  # after transformers' weight-loading bar
    assert last.startswith("error: model.prompt_format must be 'vlm2vec' or 'native' for Qwen2-VL"), last


def test_the_commands_package_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "vlm2vec.commands", "compare", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: vlm2vec compare"), proc.stderr[-2000:]


def test_only_the_commands_package_has_a_main():
    src = ROOT / "src" / "vlm2vec"
    offenders = []
    for path in src.rglob("*.py"):
        if path.relative_to(src).parts[0] == "commands":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name == "main":
                offenders.append(f"{path}: def main")
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                offenders.append(f"{path}: __main__ block")
    assert offenders == []
