"""locate() on a partial MMEB-V2 root: what is found (and in which layout), missing, and to download."""

import shutil

import pytest

from vlm2vec.mmeb_v2.locate import format_locations, locate
from vlm2vec.testing.synthetic_v2 import VIDEO_TASKS, VISDOC_TASKS, write_synthetic_v2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_v2(tmp_path_factory.mktemp("v2"))


def test_partial_root_lists_exactly_the_tasks_written_as_ready(root):
    found = {f.task.name: f for f in locate(root)}
    assert len(found) == 78
    assert {n for n, f in found.items() if f.ready} == set(VIDEO_TASKS) | set(VISDOC_TASKS)


def test_missing_task_names_its_repo_and_archive_to_download(root):
    hmdb = next(f for f in locate(root, tasks=["HMDB51"]))
    assert not hmdb.ready
    assert hmdb.downloads == [
        "hub dataset VLM2Vec/HMDB51 (config default, split test)",
        "TIGER-Lab/MMEB-V2: video-tasks/frames/video_cls.tar.gz",
    ]
    assert str(root / "video-tasks/frames/video_cls/HMDB51") in hmdb.problems[1]
    (img,) = locate(root, tasks=["VOC2007"])
    assert img.downloads == [
        "hub dataset ziyjiang/MMEB_Test_Instruct (config VOC2007, split test)",
        "TIGER-Lab/MMEB-V2: image-tasks/mmeb_v1.tar.gz",
    ]
    (yc,) = locate(root, tasks=["YouCook2"])
    assert "hub dataset lmms-lab/YouCook2 (config default, split val)" in yc.downloads


def test_report_counts_ready_tasks_and_lists_downloads_once(root):
    text = format_locations(locate(root))
    assert text.splitlines()[0] == "15/78 tasks ready"
    assert text.count("TIGER-Lab/MMEB-V2: video-tasks/frames/video_cls.tar.gz") == 1
    assert "ok       MSR-VTT" in text and "(Qwen3-port layout)" in text
    assert "MISSING  Charades-STA" in text


def test_source_and_task_overrides_replace_one_folder_each(root, tmp_path):
    moved = tmp_path / "cls"
    shutil.copytree(root / "video-tasks/frames/video_cls", moved)
    clone = tmp_path / "my-k700"
    shutil.copytree(root / "video-tasks/Kinetics-700", clone)
    (k700,) = locate(tmp_path / "empty", {"video_cls": moved, "K700": clone}, tasks=["K700"])
    assert k700.ready and k700.media == moved / "K700" and k700.annotations == clone
    (media,) = locate(tmp_path / "empty", {"K700:media": moved / "K700"}, tasks=["K700"])
    assert media.media_layout == "override" and not media.ready  # annotations still missing


def test_unknown_override_is_refused_naming_the_valid_keys(root):
    with pytest.raises(KeyError, match="video_cls"):
        locate(root, {"video_frames": root})
