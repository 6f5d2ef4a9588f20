"""MMEB-V2 visual-document reader on synthetic BEIR clones: qrels rules, page files, data versions."""

import hashlib
import io
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlm2vec.errors import DataError
from vlm2vec.mmeb_v2.layouts import clone_identity
from vlm2vec.mmeb_v2.locate import locate, read_task
from vlm2vec.mmeb_v2.metrics import query_metrics
from vlm2vec.mmeb_v2.tasks import task
from vlm2vec.mmeb_v2.versions import DataVersionError
from vlm2vec.mmeb_v2.visdoc_readers import (
    ABSENT_PAGES,
    DUPLICATE_PAGES,
    PAGES_WRITTEN,
    QRELS_DROPPED,
    QRELS_REPEATED,
    UNJUDGED,
    page_file,
    read_visdoc_task,
)
from vlm2vec.testing.synthetic_v2 import PAGE_IMAGE, page_png, write_beir, write_synthetic_v2


@pytest.fixture
def root(tmp_path):
    return write_synthetic_v2(tmp_path / "v2")


def test_vidore_reads_pages_of_the_release_and_drops_score_0_qrels(root):
    (found,) = locate(root, tasks=["ViDoRe_arxivqa"])
    assert found.media == root / "visdoc-tasks/ViDoRe_arxivqa" and found.media_layout == "reference layout"
    data = read_task(found)
    assert [q.relevant for q in data.queries] == [{11: 1.0}, {14: 1.0}]  # (2, 15, score 0) dropped
    assert data.counts == {QRELS_DROPPED: 1}
    assert list(data.candidates) == [10, 11, 12, 13, 14, 15]  # the whole corpus is the pool
    assert data.candidates[12].image == root / "visdoc-tasks/ViDoRe_arxivqa/12.png"


def test_pages_are_written_once_from_the_corpus_image_column(root):
    (found,) = locate(root, tasks=["ViDoSeek-doc"])
    assert found.media_layout == "written from corpus"
    data = read_task(found)
    assert data.counts[PAGES_WRITTEN] == 10
    page = data.candidates[1023].image
    assert page == root / "visdoc-tasks/ViDoSeek-doc/1023.png"
    with Image.open(page) as written, Image.open(io.BytesIO(page_png(3))) as source:
        assert written.tobytes() == source.tobytes()
    again = read_task(locate(root, tasks=["ViDoSeek-doc"])[0])
    assert PAGES_WRITTEN not in again.counts


def test_visrag_page_names_follow_the_stem_and_md5_rule(root):
    data = read_task(locate(root, tasks=["VisRAG_ChartQA"])[0])
    digest = hashlib.md5(b"chart_b.png").hexdigest()[:8]
    assert data.candidates["chart_b.png"].image.name == f"chart_b_{digest}.png"
    assert data.candidates["chart_b.png"].image.is_file()
    long = "x" * 60 + ".jpg"
    assert page_file(task("VisRAG_ChartQA"), root, long).name.startswith("x" * 50 + "_")


def test_graded_doc_qrels_keep_their_grades_and_the_two_ndcg_rules_differ(root):
    data = read_task(locate(root, tasks=["ViDoSeek-doc"])[0])
    q = data.queries[0]
    assert q.relevant == {1020: 2.0, 1021: 3.0, 1022: 2.0, 1023: 2.0, 1024: 2.0}
    ranked = [1021, 1020, 1022, 1023, 1024]
    assert query_metrics(ranked, q.relevant, "correct")["ndcg_linear@5"] == pytest.approx(1.0)
    assert query_metrics(ranked, q.relevant)["ndcg_linear@5"] < 1.0


def test_qrels_rules_are_counted_not_silently_applied(tmp_path):
    clone = tmp_path / "clone"
    qrels = [(1, "p1", 1), (1, "p1", 2), (2, "p9", 1), (2, "p2", 1)]
    write_beir(clone, "test", [1, 2], ["p1", "p2", "p2"], qrels)
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "p9.png").write_bytes(page_png(9))  # the absent page has a file: it is ranked
    data = read_visdoc_task(task("ViDoRe_docvqa"), clone, pages)
    assert data.queries[0].relevant == {"p1": 2.0}
    assert list(data.candidates) == ["p1", "p2", "p9"]
    assert (
        data.counts[QRELS_REPEATED] == 1
        and data.counts[DUPLICATE_PAGES] == 1
        and data.counts[ABSENT_PAGES] == 1
    )


def test_absent_page_without_image_is_an_error_naming_its_file(tmp_path):
    clone = tmp_path / "clone"
    write_beir(clone, "test", [1], ["p1"], [(1, "p7", 1)])
    with pytest.raises(DataError, match="absent from the corpus") as err:
        read_visdoc_task(task("ViDoRe_docvqa"), clone, tmp_path / "pages")
    assert str(tmp_path / "pages" / "p7.png") in str(err.value)


def test_query_without_relevant_page_is_an_error_unless_skipped(tmp_path):
    clone = tmp_path / "clone"
    write_beir(clone, "test", [1, 2, 3], ["p1"], [(1, "p1", 1), (3, "p1", 0)])
    with pytest.raises(DataError, match="2 queries have no relevant page"):
        read_visdoc_task(task("ViDoRe_docvqa"), clone, tmp_path / "pages")
    data = read_visdoc_task(task("ViDoRe_docvqa"), clone, tmp_path / "pages", skip_unjudged=True)
    assert [q.row for q in data.queries] == [1] and data.counts[UNJUDGED] == 2


def test_unreadable_corpus_image_names_the_page(tmp_path):
    clone = tmp_path / "clone"
    write_beir(clone, "test", [1], ["p1"], [(1, "p1", 1)])
    bad = pa.table({"corpus-id": ["p1"], "image": pa.array([{"bytes": b"junk", "path": None}], PAGE_IMAGE)})
    pq.write_table(bad, clone / "corpus/test-00000-of-00001.parquet")
    with pytest.raises(DataError, match="'p1'"):
        read_visdoc_task(task("ViDoRe_docvqa"), clone, tmp_path / "pages")


def test_old_page_data_is_refused_naming_the_version_found(root):
    vd = root / "visdoc-tasks"
    shutil.move(vd / "ViDoSeek-page-fixed", vd / "ViDoSeek-page")  # as in the release's BEIR archive
    (found,) = locate(root, tasks=["ViDoSeek-page"])
    assert not found.ready and "before the 2025-11-03 page fix" in found.problems[0]
    with pytest.raises(DataVersionError, match="'ViDoSeek-page' is the data before"):
        read_visdoc_task(task("ViDoSeek-page"), vd / "ViDoSeek-page", vd / "images/ViDoSeek-page")
    data = read_visdoc_task(
        task("ViDoSeek-page"), vd / "ViDoSeek-page", vd / "images/ViDoSeek-page", allow_old=True
    )
    assert data.data_version == "ViDoSeek-page#page-old"


def test_page_fixed_clone_is_recognised_by_its_git_remote(root):
    clone = root / "visdoc-tasks/renamed"
    shutil.move(root / "visdoc-tasks/ViDoSeek-page-fixed", clone)
    (clone / ".git").mkdir()
    (clone / ".git/config").write_text(
        '[remote "origin"]\n\turl = https://huggingface.co/datasets/VLM2Vec/ViDoSeek-page-fixed\n'
    )
    assert clone_identity(clone) == "VLM2Vec/ViDoSeek-page-fixed"
    (found,) = locate(root, {"ViDoSeek-page": clone}, tasks=["ViDoSeek-page"])
    assert found.ready and found.data_version == "VLM2Vec/ViDoSeek-page-fixed#page-fixed"
    assert found.media_layout == "Qwen3-port layout"
