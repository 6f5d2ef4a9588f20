"""MMEB-V2 prompt strings, built for the Qwen2-VL tokens, equal the reference's strings (MMEB-V2.md §4.2)."""

import pytest

from vlm2vec.mmeb_v2.locate import locate, read_task
from vlm2vec.mmeb_v2.prompts import assemble, query_side, target_side
from vlm2vec.mmeb_v2.records import Query
from vlm2vec.mmeb_v2.tasks import task
from vlm2vec.testing.synthetic_v2 import write_synthetic_v2

QWEN = {"video": "<|video_pad|>", "image": "<|image_pad|>"}
P = (
    "<|video_pad|> Given a video and a question, select the most accurate answer from the provided candidates. "
    "Return only the exact text of your chosen answer. Question:  "
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_v2(tmp_path_factory.mktemp("v2"))


def _texts(root, name):
    data = read_task(locate(root, tasks=[name])[0])
    q = data.queries[0]
    first = data.candidates[data.pool(q)[0]]
    return (
        assemble(query_side(data.task, q), q.text, QWEN),
        assemble(target_side(data.task, first), first.text, QWEN),
        data,
    )


def test_classification_query_has_the_video_token_and_targets_are_bare_labels(root):
    query, target, _ = _texts(root, "K700")
    assert query == "<|video_pad|> Recognize the category of the video content."
    assert target == "abseiling"


def test_breakfast_keeps_its_trailing_space():
    side = query_side(task("Breakfast"), Query(1, "", {}))
    assert assemble(side, "", QWEN) == (
        "<|video_pad|> Recognize the breakfast type that the person is cooking in the video. "
    )


def test_qa_prompt_puts_two_spaces_before_the_question(root):
    query, target, _ = _texts(root, "ActivityNetQA")
    assert query == P + "is it raining? (A) yes; (B) no."
    assert target == "yes"
    query, target, _ = _texts(root, "Video-MME")
    assert query == P + "What fruit is shown?\nA. Apples.\nB. Pears.\nC. Figs."
    assert target == "Apples"


def test_video_retrieval_query_is_text_and_target_the_video(root):
    query, target, _ = _texts(root, "MSR-VTT")
    assert query == "Find a video that contains the following visual content: a clip number 0"
    assert target == "<|video_pad|> Understand the content of the provided video."


def test_momentseeker_instruction_follows_the_query_kind(root):
    data = read_task(locate(root, tasks=["MomentSeeker"])[0])
    texts = [assemble(query_side(data.task, q), q.text, QWEN) for q in data.queries]
    assert texts == [
        "Find the clip that corresponds to the given text: open the door",
        "<|image_pad|> Select the video clip that aligns with the given text and image: same person",
        "<|video_pad|> Find the clip that corresponds to the given sentence and video segment: then what",
    ]
    clip = next(iter(data.candidates.values()))
    assert assemble(target_side(data.task, clip), "", QWEN) == (
        "<|video_pad|> Understand the content of the provided video clip."
    )


def test_moment_retrieval_query_holds_the_full_video(root):
    query, target, _ = _texts(root, "QVHighlight")
    assert (
        query
        == "<|video_pad|> Find the clip that corresponds to the described scene in the given video: a dog runs"
    )
    assert target == "<|video_pad|> Understand the content of the provided video."


def test_document_query_and_page_target(root):
    query, target, _ = _texts(root, "ViDoRe_arxivqa")
    assert query == "Find a document image that matches the given query: question 1"
    assert target == "<|image_pad|> Understand the content of the provided document image."
