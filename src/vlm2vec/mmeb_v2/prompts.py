"""The instruction strings of the MMEB-V2 video and visual-document tasks, and how a side's text is built.

The published numbers come from the reference evaluator's strings, not the paper's form, so these are
kept verbatim (MMEB-V2.md §4.2). A side's text is the instruction, then a space and the data text when
there is one (caption, question block, query), with the backbone's visual token and a space put in
front when the side holds a video or an image; video and document prompts end without a newline.
Candidate texts of classification and QA tasks are the bare label or option. MomentSeeker's query
instruction depends on whether the query holds nothing, an image or a video besides its text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .records import Candidate, Query
from .tasks import Task

VIDEO, IMAGE = "video", "image"
QA_PROMPT = (
    "Given a video and a question, select the most accurate answer from the provided candidates. "
    "Return only the exact text of your chosen answer. Question: "
)
_VIDEO_TARGET = "Understand the content of the provided video."
_QUERY: dict[str, tuple[str, str | None]] = {
    "K700": ("Recognize the category of the video content.", VIDEO),
    "SmthSmthV2": (
        "What actions or object interactions are being performed by the person in the video?",
        VIDEO,
    ),
    "HMDB51": ("What actions or objects interactions are the person in the video doing?", VIDEO),
    "UCF101": ("What activities or sports are being performed by the person in the video?", VIDEO),
    "Breakfast": ("Recognize the breakfast type that the person is cooking in the video. ", VIDEO),
    **{name: (QA_PROMPT, VIDEO) for name in ("Video-MME", "NExTQA", "EgoSchema", "ActivityNetQA", "MVBench")},
    "MSR-VTT": ("Find a video that contains the following visual content:", None),
    "MSVD": ("Find the video snippet that corresponds to the given summary:", None),
    "DiDeMo": ("Find a video that includes the following described scenes:", None),
    "YouCook2": ("Find a video that demonstrates the following action while making a recipe:", None),
    "VATEX": ("Select a video that fits the description provided:", None),
    "QVHighlight": ("Find the clip that corresponds to the described scene in the given video:", VIDEO),
    "Charades-STA": ("Find the clip that corresponds to the described scene in the given video:", VIDEO),
}
_MOMENTSEEKER_QUERY = {
    None: "Find the clip that corresponds to the given text:",
    IMAGE: "Select the video clip that aligns with the given text and image:",
    VIDEO: "Find the clip that corresponds to the given sentence and video segment:",
}
_VISDOC_QUERY = "Find a document image that matches the given query:"
_VISDOC_TARGET = "Understand the content of the provided document image."


@dataclass(frozen=True)
class Side:
    """The instruction of one side and the visual input it carries (``video``, ``image`` or None)."""

    instruction: str
    visual: str | None


def query_side(task: Task, query: Query) -> Side:
    """Instruction and visual kind of a query of a video or visual-document task."""
    if task.modality == "visdoc":
        return Side(_VISDOC_QUERY, None)
    if task.parser == "momentseeker":
        visual = VIDEO if query.video is not None else IMAGE if query.image is not None else None
        return Side(_MOMENTSEEKER_QUERY[visual], visual)
    if task.name not in _QUERY:
        raise KeyError(f"no MMEB-V2 video or document prompt for task {task.name!r}")
    return Side(*_QUERY[task.name])


def target_side(task: Task, candidate: Candidate) -> Side:
    """Instruction and visual kind of a candidate: bare text for labels and options."""
    if candidate.image is not None:
        return Side(_VISDOC_TARGET, IMAGE)
    if candidate.video is not None:
        clip = task.parser == "momentseeker"
        return Side(_VIDEO_TARGET.replace("video.", "video clip.") if clip else _VIDEO_TARGET, VIDEO)
    return Side("", None)


def assemble(side: Side, text: str, tokens: Mapping[str, str]) -> str:
    """The side's full text: ``[token + " "] + instruction [+ " " + text]`` (parts that are empty are
    left out); `tokens` maps ``video`` / ``image`` to the backbone's placeholder."""
    body = " ".join(part for part in (side.instruction, text) if part)
    return f"{tokens[side.visual]} {body}" if side.visual else body
