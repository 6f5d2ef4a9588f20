"""The VLM2Vec-V2 training sources read from synthetic copies of their published layouts: each row
mapped to the reference's pair and strings, pages written once by content, frames sampled as MMEB-V2,
and bad input (missing frames or pages, weights <= 0) named by source, row and path or key."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from vlm2vec.config import ConfigError, DataConfig, PairSourceConfig, load_config
from vlm2vec.data import BadRowError, PairDataset, build_sources, page_files, read_mmeb_train, read_pairs
from vlm2vec.data.page_sources import read_colpali, read_visrag
from vlm2vec.data.v2_prompts import VISRAG_PROMPTS
from vlm2vec.data.v2_sources import v2_source_names
from vlm2vec.data.video_sources import read_llavahound_caption, read_llavahound_qa
from vlm2vec.errors import DataError
from vlm2vec.testing import MMEB_TRAIN_KINDS, write_synthetic_mmeb_train
from vlm2vec.testing.synthetic_v2_train import (
    conversation,
    png_bytes,
    write_colpali_train_set,
    write_jsonl,
    write_synthetic_v2_train,
    write_video_frames,
    write_visrag_indomain,
)

ROOT = Path(__file__).resolve().parents[1]


def _page(colour) -> bytes:
    return png_bytes(Image.new("RGB", (30, 40), colour))


def _v2_config(data, **extra) -> DataConfig:
    return DataConfig(
        colpali_train_dir=str(data.colpali_train_dir),
        visrag_indomain_dir=str(data.visrag_indomain_dir),
        llavahound_caption_file=str(data.llavahound_caption_file),
        llavahound_qa_file=str(data.llavahound_qa_file),
        llavahound_frames_dir=str(data.llavahound_frames_dir),
        **extra,
    )


def test_colpali_rows_are_page_and_question_to_answer_and_identical_pages_share_one_file(tmp_path):
    red, blue = _page("red"), _page("blue")
    rows = [
        {"query": "what is red", "answer": "a box", "image": red},
        {"query": "what is blue", "answer": "a sky", "image": blue},
        {"query": "again red", "answer": "still a box", "image": red},
    ]
    clone = write_colpali_train_set(tmp_path / "colpali", rows)
    source = read_colpali(clone, tmp_path / "pages")
    records = [source.record(i) for i in range(3)]
    assert [r.qry.text for r in records] == [f"<|image_1|> {r['query']}" for r in rows]
    assert [r.pos.text for r in records] == [r["answer"] for r in rows]
    assert all(not r.pos.images for r in records)
    assert records[0].qry.images == records[2].qry.images != records[1].qry.images
    assert [open(r.qry.images[0], "rb").read() for r in records] == [red, blue, red]
    assert len(list((tmp_path / "pages").glob("*.png"))) == 2

    retrieval = read_colpali(clone, tmp_path / "pages", direction="retrieval").record(1)
    assert retrieval.qry.text == "Find a document image that matches the given query: what is blue"
    assert not retrieval.qry.images and retrieval.pos.images == records[1].qry.images
    assert retrieval.pos.text == "<|image_1|> Understand the content of the provided document image."


def test_a_second_read_takes_the_manifest_and_writes_no_page(tmp_path, monkeypatch):
    clone = write_colpali_train_set(tmp_path / "c", [{"query": "q", "answer": "a", "image": _page("red")}])
    first = read_colpali(clone, tmp_path / "pages").record(0)

    def refuse(*_):
        raise AssertionError("a page was decoded or written again")

    monkeypatch.setattr(page_files, "write_page", refuse)
    assert read_colpali(clone, tmp_path / "pages").record(0) == first
    write_colpali_train_set(clone, [{"query": "q2", "answer": "a", "image": _page("red")}])  # shard changed
    with pytest.raises(AssertionError, match="written again"):
        read_colpali(clone, tmp_path / "pages")


def test_visrag_rows_carry_the_source_prompts_with_their_spaces(tmp_path):
    rows = [
        {"query": "what trend", "source": "PlotQA", "image": _page("red")},
        {"query": "which slide", "source": "SlideVQA", "image": _page("green")},
        {"query": "plain", "source": "Elsewhere", "image": _page("blue")},
    ]
    source = read_visrag(write_visrag_indomain(tmp_path / "v", rows), tmp_path / "pages")
    plot, slide, other = (source.record(i) for i in range(3))
    qp, tp = VISRAG_PROMPTS["PlotQA"]
    assert qp.endswith("query: ") and plot.qry.text == qp + " what trend "
    assert plot.pos.text == tp + "  <|image_1|>" and not plot.qry.images
    assert slide.qry.text.startswith("This query is related to retrieving a relevant presentation slide")
    assert slide.pos.text == "A presentation slide with text, bullet points, and diagrams.  <|image_1|>"
    assert (other.qry.text, other.pos.text) == ("plain ", " <|image_1|>")
    assert open(other.pos.images[0], "rb").read() == rows[2]["image"]


def _hound(tmp_path, frames=10):
    write_video_frames(
        tmp_path / "frames" / "v1", [Image.new("RGB", (32, 24), (9 * k, 0, 0)) for k in range(frames)]
    )
    path = write_jsonl(
        tmp_path / "caption.jsonl",
        [conversation("v1", "<video>\nDescribe it.", "a red pan", "c1"),
         conversation("gone", "<video>\nDescribe it.", "nothing", "c2")],
    )  # fmt: skip
    return path, tmp_path / "frames"


def test_the_caption_file_is_read_in_both_directions_and_qa_with_its_prefix(tmp_path):
    path, frames = _hound(tmp_path)
    cap = read_llavahound_caption(path, frames, direction="caption_retrieval", name="cap").record(0)
    assert (cap.qry.text, cap.pos.text) == ("<|video_1|>\nDescribe it.", "a red pan")
    assert cap.qry.videos == (str(frames / "v1"),) and not cap.pos.videos
    vid = read_llavahound_caption(path, frames, direction="video_retrieval", name="vid").record(0)
    assert vid.qry.text == "Find a video that contains the following visual content: a red pan"
    assert vid.pos.text == "Understand the content of the provided video: <|video_1|>"
    assert vid.pos.videos == (str(frames / "v1"),) and not vid.qry.videos
    qa = read_llavahound_qa(path, frames, max_rows=1)
    assert len(qa) == 1
    assert (
        qa.record(0).qry.text
        == "Answer a question based on the content of a video. <|video_1|>\nDescribe it."
    )


def test_training_frames_are_the_mmeb_v2_linspace_of_the_folder(tmp_path):
    path, frames = _hound(tmp_path, frames=10)
    source = read_llavahound_caption(path, frames, direction="caption_retrieval", name="cap")
    example = PairDataset([source], num_video_frames=8)[0]
    chosen = [int(p.split("_")[-1].split(".")[0]) for p in example.qry.paths]
    assert chosen == [1, 2, 3, 4, 6, 7, 8, 10]  # int(linspace(0, 9, 8)) + 1: first and last kept
    assert len(example.qry.videos[0]) == 8


def test_a_missing_frame_folder_names_source_row_and_path_or_is_counted_as_skipped(tmp_path):
    path, frames = _hound(tmp_path)
    source = read_llavahound_caption(
        path, frames, direction="video_retrieval", name="video_caption_300k-video"
    )
    with pytest.raises(BadRowError) as err:
        PairDataset([source])[1]
    message = str(err.value)
    assert "source 'video_caption_300k-video' row 2:" in message and str(frames / "gone") in message
    assert "\n" not in message
    skipped = PairDataset([source], skip_bad_rows=True)[1]
    assert skipped.row == 0 and len(skipped.skipped) == 1 and "row 2" in skipped.skipped[0]


def test_a_row_without_page_bytes_names_source_row_and_shard_or_is_counted_as_skipped(tmp_path):
    rows = [
        {"query": "q1", "answer": "a", "image": _page("red")},
        {"query": "q2", "answer": "b", "image": None},
    ]
    clone = write_colpali_train_set(tmp_path / "c", rows)
    with pytest.raises(BadRowError, match=r"source 'colpali_train_set' row 2: no page image.*train-00000"):
        read_colpali(clone, tmp_path / "pages")
    source = read_colpali(clone, tmp_path / "pages2", skip_bad_rows=True)
    example = PairDataset([source], skip_bad_rows=True)[1]
    assert example.row == 0 and "row 2" in example.skipped[0] and "missing" in example.skipped[0]


def test_an_unreadable_page_names_source_row_and_its_file(tmp_path):
    clone = write_colpali_train_set(
        tmp_path / "c", [{"query": "q", "answer": "a", "image": b"\x89PNG broken"}]
    )
    source = read_colpali(clone, tmp_path / "pages")
    with pytest.raises(BadRowError, match=r"source 'colpali_train_set' row 1: cannot read image.*pages/"):
        PairDataset([source])[0]


def test_a_malformed_conversation_line_names_file_and_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(conversation("v", "<video> q", "a", "1")) + "\n" + '{"video": "v"}\n')
    with pytest.raises(DataError, match=r"qa\.jsonl: line 2: needs 'video' and 'conversations'"):
        read_llavahound_qa(path, tmp_path)


def test_build_sources_reads_every_v2_source_by_its_recipe_name_and_weight(tmp_path):
    data = write_synthetic_v2_train(tmp_path, rows=3, videos=2, frames=4)
    cfg = _v2_config(data, subset_weights={"visrag-indomain": 12.0, "video_qa_240k": 5.0})
    sources = build_sources(cfg)
    names = [
        "colpali_train_set",
        "visrag-indomain",
        "video_caption_300k",
        "video_caption_300k-video",
        "video_qa_240k",
    ]
    assert [s.name for s in sources] == names
    assert [s.weight for s in sources] == [1.0, 12.0, 1.0, 1.0, 5.0]
    assert [len(s) for s in sources] == [3, 3, 2, 2, 2]
    one_way = build_sources(_v2_config(data, llavahound_caption_directions=["video_retrieval"]))
    assert "video_caption_300k" not in [s.name for s in one_way]
    with pytest.raises(ConfigError, match="are set but data.mmeb_train_dir is not"):
        build_sources(_v2_config(data, subset_weights={"VisDial": 1.0}))


@pytest.mark.parametrize(
    "flag",
    ["--data.subset_weights={colpali_train_set: 0}", "--data.subset_weights={visrag-indomain: -1}"],
)
def test_a_source_weight_of_zero_or_below_is_a_one_line_config_error(flag):
    with pytest.raises(ConfigError, match=r"data\.subset_weights\.\S+ must be > 0") as err:
        load_config(None, [flag])
    assert "\n" not in str(err.value)


def test_a_pair_file_weight_of_zero_and_hound_files_without_frames_are_config_errors():
    with pytest.raises(ConfigError, match=r"data\.pairs\[0\]\.weight must be > 0"):
        DataConfig(pairs=[PairSourceConfig(path="x.jsonl", weight=0.0)]).validate()
    with pytest.raises(ConfigError, match=r"data\.llavahound_frames_dir is not set"):
        DataConfig(llavahound_qa_file="qa.jsonl").validate()
    with pytest.raises(ConfigError, match=r"data\.llavahound_caption_directions must be"):
        DataConfig(llavahound_caption_directions=["backwards"]).validate()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_custom_pairs_hold_frame_folders_frame_lists_and_pages_in_every_format(tmp_path, fmt):
    write_video_frames(tmp_path / "clip", [Image.new("RGB", (32, 24), (20 * k, 9, 9)) for k in range(12)])
    Image.open(io.BytesIO(_page("red"))).save(tmp_path / "page.png")
    listed = ["clip/c01_0003.jpeg", "clip/c01_0001.jpeg"]
    rows = [
        {"q": "a clip", "qv": "clip", "t": "its caption", "ti": None, "tv": None},
        {"q": "a question", "qv": None, "t": "the page", "ti": "page.png", "tv": None},
        {
            "q": "find it",
            "qv": None,
            "t": "<|video_1|> the video",
            "ti": None,
            "tv": listed if fmt != "csv" else "clip",
        },
    ]
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        pa.parquet.write_table(pa.Table.from_pylist(rows), path)
    else:
        lines = ["q,qv,t,ti,tv"] + [
            ",".join(str(r[k] or "") for k in ("q", "qv", "t", "ti", "tv")) for r in rows
        ]
        path.write_text("\n".join(lines) + "\n")
    cfg = PairSourceConfig(name="mine", path=str(path), qry_text="q", qry_image=None, pos_text="t",
                           pos_image="ti", qry_video="qv", pos_video="tv")  # fmt: skip
    dataset = PairDataset([read_pairs(cfg)], num_video_frames=8)
    clip, page, found = dataset[0], dataset[1], dataset[2]
    assert clip.qry.text == "<|video_1|>\na clip" and len(clip.qry.videos[0]) == 8
    assert page.pos.text == "<|image_1|>\nthe page" and page.pos.images[0].getpixel((0, 0)) == (255, 0, 0)
    want = [str(tmp_path / p) for p in listed] if fmt != "csv" else 8
    got = list(found.pos.paths) if fmt != "csv" else len(found.pos.videos[0])
    assert got == want


@pytest.mark.parametrize("recipe", ["vlm2vec_v2.yaml", "vlm2vec_v2_qwen3vl.yaml"])
def test_the_v2_recipes_weight_every_source_they_read_as_the_release(recipe):
    cfg = load_config(ROOT / "configs" / "train" / recipe)
    read = set(cfg.data.subsets) | set(v2_source_names(cfg.data))
    assert set(cfg.data.subset_weights) == read and len(read) == 25
    documents = ("colpali_train_set", "visrag-indomain")
    videos = ("video_caption_300k", "video_caption_300k-video", "video_qa_240k")
    share = {
        kind: sum(w for name, w in cfg.data.subset_weights.items() if (name in names) == inside)
        for kind, names, inside in (
            ("image", documents + videos, False),
            ("doc", documents, True),
            ("video", videos, True),
        )
    }
    assert share == {"image": 15, "doc": 22, "video": 15}  # the facts: 15 / 22 / 15 of 52
    assert (cfg.train.per_device_batch_size * 8, cfg.train.max_steps, cfg.train.lr) == (1024, 5000, 5e-5)
    assert cfg.data.subset_max_rows["MSCOCO_i2t"] == 120000 and cfg.data.num_video_frames == 8


def test_per_subset_row_caps_override_the_common_cap_and_a_stray_name_is_named(tmp_path):
    kinds = {name: MMEB_TRAIN_KINDS[name] for name in ("ImageNet_1K", "MSCOCO_i2t")}
    root = write_synthetic_mmeb_train(tmp_path, subsets=kinds, rows_per_subset=6)
    sources = read_mmeb_train(root, max_rows_per_subset=5, max_rows={"MSCOCO_i2t": 2})
    assert {s.name: len(s) for s in sources} == {"ImageNet_1K": 5, "MSCOCO_i2t": 2}
    with pytest.raises(DataError, match=r"data\.subset_max_rows names subset\(s\) \['VisDial'\]"):
        read_mmeb_train(root, max_rows={"VisDial": 2})
