"""The V2 evaluation settings, the `vlm2vec data` report and the video part of an item's cache key."""

import pytest

from vlm2vec import commands as cli
from vlm2vec.config import ConfigError, load_config
from vlm2vec.encoding import Item, item_key
from vlm2vec.mmeb_v2.metrics import NDCG_RULES
from vlm2vec.testing.synthetic_v2 import VIDEO_TASKS, VISDOC_TASKS, write_synthetic_v2

V2 = "--eval.benchmark=mmeb_v2"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_v2(tmp_path_factory.mktemp("v2"))


def test_v2_keys_are_read_only_in_a_v2_run_and_rule_names_are_the_configs_choices():
    with pytest.raises(ConfigError, match="eval.num_frames is read only with eval.benchmark=mmeb_v2"):
        load_config(None, ["--eval.num_frames=4"])
    with pytest.raises(ConfigError, match="eval.ndcg_rule must be one of reference, correct"):
        load_config(None, [V2, "--eval.ndcg_rule=fixed"])
    with pytest.raises(ConfigError, match="eval.v2_tasks: unknown"):
        load_config(None, [V2, "--eval.v2_tasks=[K701]"])
    cfg = load_config(
        None, [V2, "--eval.v2_sources={video_cls: /x}", "--eval.v2_tasks=[video, ViDoRe_arxivqa]"]
    )
    assert cfg.eval.v2_sources == {"video_cls": "/x"} and cfg.eval.num_frames == 8
    assert NDCG_RULES == ("reference", "correct")


def test_help_of_eval_lists_the_v2_keys(capsys):
    assert cli.main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("eval.benchmark", "eval.v2_root", "eval.v2_sources", "eval.num_frames", "eval.ndcg_rule"):
        assert any(line.split()[:1] == [key] for line in out.splitlines()), key


def test_data_report_lists_found_missing_and_downloads_and_exits_0(root, capsys):
    assert cli.main(["data", V2, f"--eval.v2_root={root}"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in (*VIDEO_TASKS, *VISDOC_TASKS):
        line = next(x for x in lines if f" {name}: " in x)
        assert line.split()[0] == "ok", line
    assert any("Qwen3-port layout" in x and " MSR-VTT: " in x for x in lines)
    assert any(x.split()[0] == "MISSING" and " HMDB51: " in x for x in lines)
    assert "hub dataset VLM2Vec/HMDB51 (config default, split test)" in out
    assert "TIGER-Lab/MMEB-V2: video-tasks/frames/video_cls.tar.gz" in out
    assert lines[-1].startswith("15 of 78 MMEB-V2 tasks present (image 0/36, video 11/18, visdoc 4/24)")


def test_data_report_of_asked_tasks_only(root, capsys):
    assert cli.main(["data", V2, f"--eval.v2_root={root}", "--eval.v2_tasks=[K700, HMDB51]"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith("; 1 of the 2 asked for")


@pytest.mark.parametrize("bad", ["missing", "unrelated"])
def test_a_bad_root_exits_2_naming_it(tmp_path, capsys, bad):
    path = tmp_path / "nowhere"
    if bad == "unrelated":
        (path / "stuff").mkdir(parents=True)
    assert cli.main(["data", V2, f"--eval.v2_root={path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: eval.v2_root") and str(path) in err


def test_an_item_without_video_keeps_its_key_and_a_video_changes_it():
    # the key of a text+image item as the cache has stored it since before videos existed
    assert item_key(Item("<|image_1|>\nRepresent the given image.", "a/b.jpg"), "12:34") == (
        "798d7b07d09fce290cec2a419f517966013c084c"
    )
    plain = item_key(Item("find it"))
    video = item_key(Item("find it", video=("f/1.jpg", "f/2.jpg")), "", ["1:1", "1:1"])
    restamped = item_key(Item("find it", video=("f/1.jpg", "f/2.jpg")), "", ["1:1", "1:2"])
    assert len({plain, video, restamped}) == 3


def test_a_relative_root_locates_absolute_frame_and_page_folders(root, tmp_path, monkeypatch):
    """Frame and page paths must not depend on the working directory of a DataLoader worker or of
    a later resume: a relative `eval.v2_root` is resolved once, where it is read."""
    from vlm2vec.evaluation.v2_data import locate_v2

    monkeypatch.chdir(root.parent)
    cfg = load_config(
        None, ["--eval.benchmark=mmeb_v2", f"--eval.v2_root={root.name}", "--eval.v2_tasks=[K700]"]
    )
    (found,) = locate_v2(cfg.eval)
    assert found.media is not None and found.media.is_absolute() and found.media.is_dir()


def test_a_run_without_image_tasks_does_not_need_the_image_folder(root, tmp_path):
    from vlm2vec.evaluation.v2_data import locate_v2

    missing = tmp_path / "no-mmeb-eval"
    flags = ["--eval.benchmark=mmeb_v2", f"--eval.v2_root={root}", f"--eval.data_dir={missing}"]
    (found,) = locate_v2(load_config(None, [*flags, "--eval.v2_tasks=[K700]"]).eval)
    assert found.ready
    with pytest.raises(Exception, match="no-mmeb-eval"):  # asked for, the image block needs it
        locate_v2(load_config(None, [*flags, "--eval.v2_tasks=[ImageNet-1K]"]).eval)
