"""Each MMEB-V2 video task family read from the synthetic slice in the published layouts."""

import shutil

import pytest

from vlm2vec.errors import DataError
from vlm2vec.mmeb_v2.locate import locate, read_task
from vlm2vec.mmeb_v2.tasks import task
from vlm2vec.mmeb_v2.versions import DataVersionError
from vlm2vec.mmeb_v2.video_readers import check_videos, read_video_task
from vlm2vec.testing.synthetic_v2 import write_parquet, write_synthetic_v2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_v2(tmp_path_factory.mktemp("v2"))


def _read(root, name):
    (found,) = locate(root, tasks=[name])
    return read_task(found)


def test_classification_ranks_the_task_labels_and_counts_short_videos(root):
    data = _read(root, "K700")
    assert [q.video.name for q in data.queries] == ["k700_0", "k700_1", "k700_2", "k700_3"]
    assert data.queries[0].video.parent == root / "video-tasks/frames/video_cls/K700"
    assert data.pool(data.queries[0]) == ["abseiling", "waiting_in_line", "juggling_balls"]
    assert data.queries[1].relevant == {"waiting_in_line": 1.0}
    counts = check_videos(data)
    assert counts["videos checked"] == 4 and counts["videos with fewer than 8 frames (all used)"] == 1


def test_classification_ranks_a_given_class_list_and_refuses_labels_outside_it(root):
    clone, frames = root / "video-tasks/Kinetics-700", root / "video-tasks/frames/video_cls/K700"
    classes = ["juggling_balls", "abseiling", "waiting_in_line", "yawning"]
    data = read_video_task(task("K700"), clone, frames, label_pool=classes)
    assert data.pool(data.queries[0]) == classes
    assert "class labels taken from the rows (no class list given)" not in data.counts
    assert read_video_task(task("K700"), clone, frames).counts == {
        "class labels taken from the rows (no class list given)": 3
    }
    with pytest.raises(DataError, match="'waiting_in_line'"):
        read_video_task(task("K700"), clone, frames, label_pool=["abseiling", "juggling_balls"])


def test_local_pool_is_the_rows_own_list_and_global_pool_every_video(root):
    ssv2 = _read(root, "SmthSmthV2")
    assert ssv2.pool(ssv2.queries[2]) == [
        "Moving something up",
        "Pushing something left",
        "Tearing something",
    ]
    msrvtt = _read(root, "MSR-VTT")
    assert [q.candidates for q in msrvtt.queries] == [(), (), ()]
    assert msrvtt.pool(msrvtt.queries[0]) == ["video0", "video1", "video2"]
    assert msrvtt.queries[1].text == "a clip number 1" and msrvtt.queries[1].relevant == {"video1": 1.0}


def test_retrieval_frames_found_in_either_published_layout(root):
    (msrvtt,) = locate(root, tasks=["MSR-VTT"])
    (didemo,) = locate(root, tasks=["DiDeMo"])
    assert msrvtt.media_layout == "Qwen3-port layout" and msrvtt.media.name == "frames"
    assert didemo.media_layout == "reference layout"
    data = read_task(didemo)
    assert list(data.candidates) == ["1234@56", "999@1"]  # the file stem of the video column
    assert data.candidates["999@1"].video == didemo.media / "999@1"


def test_videomme_strips_option_prefix_for_candidates_and_keeps_it_as_name(root):
    data = _read(root, "Video-MME")
    (q,) = data.queries
    assert q.text == "What fruit is shown?\nA. Apples.\nB. Pears.\nC. Figs."
    assert q.relevant == {"B. Pears.": 1.0}
    assert [data.candidates[n].text for n in q.candidates] == ["Apples", "Pears", "Figs"]


def test_nextqa_and_mvbench_build_the_options_block(root):
    (q,) = _read(root, "NExTQA").queries
    assert q.text.startswith("why wave\nOptions:\n(A) reason 0\n(B) reason 1")
    assert q.relevant == {"reason 2": 1.0} and q.video.name == "nx_1"
    mv = _read(root, "MVBench")
    assert [q.video.parts[-2:] for q in mv.queries] == [
        ("action_sequence", "clip_1.mp4"),
        ("fine_grained_action", "clip_2.webm"),
    ]
    assert mv.queries[0].relevant == {"(B) right": 1.0}
    assert mv.queries[0].candidates == ("(A) left", "(B) right")


def test_egoschema_and_activitynetqa_texts_and_folders(root):
    (eg,) = locate(root, tasks=["EgoSchema"])
    assert eg.media_layout == "Qwen3-port layout"  # video_qa/egoschema
    (q,) = read_task(eg).queries
    assert q.text == "What did c do?A. c cooked. B. c read. C. c ran."
    assert q.relevant == {"A. c cooked.": 1.0}
    (q,) = _read(root, "ActivityNetQA").queries
    assert q.text == "is it raining? (A) yes; (B) no." and q.video.name == "v_an_1"
    assert q.relevant == {"no": 1.0} and q.candidates == ("yes", "no")


def test_moment_retrieval_ranks_the_clip_folders_of_its_video(root):
    data = _read(root, "QVHighlight")
    q = data.queries[0]
    base = root / "video-tasks/frames/video_mret/QVHighlight/vid_a"
    assert q.video == base / "query"
    assert sorted(q.candidates) == sorted(str(base / c) for c in ("positive_0", "negative_1", "negative_2"))
    assert q.relevant == {str(base / "positive_0"): 1.0}
    assert check_videos(data)["videos checked"] == 2 + 6


def test_momentseeker_query_kinds_multiple_positives_and_all_frames(root):
    data = _read(root, "MomentSeeker")
    clips = root / "video-tasks/frames/video_mret/MomentSeeker/video_frames"
    text_q, image_q, video_q = data.queries
    assert text_q.video is None and text_q.image is None
    assert set(text_q.relevant) == {str(clips / "ms_c1"), str(clips / "ms_c2")}
    assert image_q.image == root / "video-tasks/frames/video_mret/MomentSeeker/query_ms/q1.jpg"
    assert video_q.video == clips / "ms_q2"
    assert data.all_frames and data.data_version.endswith("#dedup-1602")
    check_videos(data)  # the 6-frame query clip is used whole: no "fewer than" count
    assert "videos with fewer than 8 frames (all used)" not in data.counts


def test_original_momentseeker_is_refused_unless_allowed(tmp_path, root):
    clone = tmp_path / "MomentSeeker"
    shutil.copytree(root / "video-tasks/MomentSeeker", clone)
    row = {
        "query": "q",
        "input_frames": "",
        "positive_frames": [{"output_path": "ms/c1.mp4"}],
        "negative_frames": [],
    }
    write_parquet(clone / "data/test-00000-of-00001.parquet", [row, row])
    frames = root / "video-tasks/frames/video_mret/MomentSeeker"
    with pytest.raises(DataVersionError, match="original version"):
        read_video_task(task("MomentSeeker"), clone, frames)
    data = read_video_task(task("MomentSeeker"), clone, frames, allow_old=True)
    assert data.data_version.endswith("#original-1800")


def test_missing_frame_folder_names_task_row_video_and_path(tmp_path, root):
    frames = tmp_path / "K700"
    shutil.copytree(root / "video-tasks/frames/video_cls/K700", frames)
    shutil.rmtree(frames / "k700_2")
    data = read_video_task(task("K700"), root / "video-tasks/Kinetics-700", frames)
    with pytest.raises(DataError) as err:
        check_videos(data)
    msg = str(err.value)
    assert "'K700'" in msg and "row 3" in msg and "'k700_2'" in msg and str(frames / "k700_2") in msg


def test_malformed_annotation_names_task_and_row(tmp_path, root):
    clone = tmp_path / "ActivityNetQA"
    rows = [
        {"video_name": "a", "question": "q", "answer": "yes"},
        {"video_name": "b", "question": "q", "answer": "maybe"},
    ]
    write_parquet(clone / "data/test-00000-of-00001.parquet", rows)
    with pytest.raises(DataError, match="'ActivityNetQA', row 2"):
        read_video_task(task("ActivityNetQA"), clone, tmp_path)
    write_parquet(clone / "data/test-00000-of-00001.parquet", [{"video": "a", "question": "q"}])
    with pytest.raises(DataError, match="lacks columns"):
        read_video_task(task("ActivityNetQA"), clone, tmp_path)
