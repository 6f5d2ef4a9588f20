"""Every expected failure ends in one line naming the file, row, key or flag (exit status 2, no
traceback): broken weight files, text that is not UTF-8, output locations that cannot be written, a
full disk, unknown meta-tasks, unreadable images, bad library arguments."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vlm2vec import commands as cli
from vlm2vec.errors import ArgumentError

NOT_UTF8 = "caf\xe9".encode("latin-1")  # "café" saved in Latin-1


@pytest.fixture(scope="module")
def files(tiny_qwen_dir, tmp_path_factory) -> dict[str, Path]:
    """The inputs of the table below, each broken in one way."""
    root = tmp_path_factory.mktemp("bad_inputs")
    out = {"root": root, "model": tiny_qwen_dir}
    weights = next(Path(tiny_qwen_dir).glob("*.safetensors")).read_bytes()
    for name, data in {
        "truncated": weights[: len(weights) // 2],
        "broken_header": b"\xff" * 8 + weights[8:],
    }.items():
        folder = shutil.copytree(tiny_qwen_dir, root / name)
        next(folder.glob("*.safetensors")).write_bytes(data)
        out[name] = folder
    (root / "texts.txt").write_text("a red thing\nthe colour blue\n")
    out["texts"] = root / "texts.txt"
    (root / "latin1.txt").write_bytes(b"a red thing\n" + NOT_UTF8 + b"\n")
    out["latin1"] = root / "latin1.txt"
    (root / "latin1_pairs.jsonl").write_bytes(b'{"q": "x", "t": "y"}\n{"q": "' + NOT_UTF8 + b'", "t": "z"}\n')
    (root / "latin1.yaml").write_bytes(b"train:\n  run_name: " + NOT_UTF8 + b"\n")
    (root / "a_file").write_text("not a folder")
    Image.new("RGB", (32, 32), "red").save(root / "ok.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    rows = [{"q": "find red", "t": "<|image_1|> red", "img": "ok.png"}] * 2
    rows.append({"q": "find broken", "t": "<|image_1|> broken", "img": "broken.png"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "mmeb_eval" / "ImageNet-1K").mkdir(parents=True)  # found, never read: the name fails first
    (root / "mmeb_eval" / "ImageNet-1K" / "test-00000-of-00001.parquet").write_bytes(b"")
    texts = [{"q": f"which colour is {c}", "t": f"the colour {c}"} for c in ("red", "green", "blue")]
    (root / "text_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in texts))
    (root / "not_a_summary").mkdir()
    (root / "not_a_summary" / "summary.json").write_text('{"datasets": {}}')
    return out


def _pairs(path: Path, image: str | None = None) -> str:
    spec = {
        "name": "p",
        "path": str(path),
        "qry_text": "q",
        "qry_image": None,
        "pos_text": "t",
        "pos_image": image,
    }
    return "--data.pairs=" + json.dumps([spec])


def _texts(f, text_file: str, out: str = "emb") -> list[str]:
    return [
        "embed",
        f"--model.path={f['model']}",
        "--embed.source=texts",
        f"--embed.path={f[text_file]}",
        f"--embed.output_dir={f['root'] / out}",
    ]


def _case(name: str):
    """(argv, expected fragment of the one error line) of each case, built from the `files` fixture."""
    return {
        "truncated weights": lambda f: (
            [*_texts(f, "texts", "e1"), f"--model.path={f['truncated']}"],
            f"{f['truncated']}/model.safetensors: truncated safetensors file",
        ),
        "broken safetensors header": lambda f: (
            [*_texts(f, "texts", "e2"), f"--model.path={f['broken_header']}"],
            f"{f['broken_header']}/model.safetensors: truncated or broken safetensors header",
        ),
        "text file not UTF-8": lambda f: (
            _texts(f, "latin1", "e3"),
            f"{f['latin1']}: line 2, byte 4: not UTF-8",
        ),
        "pairs file not UTF-8": lambda f: (
            ["embed", f"--model.path={f['model']}", _pairs(f["root"] / "latin1_pairs.jsonl")],
            "latin1_pairs.jsonl: line 2, byte 11: not UTF-8",
        ),
        "config file not UTF-8": lambda f: (
            ["train", "--config", str(f["root"] / "latin1.yaml")],
            "latin1.yaml: line 2, byte 16: not UTF-8",
        ),
        "output folder is a file": lambda f: (
            [*_texts(f, "texts"), f"--embed.output_dir={f['root'] / 'a_file'}"],
            f"embed.output_dir {f['root'] / 'a_file'} is a file, not a folder: choose another embed.output_dir",
        ),
        "unknown meta-task": lambda f: (
            [
                "eval",
                f"--model.path={f['model']}",
                f"--eval.data_dir={f['root'] / 'mmeb_eval'}",
                "--eval.meta_tasks=[Retreival]",
                f"--eval.output_dir={f['root'] / 'eval'}",
            ],
            "eval.meta_tasks: unknown meta-task 'Retreival'",
        ),
        "compare a folder that is not an eval summary": lambda f: (
            ["compare", str(f["root"] / "not_a_summary"), str(f["root"] / "not_a_summary")],
            "not an MMEB summary (no meta_tasks, IND, OOD, overall, num_datasets)",
        ),
        "broken image in embed": lambda f: (
            [
                "embed",
                f"--model.path={f['model']}",
                _pairs(f["root"] / "pairs.jsonl", "img"),
                f"--data.image_root={f['root']}",
                f"--embed.output_dir={f['root'] / 'e4'}",
            ],
            "source 'p' row 3, target image: cannot read image",
        ),
        "broken image in mine": lambda f: (
            [
                "mine",
                f"--model.path={f['model']}",
                _pairs(f["root"] / "pairs.jsonl", "img"),
                f"--data.image_root={f['root']}",
                f"--mine.output_dir={f['root'] / 'm1'}",
                "--mine.top_k=1",
                "--mine.num_negatives=1",
            ],
            "source 'p' row 3, target image: cannot read image",
        ),
        "mining that keeps no negative": lambda f: (
            [
                "mine",
                f"--model.path={f['model']}",
                _pairs(f["root"] / "text_pairs.jsonl"),
                f"--mine.output_dir={f['root'] / 'm2'}",
                "--mine.scope=all",
                "--mine.top_k=2",
                "--mine.num_negatives=1",
                "--mine.margin=-10",  # every candidate scores above positive - 10: all filtered
            ],
            "mine: no row got 1 negatives (3 queries, 3 dropped as short)",
        ),
        "warm-up longer than the run": lambda f: (
            ["train", "--train.max_steps=3", "--train.warmup_steps=5"],
            "train.warmup_steps (5) is longer than the run",
        ),
        "a setting the backbone ignores": lambda f: (
            [*_texts(f, "texts", "e5"), "--model.backbone=qwen2_vl", "--model.num_crops=2"],
            "model.num_crops=2: the qwen2_vl backbone does not read this setting",
        ),
    }[name]


CASES = [
    "truncated weights",
    "broken safetensors header",
    "text file not UTF-8",
    "pairs file not UTF-8",
    "config file not UTF-8",
    "output folder is a file",
    "unknown meta-task",
    "compare a folder that is not an eval summary",
    "broken image in embed",
    pytest.param("broken image in mine", marks=pytest.mark.slow),  # mining: a few seconds each
    pytest.param("mining that keeps no negative", marks=pytest.mark.slow),
    "warm-up longer than the run",
    "a setting the backbone ignores",
]


def _one_error_line(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("name", CASES)
def test_a_bad_input_through_the_cli_is_one_line_naming_it(name, files, capsys):
    argv, expected = _case(name)(files)
    line = _one_error_line(argv, capsys)
    assert expected in line, line


@pytest.mark.parametrize(
    "code, advice",
    [
        (errno.ENOSPC, "No space left on device; free space or choose another output folder"),
        (errno.EACCES, "Permission denied; choose a path you may use, or fix its permissions"),
    ],
)
def test_a_full_disk_or_a_refused_write_is_one_line_naming_the_file(files, capsys, monkeypatch, code, advice):
    import os

    import pyarrow.parquet as pq

    def refused(table, where, *args, **kwargs):  # what the OS says mid-write (a write names no file)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pq, "write_table", refused)
    line = _one_error_line(_texts(files, "texts", f"out{code}"), capsys)
    assert advice in line and str(files["root"] / f"out{code}") in line


@pytest.fixture(scope="module")
def model(tiny_qwen_dir):
    from vlm2vec.model import EmbeddingModel
    from vlm2vec.testing import tiny_model_config

    return EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir))


RED = Image.new("RGB", (32, 32), "red")


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"texts": None}, "texts must be a string or a list of strings, got a NoneType"),
        ({"texts": []}, "texts is empty"),
        ({"texts": ["a", 3]}, "texts[1] must be a string, got a int"),
        ({"texts": ["<|image_1|> a", "b"], "images": [[RED]]}, "images has 1 entries for 2 texts"),
        (
            {"texts": ["<|image_1|> a"], "images": [["red.png"]]},
            "images[0][0] must be a PIL image, got a str",
        ),
        (
            {"texts": "<|image_1|> a", "images": "red.png"},
            "images must be a PIL image or a list of PIL images",
        ),
        ({"texts": ["<|video_1|> a"], "videos": [RED]}, "videos[0] must be a list of videos"),
        (
            {"texts": "<|video_1|> a", "videos": [RED]},
            "videos[0] must be a video: a non-empty list of PIL frames",
        ),
        (
            {"texts": ["a"], "videos": [[["f.png"]]]},
            "videos[0][0][0] must be a PIL image (a frame), got a str",
        ),
        ({"texts": ["a"], "batch_size": 0}, "batch_size must be an int >= 1, got 0"),
    ],
)
def test_a_bad_argument_to_embed_is_a_value_error_naming_it(model, kwargs, named):
    with pytest.raises(ValueError) as err:
        model.embed(**kwargs)
    assert isinstance(err.value, ArgumentError) and named in str(err.value)


def test_advice_to_allow_a_change_keeps_the_keys_already_allowed():
    from vlm2vec.errors import ResumeError
    from vlm2vec.training.resume import check_changes

    stored, now = {"train.lr": 1.0, "train.seed": 1}, {"train.lr": 2.0, "train.seed": 2}
    with pytest.raises(ResumeError) as err:
        check_changes(stored, now, {"train.lr"}, Path("ckpt"))
    # the flag replaces the list: advice naming only train.seed would refuse train.lr next time
    assert "pass --allow-changed=train.lr,train.seed to continue" in str(err.value)


def test_advice_never_names_a_flag_already_given(tmp_path):
    from vlm2vec.config import Config, TrainConfig
    from vlm2vec.errors import ResumeError
    from vlm2vec.training.resume import RunStart

    class OneProcess:
        is_main_process, num_processes = True, 1

        def wait_for_everyone(self) -> None:
            pass

    both = TrainConfig(output_dir=str(tmp_path / "empty"), resume=True, resume_if_present=True)
    with pytest.raises(ResumeError) as err:
        RunStart.decide(Config(train=both), OneProcess())
    assert "use --resume-if-present" not in str(err.value) and "drop --resume" in str(err.value)
