"""Synthetic MMEB-train and MMEB-eval folders with learnable content, for tests and the CPU demo.

The folders have the real layouts and columns (REFERENCE.md §4), so the real readers are exercised:

- train: `<root>/<Subset>/<split>-00000-of-00001.parquet`, images under `<root>/images/<Subset>/`,
  paths relative to `<root>` (the default image root), e.g. `images/ImageNet_1K/img_00012.png`.
- eval: `<root>/<Dataset>/test-00000-of-00001.parquet`, images under `<root>/images/<Dataset>/`,
  paths relative to `<root>/images` (as in MMEB-eval's images.zip), e.g. `ImageNet-1K/q_00003.png`.

Content comes from `synthetic_images`: coloured shapes on grey backgrounds. A class name is the colour
and shape of the main (largest) object, a caption lists the objects, a question asks for a colour, a
shape, a count or the written word, and a grounding target is the crop of the named object. Every
dataset draws from its own random stream (seeded by seed, split side and name), so adding a dataset
changes no other, and train and eval never share images while sharing one vocabulary.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vlm2vec.testing.synthetic_images import (
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

from ..files import atomic_write_bytes

KINDS: tuple[str, ...] = ("classification", "vqa", "retrieval_t2i", "retrieval_i2t", "grounding")
TRAIN_SPLITS: tuple[str, ...] = ("original", "diverse_instruction")
TRAIN_COLUMNS: tuple[str, ...] = tuple(
    "qry qry_image_path pos_text pos_image_path neg_text neg_image_path".split()
)
EVAL_COLUMNS: tuple[str, ...] = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
IMAGE_TOKEN = "<|image_1|>"

DEFAULT_TRAIN_SUBSETS: dict[str, str] = {
    "ImageNet_1K": "classification",
    "OK-VQA": "vqa",
    "MSCOCO_t2i": "retrieval_t2i",
    "MSCOCO_i2t": "retrieval_i2t",
    "MSCOCO": "grounding",
}
DEFAULT_EVAL_DATASETS: dict[str, str] = {
    "ImageNet-1K": "classification",
    "Place365": "classification",  # one OOD dataset, so IND/OOD tables have both sides
    "OK-VQA": "vqa",
    "MSCOCO_t2i": "retrieval_t2i",
    "MSCOCO_i2t": "retrieval_i2t",
    "MSCOCO": "grounding",
}
# Meta-task (REFERENCE.md §4) -> synthetic kind; retrieval is mostly text -> image in MMEB.
KIND_BY_META_TASK: dict[str, str] = {
    "classification": "classification",
    "vqa": "vqa",
    "retrieval": "retrieval_t2i",
    "grounding": "grounding",
}
_RETRIEVAL_I2T = {"VisualNews_i2t", "MSCOCO_i2t", "OVEN"}
MMEB_EVAL_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ["ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397"]
        + ["Place365", "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211"],
        "classification",
    ),
    **dict.fromkeys(
        ["OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W"]
        + ["ScienceQA", "VizWiz", "GQA", "TextVQA"],
        "vqa",
    ),
    **{
        name: "retrieval_i2t" if name in _RETRIEVAL_I2T else "retrieval_t2i"
        for name in ["VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i", "MSCOCO_i2t"]
        + ["NIGHTS", "WebQA", "FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS"]
    },
    **dict.fromkeys(["MSCOCO", "RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"], "grounding"),
}
_TRAIN_NAMES = (
    ["ImageNet_1K", "N24News", "HatefulMemes", "VOC2007", "SUN397", "OK-VQA", "A-OKVQA", "DocVQA"]
    + ["InfographicsVQA", "ChartQA", "Visual7W", "VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t"]
    + ["MSCOCO_t2i", "MSCOCO_i2t", "NIGHTS", "WebQA", "MSCOCO"]
)
# The 20 MMEB-train subsets; the train name of ImageNet-1K is ImageNet_1K.
MMEB_TRAIN_KINDS: dict[str, str] = {
    name: MMEB_EVAL_KINDS[name.replace("_1K", "-1K")] for name in _TRAIN_NAMES
}

# Instruction wordings per kind; index 0 is the MMEB original, the rest feed `diverse_instruction`.
_QUERY_TEMPLATES: dict[str, tuple[str, ...]] = {
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
_TARGET_TEMPLATES: dict[str, tuple[str, ...]] = {
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
# Eval kinds whose negatives are chosen hard-first (same scene / same answer type).
_HARD_EVAL_KINDS = {"vqa", "grounding"}
# Kinds whose candidates come from a fixed vocabulary cap num_candidates (classes; answers).
_MAX_CANDIDATES = {
    "classification": len(COLORS) * len(SHAPES),
    "vqa": len(COLORS) + len(SHAPES) + len(COUNT_WORDS) + len(WORDS),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class _Cand:
    """One target. `key` is its meaning: a candidate with the positive's key is never a negative."""

    text: str  # the target text; "" for an image target (its text is the target instruction)
    image: str  # relative image path, "" when none
    key: str
    attrs: frozenset[str] = frozenset()  # sharing one with the positive makes a negative hard
    group: int = -1  # scene id; same scene as the positive is the hardest negative


@dataclass(frozen=True)
class _Example:
    content: str  # what fills the query template: question, caption or label
    image: str  # relative query image path, "" when none
    pos: _Cand


class _ImageStore:
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
_Builder = Callable[..., tuple[list[_Example], list[_Cand]]]


def _build_classification(
    rng: random.Random, store: _ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[_Example], list[_Cand]]:
    vocab = [(color, shape) for color in COLORS for shape in SHAPES]
    classes = vocab if num_classes is None else rng.sample(vocab, num_classes)
    pool = [_Cand(f"{c} {s}", "", f"{c} {s}", frozenset({c, s})) for c, s in classes]
    examples = []
    for i in range(n):
        k = rng.randrange(len(classes))
        # A big main object and small distractors: the label is the dominant colour and shape.
        scene = sample_scene(rng, main_scale=(0.5, 0.65), other_scale=(0.15, 0.24), main=classes[k])
        examples.append(_Example("", store.query(i, render_scene(scene)), pool[k]))
    return examples, pool


def _build_vqa(
    rng: random.Random, store: _ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[_Example], list[_Cand]]:
    answers = {"color": tuple(COLORS), "shape": SHAPES, "count": COUNT_WORDS, "text": WORDS}
    pool = [_Cand(a, "", a, frozenset({kind})) for kind, words in answers.items() for a in words]
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
        examples.append(_Example(question, store.query(i, render_scene(scene)), by_answer[answer]))
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
    rng: random.Random, store: _ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[_Example], list[_Cand]]:
    seen: set[str] = set()
    examples, pool = [], []
    for i in range(max(n, min_pool)):  # beyond n: extra distractor images for a small query set
        scene = _unique_scene(rng, seen)
        cand = _Cand("", store.candidate(i, render_scene(scene)), scene.caption(), _labels(scene))
        pool.append(cand)
        if i < n:
            examples.append(_Example(scene.caption(), "", cand))
    return examples, pool


def _build_retrieval_i2t(
    rng: random.Random, store: _ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[_Example], list[_Cand]]:
    seen: set[str] = set()
    examples, pool = [], []
    for i in range(max(n, min_pool)):  # beyond n: extra distractor captions
        scene = _unique_scene(rng, seen)
        cand = _Cand(scene.caption(), "", scene.caption(), _labels(scene))
        pool.append(cand)
        if i < n:
            examples.append(_Example("", store.query(i, render_scene(scene)), cand))
    return examples, pool


def _build_grounding(
    rng: random.Random, store: _ImageStore, n: int, min_pool: int, num_classes: int | None
) -> tuple[list[_Example], list[_Cand]]:
    examples: list[_Example] = []
    pool: list[_Cand] = []

    def add_scene(index: int, stem: str) -> tuple[Image.Image, list[_Cand]]:
        scene = sample_scene(rng, num_objects=(2, 3), text_prob=0.2)
        while len(scene.objects) < 2:  # grounding needs something to tell apart
            scene = sample_scene(rng, num_objects=(2, 3), text_prob=0.2)
        image = render_scene(scene)
        crops = [
            _Cand(
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
        examples.append(_Example(target.key, store.query(i, image), target))
    extra = n
    while min(sum(c.key != ex.pos.key for c in pool) for ex in examples) < min_pool - 1:
        add_scene(extra, store.cand_stem)
        extra += 1
    return examples, pool


_BUILDERS: dict[str, _Builder] = {
    "classification": _build_classification,
    "vqa": _build_vqa,
    "retrieval_t2i": _build_retrieval_t2i,
    "retrieval_i2t": _build_retrieval_i2t,
    "grounding": _build_grounding,
}


def _pick_negatives(rng: random.Random, pos: _Cand, pool: Sequence[_Cand], k: int, hard: bool) -> list[_Cand]:
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

    def hardness(cand: _Cand) -> int:
        if pos.group >= 0 and cand.group == pos.group:
            return 0
        return 1 if cand.attrs & pos.attrs else 2

    chosen = sorted(rng.sample(eligible, len(eligible)), key=hardness)[:k]
    rng.shuffle(chosen)
    return chosen


def _rng(*parts: object) -> random.Random:
    """A random stream fixed by its parts (not Python's salted hash), independent of other datasets."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _check_kinds(mapping: Mapping[str, str], what: str) -> dict[str, str]:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{what} must be a non-empty mapping of name -> kind, got {mapping!r}")
    for name, kind in mapping.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"bad {what} name {name!r}: use letters, digits, '_', '-', '.'")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} for {name!r}; expected one of {KINDS}")
    return dict(mapping)


def _check_positive(value: int, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _write_parquet(path: Path, columns: dict[str, list], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=schema), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _target_text(cand: _Cand, template: str | None) -> str:
    if not cand.image:
        return cand.text
    assert template is not None, "image targets need a target instruction"
    return template


def write_synthetic_mmeb_train(
    root: str | Path,
    *,
    subsets: Mapping[str, str] | None = None,
    rows_per_subset: int = 64,
    splits: Iterable[str] = TRAIN_SPLITS,
    seed: int = 0,
) -> Path:
    """Write an MMEB-train-like folder at `root` and return `root` (also the image root).

    `subsets` maps subset name -> kind (see `KINDS`; default `DEFAULT_TRAIN_SUBSETS`). Every row has a
    hard negative. `diverse_instruction` rows hold the same queries, targets and negatives as
    `original` with other instruction wordings. Existing files of the same names are replaced.
    """
    subsets = _check_kinds(DEFAULT_TRAIN_SUBSETS if subsets is None else subsets, "subsets")
    _check_positive(rows_per_subset, "rows_per_subset", 1)
    splits = list(splits)
    if not splits or len(set(splits)) != len(splits) or not set(splits) <= set(TRAIN_SPLITS):
        raise ValueError(f"splits must be distinct names from {TRAIN_SPLITS}, got {splits!r}")
    root = Path(root)
    schema = pa.schema([(c, pa.string()) for c in TRAIN_COLUMNS])
    for subset, kind in subsets.items():
        rng = _rng(seed, "train", subset)
        store = _ImageStore(root, f"images/{subset}", "img", "tgt")
        examples, pool = _BUILDERS[kind](rng, store, rows_per_subset, 2, None)
        negatives = [_pick_negatives(rng, ex.pos, pool, 1, hard=True)[0] for ex in examples]
        for split in splits:
            wording = _rng(seed, "train-wording", subset, split)
            columns: dict[str, list[str]] = {c: [] for c in TRAIN_COLUMNS}
            for ex, neg in zip(examples, negatives):
                q_index, t_index = 0, 0
                if split != "original":
                    q_index = wording.randrange(1, len(_QUERY_TEMPLATES[kind]))
                    t_index = wording.randrange(1, len(_TARGET_TEMPLATES.get(kind, ("", ""))))
                target_template = _TARGET_TEMPLATES[kind][t_index] if kind in _TARGET_TEMPLATES else None
                columns["qry"].append(_QUERY_TEMPLATES[kind][q_index].format(ex.content))
                columns["qry_image_path"].append(ex.image)
                columns["pos_text"].append(_target_text(ex.pos, target_template))
                columns["pos_image_path"].append(ex.pos.image)
                columns["neg_text"].append(_target_text(neg, target_template))
                columns["neg_image_path"].append(neg.image)
            _write_parquet(root / subset / f"{split}-00000-of-00001.parquet", columns, schema)
    return root


def write_synthetic_mmeb_eval(
    root: str | Path,
    *,
    datasets: Mapping[str, str] | None = None,
    num_queries: int = 20,
    num_candidates: int = 10,
    seed: int = 1,
) -> Path:
    """Write an MMEB-eval-like folder at `root` and return `root`; the image root is `root/images`.

    `datasets` maps dataset name -> kind (default `DEFAULT_EVAL_DATASETS`; `MMEB_EVAL_KINDS` has all
    36). Candidate 0 is the positive; candidates within a query are distinct and drawn from a pool
    shared by all queries (a classification dataset has `num_candidates` classes, all listed for
    every query), so distinct candidates are far fewer than query x candidate slots.
    """
    datasets = _check_kinds(DEFAULT_EVAL_DATASETS if datasets is None else datasets, "datasets")
    _check_positive(num_queries, "num_queries", 1)
    _check_positive(num_candidates, "num_candidates", 2)
    for name, kind in datasets.items():
        if num_candidates > _MAX_CANDIDATES.get(kind, num_candidates):
            raise ValueError(
                f"{name!r} ({kind}) has only {_MAX_CANDIDATES[kind]} distinct candidates (classes or "
                f"answers), num_candidates={num_candidates}"
            )
    root = Path(root)
    schema = pa.schema(
        [
            ("qry_text", pa.string()),
            ("qry_img_path", pa.string()),
            ("tgt_text", pa.list_(pa.string())),
            ("tgt_img_path", pa.list_(pa.string())),
        ]
    )
    for name, kind in datasets.items():
        rng = _rng(seed, "eval", name)
        store = _ImageStore(root / "images", name, "q", "c")
        num_classes = num_candidates if kind == "classification" else None
        examples, pool = _BUILDERS[kind](rng, store, num_queries, num_candidates, num_classes)
        # MMEB-eval writes "<|image_1|> Represent ..." with a space where train has a newline.
        query_template = _QUERY_TEMPLATES[kind][0].replace("\n", " ")
        target_template = _TARGET_TEMPLATES[kind][0].replace("\n", " ") if kind in _TARGET_TEMPLATES else None
        columns: dict[str, list] = {c: [] for c in EVAL_COLUMNS}
        for ex in examples:
            negatives = _pick_negatives(rng, ex.pos, pool, num_candidates - 1, hard=kind in _HARD_EVAL_KINDS)
            candidates = [ex.pos, *negatives]
            columns["qry_text"].append(query_template.format(ex.content))
            columns["qry_img_path"].append(ex.image)
            columns["tgt_text"].append([_target_text(c, target_template) for c in candidates])
            columns["tgt_img_path"].append([c.image for c in candidates])
        _write_parquet(root / name / "test-00000-of-00001.parquet", columns, schema)
    return root
