"""Frame selection of MMEB-V2 videos: indices, natural order, and the errors on bad folders."""

import pytest
from PIL import Image

from vlm2vec.errors import DataError
from vlm2vec.mmeb_v2.frames import (
    VideoRef,
    load_frames,
    natural_key,
    sample_indices,
    select_frames,
)

REF = VideoRef("MSR-VTT", 3, "video7010")


def _frames(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4), "red").save(folder / name)
    return folder


def test_8_of_64_are_evenly_spaced_from_first_to_last():
    # linspace(0, 63, 8) has step 63 / 7 = 9
    assert sample_indices(64, 8) == [0, 9, 18, 27, 36, 45, 54, 63]


def test_8_of_8_keeps_every_frame():
    assert sample_indices(8, 8) == list(range(8))


def test_5_of_5_keeps_all_without_padding():
    assert sample_indices(5, 8) == [0, 1, 2, 3, 4]


def test_non_integer_spacing_truncates_toward_zero():
    # i * 9 / 7 for i = 0..7: 0, 1.29, 2.57, 3.86, 5.14, 6.43, 7.71, 9
    assert sample_indices(10, 8) == [0, 1, 2, 3, 5, 6, 7, 9]


def test_none_keeps_every_frame():
    assert sample_indices(64, None) == list(range(64))


def test_natural_sort_puts_frame_2_before_frame_10(tmp_path):
    folder = _frames(tmp_path / "v", ["frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "frame_11.jpg"])
    names = [p.name for p in select_frames(folder, REF, None).paths]
    assert names == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg", "frame_11.jpg"]
    assert sorted(["frame_10", "frame_2"], key=natural_key) == ["frame_2", "frame_10"]


def test_folder_selection_takes_sampled_files_and_ignores_other_suffixes(tmp_path):
    folder = _frames(tmp_path / "v", [f"frame_{i:04d}.jpg" for i in range(1, 65)])
    (folder / "notes.txt").write_text("x")
    sel = select_frames(folder, REF)
    assert [p.name for p in sel.paths] == [f"frame_{i + 1:04d}.jpg" for i in (0, 9, 18, 27, 36, 45, 54, 63)]
    assert sel.available == 64 and not sel.is_short()


def test_short_folder_uses_all_frames_and_is_counted_short(tmp_path):
    folder = _frames(tmp_path / "v", [f"{i}.png" for i in range(5)])
    sel = select_frames(folder, REF)
    assert len(sel.paths) == 5 and sel.is_short()


def test_missing_folder_error_names_task_row_video_and_path(tmp_path):
    missing = tmp_path / "frames" / "video7010"
    with pytest.raises(DataError) as err:
        select_frames(missing, REF)
    msg = str(err.value)
    assert "'MSR-VTT'" in msg and "row 3" in msg and "'video7010'" in msg and str(missing) in msg


def test_empty_folder_error_names_the_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no frames")
    with pytest.raises(DataError, match="holds no") as err:
        select_frames(folder, REF)
    assert str(folder) in str(err.value) and "row 3" in str(err.value)


def test_list_of_files_keeps_given_order_and_names_a_missing_file(tmp_path):
    folder = _frames(tmp_path / "v", ["b.jpg", "a.jpg"])
    sel = select_frames([folder / "b.jpg", folder / "a.jpg"], REF)
    assert [p.name for p in sel.paths] == ["b.jpg", "a.jpg"]
    with pytest.raises(DataError, match="c.jpg"):
        select_frames([folder / "a.jpg", folder / "c.jpg"], REF)
    with pytest.raises(DataError, match="empty list"):
        select_frames([], REF)


def test_unreadable_frame_error_names_its_file(tmp_path):
    folder = _frames(tmp_path / "v", ["frame_1.jpg"])
    (folder / "frame_2.jpg").write_bytes(b"not a jpeg")
    sel = select_frames(folder, REF)
    with pytest.raises(DataError, match="frame_2.jpg"):
        load_frames(sel)


def test_loaded_frames_are_rgb_in_selection_order(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    Image.new("L", (4, 4), 10).save(folder / "1.png")
    Image.new("RGB", (6, 4), "blue").save(folder / "2.png")
    images = load_frames(select_frames(folder, REF))
    assert [im.mode for im in images] == ["RGB", "RGB"] and images[1].size == (6, 4)
