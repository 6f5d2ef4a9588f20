"""The 78 MMEB-V2 tasks: modality, meta-task, headline metric, candidate pool and where the data lives.

Every task is keyed by the reference's score-file name. Image tasks (36) keep the names of the V1
registry (`vlm2vec.evaluation.registry.MMEB_DATASETS`). The layout facts are those of the release:
annotation clones of the Hugging Face repos named here (config and split as the reference loads them),
frame folders from the `video-tasks/frames/*` archives, page images from the visual-document archive.
Where two published layouts of one folder are known (`frame_dirs` with two entries), both are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE, VIDEO, VISDOC = "image", "video", "visdoc"
MODALITIES = (IMAGE, VIDEO, VISDOC)
HIT_AT_1, NDCG_LINEAR_AT_5 = "hit@1", "ndcg_linear@5"
#: candidate pools: the row's own list, every distinct candidate of the task, the whole page corpus
LOCAL, GLOBAL, CORPUS = "local", "global", "corpus"
#: meta-tasks per modality, in report order
META_TASKS: dict[str, tuple[str, ...]] = {
    IMAGE: ("Cls", "VQA", "Ret", "Grd"),
    VIDEO: ("CLS", "QA", "RET", "MRET"),
    VISDOC: ("ViDoRe-v1", "ViDoRe-v2", "VisRAG", "OOD"),
}
RELEASE_REPO = "TIGER-Lab/MMEB-V2"
IMAGE_ANNOTATIONS = "ziyjiang/MMEB_Test_Instruct"
IMAGE_ARCHIVE = "image-tasks/mmeb_v1.tar.gz"
VISDOC_PAGES_ARCHIVE = "visdoc-tasks/visdoc-tasks.images.tar.gz"
FRAME_ARCHIVES = {
    "video_cls": "video-tasks/frames/video_cls.tar.gz",
    "video_ret": "video-tasks/frames/video_ret.tar.gz",
    "video_mret": "video-tasks/frames/video_mret.tar.gz",
    "video_qa": "video-tasks/frames/video_qa.tar.gz-00 ... -04 (concatenate the 5 volumes)",
}


@dataclass(frozen=True)
class Task:
    """One MMEB-V2 task. `frame_dirs` are the frame (video) or page-image (visdoc) folders relative to
    the data root, reference layout first; `num_queries` is the published query count."""

    name: str
    modality: str
    meta_task: str
    parser: str
    repo: str
    config: str | None
    split: str
    num_queries: int
    pool: str
    frame_dirs: tuple[str, ...] = ()
    archive: str = ""

    @property
    def metric(self) -> str:
        """Headline metric: hit@1 for image and video, ndcg_linear@5 for visual documents."""
        return NDCG_LINEAR_AT_5 if self.modality == VISDOC else HIT_AT_1


_IMAGE = (
    ("Cls", "image_cls", "ImageNet-1K N24News HatefulMemes VOC2007 SUN397"),
    ("Cls", "image_cls", "Place365 ImageNet-A ImageNet-R ObjectNet Country211"),
    ("VQA", "image_qa", "OK-VQA A-OKVQA DocVQA InfographicsVQA ChartQA Visual7W"),
    ("VQA", "image_qa", "ScienceQA VizWiz GQA TextVQA"),
    ("Ret", "image_t2i", "VisDial"),
    ("Ret", "image_i2i_vg", "CIRR"),
    ("Ret", "image_t2i", "VisualNews_t2i"),
    ("Ret", "image_i2t", "VisualNews_i2t"),
    ("Ret", "image_t2i", "MSCOCO_t2i"),
    ("Ret", "image_i2t", "MSCOCO_i2t"),
    ("Ret", "image_i2i_vg", "NIGHTS"),
    ("Ret", "image_t2i", "WebQA"),
    ("Ret", "image_i2i_vg", "FashionIQ"),
    ("Ret", "image_t2i", "Wiki-SS-NQ"),
    ("Ret", "image_i2i_vg", "OVEN"),
    ("Ret", "image_t2i", "EDIS"),
    ("Grd", "image_i2i_vg", "MSCOCO RefCOCO RefCOCO-Matching Visual7W-Pointing"),
)


def _image_tasks() -> list[Task]:
    return [
        Task(name, IMAGE, meta, parser, IMAGE_ANNOTATIONS, name, "test", 1000, LOCAL, ("image-tasks",),
             IMAGE_ARCHIVE)
        for meta, parser, names in _IMAGE
        for name in names.split()
    ]  # fmt: skip


def _video(name, meta, parser, repo, config, split, nq, pool, archive, *dirs) -> Task:
    frame_dirs = tuple(f"video-tasks/frames/{archive}/{d}" for d in dirs)
    return Task(name, VIDEO, meta, parser, repo, config, split, nq, pool, frame_dirs, FRAME_ARCHIVES[archive])


_RET_ALT = "data/ziyan/video_retrieval/{}/frames"

VIDEO_TASKS: tuple[Task, ...] = (
    _video("K700", "CLS", "video_classification", "VLM2Vec/Kinetics-700", None, "test", 1000, GLOBAL,
           "video_cls", "K700"),
    _video("SmthSmthV2", "CLS", "ssv2", "VLM2Vec/SmthSmthV2", None, "test", 1000, LOCAL, "video_cls", "SSv2"),
    _video("HMDB51", "CLS", "video_classification", "VLM2Vec/HMDB51", None, "test", 1000, GLOBAL,
           "video_cls", "HMDB51"),
    _video("UCF101", "CLS", "video_classification", "VLM2Vec/UCF101", None, "test", 1000, GLOBAL,
           "video_cls", "UCF101"),
    _video("Breakfast", "CLS", "video_classification", "VLM2Vec/Breakfast", None, "test", 433, GLOBAL,
           "video_cls", "Breakfast"),
    _video("MVBench", "QA", "mvbench", "VLM2Vec/MVBench", None, "train", 4000, LOCAL, "video_qa", "MVBench"),
    _video("Video-MME", "QA", "videomme", "VLM2Vec/Video-MME", None, "test", 2700, LOCAL, "video_qa",
           "Video-MME"),
    _video("NExTQA", "QA", "nextqa", "VLM2Vec/NExTQA", "MC", "test", 8564, LOCAL, "video_qa", "NExTQA"),
    _video("EgoSchema", "QA", "egoschema", "VLM2Vec/EgoSchema", "Subset", "test", 500, LOCAL, "video_qa",
           "EgoSchema", "egoschema"),
    _video("ActivityNetQA", "QA", "activitynetqa", "VLM2Vec/ActivityNetQA", None, "test", 1000, LOCAL,
           "video_qa", "ActivityNetQA"),
    _video("DiDeMo", "RET", "didemo", "VLM2Vec/DiDeMo", None, "test", 1004, GLOBAL, "video_ret", "DiDeMo",
           _RET_ALT.format("DiDeMo")),
    _video("MSR-VTT", "RET", "msrvtt", "VLM2Vec/MSR-VTT", "test_1k", "test", 1000, GLOBAL, "video_ret",
           "MSR-VTT", _RET_ALT.format("MSR-VTT")),
    _video("MSVD", "RET", "msvd", "VLM2Vec/MSVD", None, "test", 670, GLOBAL, "video_ret", "MSVD",
           _RET_ALT.format("MSVD")),
    _video("VATEX", "RET", "vatex", "VLM2Vec/VATEX", None, "test", 4478, GLOBAL, "video_ret", "VATEX",
           _RET_ALT.format("VATEX")),
    _video("YouCook2", "RET", "youcook2", "lmms-lab/YouCook2", None, "val", 3179, GLOBAL, "video_ret",
           "YouCook2", _RET_ALT.format("YouCook2")),
    _video("QVHighlight", "MRET", "moment_retrieval", "VLM2Vec/QVHighlight", None, "test", 1083, LOCAL,
           "video_mret", "QVHighlight"),
    _video("Charades-STA", "MRET", "moment_retrieval", "VLM2Vec/Charades-STA", None, "test", 727, LOCAL,
           "video_mret", "Charades_STA", "Charades-STA"),
    _video("MomentSeeker", "MRET", "momentseeker", "VLM2Vec/MomentSeeker", None, "test", 1602, LOCAL,
           "video_mret", "MomentSeeker"),
)  # fmt: skip

#: (key, meta-task, repo, split, #q); the folder of the page images is the key, less `ViDoRe_` for v2
_VISDOC = (
    ("ViDoRe_arxivqa", "ViDoRe-v1", "vidore/arxivqa_test_subsampled_beir", "test", 500),
    ("ViDoRe_docvqa", "ViDoRe-v1", "vidore/docvqa_test_subsampled_beir", "test", 451),
    ("ViDoRe_infovqa", "ViDoRe-v1", "vidore/infovqa_test_subsampled_beir", "test", 494),
    ("ViDoRe_tabfquad", "ViDoRe-v1", "vidore/tabfquad_test_subsampled_beir", "test", 280),
    ("ViDoRe_tatdqa", "ViDoRe-v1", "vidore/tatdqa_test_beir", "test", 1646),
    ("ViDoRe_shiftproject", "ViDoRe-v1", "vidore/shiftproject_test_beir", "test", 100),
    ("ViDoRe_syntheticDocQA_artificial_intelligence", "ViDoRe-v1",
     "vidore/syntheticDocQA_artificial_intelligence_test_beir", "test", 100),
    ("ViDoRe_syntheticDocQA_energy", "ViDoRe-v1", "vidore/syntheticDocQA_energy_test_beir", "test", 100),
    ("ViDoRe_syntheticDocQA_government_reports", "ViDoRe-v1",
     "vidore/syntheticDocQA_government_reports_test_beir", "test", 100),
    ("ViDoRe_syntheticDocQA_healthcare_industry", "ViDoRe-v1",
     "vidore/syntheticDocQA_healthcare_industry_test_beir", "test", 100),
    ("ViDoRe_esg_reports_human_labeled_v2", "ViDoRe-v2", "vidore/esg_reports_human_labeled_v2", "test", 52),
    ("ViDoRe_biomedical_lectures_v2_multilingual", "ViDoRe-v2", "vidore/biomedical_lectures_v2", "test", 640),
    ("ViDoRe_economics_reports_v2_multilingual", "ViDoRe-v2", "vidore/economics_reports_v2", "test", 232),
    ("ViDoRe_esg_reports_v2_multilingual", "ViDoRe-v2", "vidore/esg_reports_v2", "test", 228),
    ("VisRAG_ArxivQA", "VisRAG", "openbmb/VisRAG-Ret-Test-ArxivQA", "train", 816),
    ("VisRAG_ChartQA", "VisRAG", "openbmb/VisRAG-Ret-Test-ChartQA", "train", 63),
    ("VisRAG_MP-DocVQA", "VisRAG", "openbmb/VisRAG-Ret-Test-MP-DocVQA", "train", 591),
    ("VisRAG_SlideVQA", "VisRAG", "openbmb/VisRAG-Ret-Test-SlideVQA", "train", 556),
    ("VisRAG_InfoVQA", "VisRAG", "openbmb/VisRAG-Ret-Test-InfoVQA", "train", 718),
    ("VisRAG_PlotQA", "VisRAG", "openbmb/VisRAG-Ret-Test-PlotQA", "train", 863),
    ("ViDoSeek-page", "OOD", "VLM2Vec/ViDoSeek-page-fixed", "test", 1142),
    ("ViDoSeek-doc", "OOD", "VLM2Vec/ViDoSeek", "test", 1142),
    ("MMLongBench-page", "OOD", "VLM2Vec/MMLongBench-page-fixed", "test", 838),
    ("MMLongBench-doc", "OOD", "VLM2Vec/MMLongBench-doc", "test", 838),
)  # fmt: skip


def _visdoc(name: str, meta: str, repo: str, split: str, nq: int) -> Task:
    folder = name.removeprefix("ViDoRe_") if meta == "ViDoRe-v2" else name
    parser = "visrag" if meta == "VisRAG" else "vidore"
    dirs = (f"visdoc-tasks/{folder}", f"visdoc-tasks/images/{folder}")
    return Task(name, VISDOC, meta, parser, repo, None, split, nq, CORPUS, dirs, VISDOC_PAGES_ARCHIVE)


IMAGE_TASKS: tuple[Task, ...] = tuple(_image_tasks())
VISDOC_TASKS: tuple[Task, ...] = tuple(_visdoc(*row) for row in _VISDOC)
#: all 78 tasks, image then video then visual documents, each in the paper's order
TASKS: dict[str, Task] = {t.name: t for t in (*IMAGE_TASKS, *VIDEO_TASKS, *VISDOC_TASKS)}
#: tasks per modality (36 / 18 / 24)
MODALITY_SIZES = {m: sum(t.modality == m for t in TASKS.values()) for m in MODALITIES}


def task(name: str) -> Task:
    """The task called `name`; an unknown name raises naming the valid ones' count and a hint."""
    try:
        return TASKS[name]
    except KeyError:
        close = [n for n in TASKS if n.lower() == name.lower()]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown MMEB-V2 task {name!r} (78 tasks, keyed by score-file name){hint}") from None


def tasks_of(modality: str, meta_task: str | None = None) -> list[Task]:
    """Tasks of one modality (and meta-task), in report order."""
    return [t for t in TASKS.values() if t.modality == modality and meta_task in (None, t.meta_task)]
