"""What MMEB-train and MMEB-eval share: examples of each kind drawn from a seeded random stream (a query
and its positive from a pool of candidates), instruction wordings, negatives (hard ones first when
asked), and the parquet and argument checks of both writers."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ...atomic_files import atomic_write_bytes
from .images import (
    COLORS,
    COUNT_WORDS,
    SHAPES,
    WORDS,
    Scene,
    crop_object,
    render_scene,
    sample_scene,
    save_png,
)
from .kinds import KINDS

# Instruction wordings per kind; index 0 is the MMEB original, the rest feed `diverse_instruction`.
QUERY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "classification": (
        "<|image_1|>\nRepresent the given image for classification",
        "<|image_1|>\nIdentify the category of the main object in the image",
        "<|image_1|>\nWhat kind of object is shown most prominently in this picture?",
        "<|image_1|>\nClassify the largest object in the image",
    ),
    "vqa": (
        "<|image_1|>\nRepresent the given image with the following question: {}",
        "<|image_1|>\nAnswer the question about this image: {}",
        "<|image_1|>\nLook at the picture and answer: {}",
        "<|image_1|>\nGiven the image, respond to the question: {}",
    ),
    "retrieval_t2i": (
        "Find me an everyday image that matches the given caption: {}",
        "Retrieve the picture described by this caption: {}",
        "Which image shows the following? {}",
        "Search for an image matching the description: {}",
    ),
    "retrieval_i2t": (
        "<|image_1|>\nFind an image caption describing the given everyday image.",
        "<|image_1|>\nWrite a description of what this image shows.",
        "<|image_1|>\nRetrieve the caption that fits this picture.",
    ),
    "grounding": (
        '<|image_1|>\nSelect the portion of the image that isolates the object labeled as "{}"',
        '<|image_1|>\nFind the region of the image that contains the "{}"',
        "<|image_1|>\nLocate the {} in the picture",
    ),
}
# Text that goes with an image target (kinds whose targets are images).
TARGET_TEMPLATES: dict[str, tuple[str, ...]] = {
    "retrieval_t2i": (
        "<|image_1|>\nRepresent the given image.",
        "<|image_1|>\nEncode this image for retrieval.",
        "<|image_1|>\nRepresent the picture.",
    ),
    "grounding": (
        "<|image_1|>\nRepresent the given cropped image of the object",
        "<|image_1|>\nEncode this cropped region of an image",
    ),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Candidate:
    """One target. `key` is its meaning: a candidate with the positive's key is never a negative."""

    text: str  # the target text; "" for an image target (its text is the target instruction)
    image: str  # relative image path, "" when none
    key: str
    attrs: frozenset[str] = frozenset()  # sharing one with the positive makes a negative hard
    group: int = -1  # scene id; same scene as the positive is the hardest negative


@dataclass(frozen=True)
class Example:
    content: str  # what fills the query template: question, caption or label
    image: str  # relative query image path, "" when none
    pos: Candidate


class ImageStore:
    """Saves PNGs under `image_root/prefix/` and returns their paths relative to `image_root`."""

    def __init__(self, image_root: Path, prefix: str, query_stem: str, cand_stem: str) -> None:
        self.image_root, self.prefix = image_root, prefix
        self.query_stem, self.cand_stem = query_stem, cand_stem

    def save(self, name: str, image: Image.Image) -> str:
        relative = f"{self.prefix}/{name}.png"
        save_png(image, self.image_root / relative)
        return relative

    def query(self, index: int, image: Image.Image) -> str:
        return self.save(f"{self.query_stem}_{index:05d}", image)

    def candidate(self, index: int, image: Image.Image) -> str:
        return self.save(f"{self.cand_stem}_{index:05d}", image)


# (rng, store, n, min_pool, num_classes) -> (examples, pool of candidates shared by all examples)
Builder = Callable[..., tuple[list[Example], list[Candidate]]]


def _build_classification(
    rng: random.Random, store: ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[Example], list[Candidate]]:
    vocab = [(color, shape) for color in COLORS for shape in SHAPES]
    classes = vocab if num_classes is None else rng.sample(vocab, num_classes)
    pool = [Candidate(f"{c} {s}", "", f"{c} {s}", frozenset({c, s})) for c, s in classes]
    examples = []
    for i in range(n):
        k = rng.randrange(len(classes))
        # A big main object and small distractors: the label is the dominant colour and shape.
        scene = sample_scene(rng, main_scale=(0.5, 0.65), other_scale=(0.15, 0.24), main=classes[k])
        examples.append(Example("", store.query(i, render_scene(scene)), pool[k]))
    return examples, pool


def _build_vqa(
    rng: random.Random, store: ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[Example], list[Candidate]]:
    answers = {"color": tuple(COLORS), "shape": SHAPES, "count": COUNT_WORDS, "text": WORDS}
    pool = [Candidate(a, "", a, frozenset({kind})) for kind, words in answers.items() for a in words]
    by_answer = {c.key: c for c in pool}
    examples = []
    for i in range(n):
        scene = sample_scene(rng, text_prob=0.4)
        qtype = rng.choice(["color", "shape", "count"] + (["text"] if scene.text else []))
        obj = rng.choice(scene.objects)
        if qtype == "color":
            question, answer = f"What color is the {obj.shape}?", obj.color
        elif qtype == "shape":
            question, answer = f"What shape is the {obj.color} object?", obj.shape
        elif qtype == "count":
            question, answer = "How many objects are there in the image?", COUNT_WORDS[len(scene.objects) - 1]
        else:
            question, answer = "What word is written in the image?", str(scene.text)
        examples.append(Example(question, store.query(i, render_scene(scene)), by_answer[answer]))
    return examples, pool


def _unique_scene(rng: random.Random, seen: set[str], **kwargs) -> Scene:
    """A scene whose caption is new, so a caption identifies exactly one image of the dataset."""
    for _ in range(1000):
        scene = sample_scene(rng, **kwargs)
        if scene.caption() not in seen:
            seen.add(scene.caption())
            return scene
    raise RuntimeError("could not draw a scene with a new caption")


def _labels(scene: Scene) -> frozenset[str]:
    return frozenset(o.label for o in scene.objects)


def _build_retrieval_t2i(
    rng: random.Random, store: ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[Example], list[Candidate]]:
    seen: set[str] = set()
    examples, pool = [], []
    for i in range(max(n, min_pool)):  # beyond n: extra distractor images for a small query set
        scene = _unique_scene(rng, seen)
        cand = Candidate("", store.candidate(i, render_scene(scene)), scene.caption(), _labels(scene))
        pool.append(cand)
        if i < n:
            examples.append(Example(scene.caption(), "", cand))
    return examples, pool


def _build_retrieval_i2t(
    rng: random.Random, store: ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[Example], list[Candidate]]:
    seen: set[str] = set()
    examples, pool = [], []
    for i in range(max(n, min_pool)):  # beyond n: extra distractor captions
        scene = _unique_scene(rng, seen)
        cand = Candidate(scene.caption(), "", scene.caption(), _labels(scene))
        pool.append(cand)
        if i < n:
            examples.append(Example("", store.query(i, render_scene(scene)), cand))
    return examples, pool


def _build_grounding(
    rng: random.Random, store: ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[Example], list[Candidate]]:
    examples: list[Example] = []
    pool: list[Candidate] = []

    def add_scene(index: int, stem: str) -> tuple[Image.Image, list[Candidate]]:
        scene = sample_scene(rng, num_objects=(2, 3), text_prob=0.2)
        while len(scene.objects) < 2:  # grounding needs something to tell apart
            scene = sample_scene(rng, num_objects=(2, 3), text_prob=0.2)
        image = render_scene(scene)
        crops = [
            Candidate(
                "",
                store.save(f"{stem}_{index:05d}_obj{j}", crop_object(image, obj)),
                obj.label,
                frozenset({obj.color, obj.shape}),
                group=index,
            )
            for j, obj in enumerate(scene.objects)
        ]
        pool.extend(crops)
        return image, crops

    for i in range(n):
        image, crops = add_scene(i, store.query_stem)
        target = crops[rng.randrange(len(crops))]
        examples.append(Example(target.key, store.query(i, image), target))
    extra = n
    while min(sum(c.key != ex.pos.key for c in pool) for ex in examples) < min_pool - 1:
        add_scene(extra, store.cand_stem)
        extra += 1
    return examples, pool


BUILDERS: dict[str, Builder] = {
    "classification": _build_classification,
    "vqa": _build_vqa,
    "retrieval_t2i": _build_retrieval_t2i,
    "retrieval_i2t": _build_retrieval_i2t,
    "grounding": _build_grounding,
}


def pick_negatives(
    rng: random.Random, pos: Candidate, pool: Sequence[Candidate], k: int, hard: bool
) -> list[Candidate]:
    """k distinct negatives with a meaning other than the positive's; hard ones first when `hard`."""
    seen = {(pos.text, pos.image)}
    eligible = []
    for cand in pool:
        if cand.key != pos.key and (cand.text, cand.image) not in seen:
            seen.add((cand.text, cand.image))
            eligible.append(cand)
    if len(eligible) < k:
        raise ValueError(f"only {len(eligible)} possible negatives for {pos.key!r}, {k} needed")
    if not hard:
        return rng.sample(eligible, k)

    def hardness(cand: Candidate) -> int:
        if pos.group >= 0 and cand.group == pos.group:
            return 0
        return 1 if cand.attrs & pos.attrs else 2

    chosen = sorted(rng.sample(eligible, len(eligible)), key=hardness)[:k]
    rng.shuffle(chosen)
    return chosen


def seeded_rng(*parts: object) -> random.Random:
    """A random stream fixed by its parts (not Python's salted hash), independent of other datasets."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def check_kinds(mapping: Mapping[str, str], what: str) -> dict[str, str]:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{what} must be a non-empty mapping of name -> kind, got {mapping!r}")
    for name, kind in mapping.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"bad {what} name {name!r}: use letters, digits, '_', '-', '.'")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} for {name!r}; expected one of {KINDS}")
    return dict(mapping)


def check_positive(value: int, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def write_parquet(path: Path, columns: dict[str, list], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=schema), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def target_text(cand: Candidate, template: str | None) -> str:
    if not cand.image:
        return cand.text
    assert template is not None, "image targets need a target instruction"
    return template
