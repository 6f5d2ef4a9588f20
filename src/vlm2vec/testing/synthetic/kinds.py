"""The synthetic datasets: the five content kinds, which MMEB dataset or subset is which kind, and the
defaults the demo and tests write."""

from __future__ import annotations

KINDS: tuple[str, ...] = ("classification", "vqa", "retrieval_t2i", "retrieval_i2t", "grounding")
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
