"""The sections of the commands that encode with a model or search vectors (eval, embed, mine, index,
search). Each field declares its
help, range, choices and the mode it is read under (`fields.opt`); each section's `validate()` holds
its cross-field rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import (
    AT_LEAST_0,
    AT_LEAST_1,
    ConfigError,
    Section,
    check_no_unused_settings,
    opt,
)

_V2 = {"benchmark": ("mmeb_v2",)}
_IVF = {"kind": ("ivf_flat", "ivf_pq")}


@dataclass
class EvalConfig(Section):
    """MMEB evaluation: which datasets, where they are, batching and caching."""

    data_dir: str | None = opt(None, "local MMEB-eval clone (one folder per dataset)")
    image_root: str | None = opt(
        None, "image folder; null: first of <data_dir>/images, <data_dir>/eval_images, <data_dir>"
    )
    datasets: list[str] = opt(
        help="datasets to evaluate; [] and no meta_tasks: all in data_dir", factory=list
    )
    meta_tasks: list[str] = opt(
        help="meta-tasks to evaluate: Classification, VQA, Retrieval, Grounding", factory=list
    )
    output_dir: str = opt("eval_out", "results folder")
    cache_dir: str | None = opt(None, "embedding cache folder; null: <output_dir>/cache")
    batch_size: int = opt(16, "items per encoding batch", check=AT_LEAST_1)
    batch_tokens: int | None = opt(
        None,
        "size batches by padded tokens (rows x longest row) instead of batch_size; null: rows",
        check=AT_LEAST_1,
    )
    skip_missing: bool = opt(
        False,
        "allow a partial run: list absent datasets as missing (means marked partial) instead of failing",
    )
    max_queries: int | None = opt(
        None, "evaluate only the first N queries of each dataset (null: all)", check=AT_LEAST_1
    )
    top_k_predictions: int = opt(10, "candidates kept per query in predictions files", check=AT_LEAST_1)
    ties: str = opt(
        "reference",
        "tie with the positive: reference (a hit, as the published numbers) | strict (a miss)",
        choices=("reference", "strict"),
    )
    num_workers: int = opt(
        0,
        "DataLoader workers that read images and run the processor while the model encodes",
        check=AT_LEAST_0,
    )
    cache_chunk_items: int = opt(
        1024, "items per cache chunk file: the work an interrupted run can lose", check=AT_LEAST_1
    )
    dim: int | None = opt(
        None, "score with reps cut to their first N dims, re-normalised (Matryoshka)", check=AT_LEAST_1
    )
    benchmark: str = opt(
        "mmeb",
        "mmeb (the 36 image datasets of data_dir) | mmeb_v2 (78 tasks: image + video + visual documents)",
        choices=("mmeb", "mmeb_v2"),
    )
    v2_root: str | None = opt(
        None,
        "local MMEB-V2 release root (image-tasks/, video-tasks/, visdoc-tasks/); image tasks read data_dir",
        applies_when=_V2,
    )
    v2_sources: dict[str, str] = opt(
        help="per-source folders replacing part of v2_root: video_cls|video_ret|video_mret|video_qa|"
        "visdoc-pages|annotations|<task>|<task>:media",
        factory=dict,
        applies_when=_V2,
    )
    v2_tasks: list[str] = opt(
        help="MMEB-V2 tasks (score-file names) or modalities (image, video, visdoc); []: all 78",
        factory=list,
        applies_when=_V2,
    )
    v2_class_lists: dict[str, str] = opt(
        help="video classification task -> text file of its class labels, one a line, as the reference "
        "ranks; unset: the labels of the rows (counted)",
        factory=dict,
        applies_when=_V2,
    )
    num_frames: int = opt(
        8, "frames sampled evenly per video (fewer: all, no padding)", check=AT_LEAST_1, applies_when=_V2
    )
    ndcg_rule: str = opt(
        "reference",
        "graded NDCG: reference (its label/grade pairing, as the leaderboard) | correct (each page its grade)",
        choices=("reference", "correct"),
        applies_when=_V2,
    )
    allow_old_data: bool = opt(
        False,
        "accept the pre-fix ViDoSeek/MMLongBench page qrels and MomentSeeker's 1,800 queries (version recorded)",
        applies_when=_V2,
    )
    fixed_page_names: bool = opt(
        False,
        "submission JSON: name the page tasks ViDoSeek-page-fixed / MMLongBench-page-fixed",
        applies_when=_V2,
    )

    def validate(self) -> None:
        check_no_unused_settings(self, "eval")
        if self.benchmark == "mmeb_v2":
            from ..mmeb_v2.tasks import MODALITIES, TASKS

            bad = [
                t for t in self.v2_class_lists if t not in TASKS or TASKS[t].parser != "video_classification"
            ]
            if bad:
                raise ConfigError(
                    f"eval.v2_class_lists: {bad} are not video classification tasks (K700, HMDB51, UCF101, "
                    "Breakfast)",
                    key="eval.v2_class_lists",
                )
            unknown = [t for t in self.v2_tasks if t not in TASKS and t not in MODALITIES]
            if unknown:
                raise ConfigError(
                    f"eval.v2_tasks: unknown {unknown}; use MMEB-V2 score-file names (e.g. K700, "
                    f"ViDoRe_arxivqa) or {', '.join(MODALITIES)}",
                    key="eval.v2_tasks",
                )


@dataclass
class EmbedConfig(Section):
    """Corpus embedding (`vlm2vec embed`): which items, and where the vectors and their metadata go."""

    source: str = opt(
        "train",
        "what to embed: train (the data section's sources) | images (a folder) | texts (a file)",
        choices=("train", "images", "texts"),
    )
    side: str = opt(
        "tgt",
        "train source: which side of each row: tgt (positives) | qry (queries) | neg (hard negatives)",
        choices=("qry", "tgt", "neg"),
        applies_when={"source": ("train",)},
    )
    path: str | None = opt(
        None,
        "images: a folder (recursive; a sub-folder's name is the class label); texts: .txt (one a line) or .jsonl",
        applies_when={"source": ("images", "texts")},
    )
    image_text: str = opt(
        "<|image_1|>\nRepresent the given image.",
        "images: the text of every image item",
        applies_when={"source": ("images",)},
    )
    label_column: str | None = opt(
        None,
        "train source: column holding the class label of the embedded side",
        applies_when={"source": ("train",)},
    )
    output_dir: str = opt("embeddings", "folder for vectors-*.safetensors, items.parquet and manifest.json")
    cache_dir: str | None = opt(None, "rep cache that makes a killed run resumable; null: <output_dir>/cache")
    batch_size: int = opt(16, "items per encoding batch", check=AT_LEAST_1)
    chunk_items: int = opt(
        1024, "items per cache chunk file: the work a killed run can lose", check=AT_LEAST_1
    )
    shard_rows: int = opt(
        100_000,
        "vectors per safetensors shard (about; whole batches): memory holds one shard, a killed run resumes at one",
        check=AT_LEAST_1,
    )
    dtype: str = opt(
        "float32",
        "storage dtype of the vectors: float32 | float16 (half the disk and memory; scores still in float32)",
        choices=("float32", "float16"),
    )
    num_workers: int = opt(0, "DataLoader workers that read images and run the processor", check=AT_LEAST_0)

    def validate(self) -> None:
        check_no_unused_settings(self, "embed")
        if self.source != "train" and not self.path:
            raise ConfigError(f"embed.source={self.source} needs embed.path", key="embed.path")


@dataclass
class MineConfig(Section):
    """Hard-negative mining (`vlm2vec mine`): top-k targets per training query, filtered, picked, written."""

    output_dir: str = opt("mined", "folder for train/<source>/*.parquet (MMEB-train layout), report.md/png")
    corpus_dir: str | None = opt(None, "candidates: an `embed` output folder; null: the training targets")
    scope: str = opt(
        "source", "candidates of a query: source (targets of its own source) | all", choices=("source", "all")
    )
    top_k: int = opt(50, "candidates retrieved per query before filtering")
    num_negatives: int = opt(3, "negatives written per row", check=AT_LEAST_1)
    strategy: str = opt(
        "top",
        "top (the best n) | range (best n of ranks rank_start..rank_end) | sample (n drawn)",
        choices=("top", "range", "sample"),
    )
    rank_start: int = opt(
        1, "range: first rank kept, 1-based, counted after filtering", applies_when={"strategy": ("range",)}
    )
    rank_end: int = opt(
        50, "range: last rank kept, 1-based, counted after filtering", applies_when={"strategy": ("range",)}
    )
    margin: float | None = opt(
        0.1, "drop candidates scoring above positive + margin (may be negative); null: off"
    )
    filter_class: bool = opt(
        True, "drop candidates with the positive's class name (label, or text of a text item)"
    )
    label_column: str | None = opt(None, "column of the training rows holding the positive's class label")
    keep_short: bool = opt(
        False, "keep rows with fewer than num_negatives negatives (else dropped and counted)"
    )
    seed: int = opt(0, "seed of the sample strategy", applies_when={"strategy": ("sample",)})
    device: str = opt("auto", "similarity matmul device: auto | cpu | cuda")
    backend: str = opt(
        "exact",
        "exact (blockwise matmul) | faiss (flat inner-product index; needs faiss)",
        choices=("exact", "faiss"),
    )
    query_block: int = opt(4096, "queries per matmul block")
    corpus_block: int = opt(65536, "corpus rows per matmul block")
    allow_other_model: bool = opt(
        False, "mine against a corpus_dir embedded by another model than mine's (refused by default)"
    )

    def validate(self) -> None:
        check_no_unused_settings(self, "mine")
        if self.top_k < self.num_negatives:
            raise ConfigError(
                f"mine.top_k ({self.top_k}) must be >= mine.num_negatives ({self.num_negatives})",
                key="mine.top_k",
            )
        if self.strategy == "range" and not 1 <= self.rank_start <= self.rank_end:
            raise ConfigError(
                f"mine.rank_start..rank_end must satisfy 1 <= start <= end, got {self.rank_start}..{self.rank_end}",
                key="mine.rank_start",
            )
        if self.scope == "source" and self.corpus_dir:
            raise ConfigError(
                "mine.scope=source needs the training targets as candidates; with mine.corpus_dir use scope=all",
                key="mine.corpus_dir",
            )


@dataclass
class IndexConfig(Section):
    """FAISS index (`vlm2vec index`) over an `embed` output folder: which kind, trained how, split when."""

    corpus_dir: str | None = opt(None, "the `embed` output folder to index (required)")
    output_dir: str = opt("index", "folder for part-*.faiss, their item rows and index.json")
    kind: str = opt(
        "ivf_flat",
        "flat (exact inner product) | ivf_flat | ivf_pq (inverted lists, trained on a sample) | hnsw (graph)",
        choices=("flat", "ivf_flat", "ivf_pq", "hnsw"),
    )
    nlist: int | None = opt(
        None,
        "ivf: inverted lists; null: 4 x sqrt(items), at most items / 39",
        check=AT_LEAST_1,
        applies_when=_IVF,
    )
    nprobe: int = opt(16, "ivf: lists visited per query (a search may override)", check=AT_LEAST_1)
    pq_m: int = opt(
        16,
        "ivf_pq: sub-quantisers (must divide the width)",
        check=AT_LEAST_1,
        applies_when={"kind": ("ivf_pq",)},
    )
    pq_bits: int = opt(8, "ivf_pq: bits per code", check=AT_LEAST_1, applies_when={"kind": ("ivf_pq",)})
    hnsw_m: int = opt(32, "hnsw: links per node", check=AT_LEAST_1, applies_when={"kind": ("hnsw",)})
    ef_construction: int = opt(200, "hnsw: build beam", check=AT_LEAST_1, applies_when={"kind": ("hnsw",)})
    ef_search: int = opt(64, "hnsw: search beam (a search may override)", check=AT_LEAST_1)
    train_sample: int = opt(100_000, "ivf: vectors drawn to train the lists", check=AT_LEAST_1)
    max_part_bytes: int = opt(
        8 * 2**30,
        "split the index into parts of at most this size (searched one after another)",
        check=AT_LEAST_1,
    )
    recall_queries: int = opt(
        1000, "held-out corpus vectors (not in the training sample) that measure recall", check=AT_LEAST_1
    )
    recall_k: int = opt(10, "k of the recall@k written to index.json", check=AT_LEAST_1)
    device: str = opt(
        "auto", "auto (GPU when faiss-gpu sees one) | cpu | gpu", choices=("auto", "cpu", "gpu")
    )
    seed: int = opt(0, "seed of the training sample and of the held-out queries")

    def validate(self) -> None:
        check_no_unused_settings(self, "index")


@dataclass
class SearchConfig(Section):
    """Top-k search (`vlm2vec search`) of queries over an index folder or an `embed` output folder."""

    target: str | None = opt(
        None, "what to search: an index folder (`vlm2vec index`) or an `embed` output folder (exact)"
    )
    query_source: str = opt(
        "embeddings",
        "embeddings (an `embed` output folder) | texts (.txt / .jsonl, encoded) | images (a folder, encoded)",
        choices=("embeddings", "texts", "images"),
    )
    queries: str | None = opt(None, "the queries: a folder or file as query_source says (required)")
    image_text: str = opt(
        "<|image_1|>\nRepresent the given image.",
        "images: the text of every image query",
        applies_when={"query_source": ("images",)},
    )
    k: int = opt(10, "results per query", check=AT_LEAST_1)
    output_dir: str = opt("search_out", "folder for results.parquet (and the encoded queries)")
    backend: str = opt(
        "exact",
        "embed folder target: exact (blockwise matmul) | faiss (flat index)",
        choices=("exact", "faiss"),
    )
    device: str = opt("auto", "exact search matmul device: auto | cpu | cuda")
    query_block: int = opt(4096, "queries per matmul block", check=AT_LEAST_1)
    corpus_block: int = opt(65536, "corpus rows per matmul block", check=AT_LEAST_1)
    nprobe: int | None = opt(None, "ivf index: lists visited per query; null: the index's", check=AT_LEAST_1)
    ef_search: int | None = opt(None, "hnsw index: search beam; null: the index's", check=AT_LEAST_1)

    def validate(self) -> None:
        check_no_unused_settings(self, "search")
