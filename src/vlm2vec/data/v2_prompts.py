"""The instruction strings of the VLM2Vec-V2 training sources, kept as data.

The reference builds every V2 training text from a fixed string per source (VisRAG: per document
`source` column); the model is sensitive to them (token position, colon vs period, two spaces), so
they are copied exactly here and nowhere else. Placeholders are the MMEB ones (`<|image_1|>`,
`<|video_1|>`), which each backbone rewrites to its own tokens (Qwen2-VL: a bare image/video pad).
"""

from __future__ import annotations

IMAGE = "<|image_1|>"
VIDEO = "<|video_1|>"
#: the literal video mark of the LLaVA-Hound conversation files
LLAVAHOUND_VIDEO_MARK = "<video>"

#: LLaVA-Hound caption file read as caption text -> video (`video_retrieval`)
VIDEO_RETRIEVAL_QUERY = "Find a video that contains the following visual content: {caption}"
VIDEO_RETRIEVAL_TARGET = f"Understand the content of the provided video: {VIDEO}"
VIDEO_QA_PREFIX = "Answer a question based on the content of a video. "

#: colpali train set in the reference direction: page + question -> answer, no instruction
COLPALI_REFERENCE_QUERY = f"{IMAGE} {{query}}"
#: colpali train set as retrieval (question -> page), with the MMEB-V2 visdoc evaluation strings
COLPALI_RETRIEVAL_QUERY = "Find a document image that matches the given query: {query}"
COLPALI_RETRIEVAL_TARGET = f"{IMAGE} Understand the content of the provided document image."

#: VisRAG `source` -> (query prefix, target prefix); the query prefixes end with ": "
VISRAG_PROMPTS: dict[str, tuple[str, str]] = {
    "ArxivQA": (
        "This query is related to retrieving a relevant figure from an ArXiv research paper. The retrieved "
        "figure should contain scientific plots, mathematical visualizations, or experimental results that "
        "best address the query: ",
        "A figure from a research paper, including plots or experimental results.",
    ),
    "ChartQA": (
        "This query is related to retrieving a relevant chart that visually represents numerical or "
        "categorical data. The retrieved chart should contain bar graphs, line charts, or other visual "
        "elements necessary to analyze trends, compare values, or extract insights related to the query: ",
        "A statistical chart comparing values or analyzing trends.",
    ),
    "MP-DocVQA": (
        "This query is related to retrieving a relevant page from a multi-page document, such as reports, "
        "invoices, or research papers. The retrieved document should contain text, tables, or structured "
        "information necessary to answer the query: ",
        "A page from a multi-page document with text or tables.",
    ),
    "InfoVQA": (
        "This query is related to retrieving an infographic that visually presents statistical or factual "
        "information using charts, icons, and structured layouts. The retrieved image should contain the "
        "necessary visual elements to provide the best context for answering the query: ",
        "An infographic with structured data, charts, and annotations.",
    ),
    "PlotQA": (
        "This query relates to retrieving a relevant plot or chart that visually represents numerical data. "
        "The retrieved figure should contain the necessary information to analyze trends, compare values, "
        "or extract key insights related to the query: ",
        "A numerical data visualization, such as bar charts or line graphs.",
    ),
    "SlideVQA": (
        "This query is related to retrieving a relevant presentation slide that visually presents "
        "structured information. The retrieved slide should contain the necessary text, charts, or "
        "graphics to provide the best answer to the query: ",
        "A presentation slide with text, bullet points, and diagrams.",
    ),
    "NeurIPS Papers": (
        "This query is about a research paper from NeurIPS, a leading AI/ML conference. The document "
        "contains technical discussions, methodologies, and findings. Identify relevant papers and sections "
        "that address the query: ",
        "A research paper from NeurIPS on AI and ML topics.",
    ),
    "ICML Papers": (
        "This query is about a research paper from ICML, a leading AI/ML conference. The document contains "
        "theoretical insights, experiments, and applications. Identify relevant papers and sections that "
        "best answer the query: ",
        "A research paper from ICML, covering machine learning topics.",
    ),
    "Textbooks": (
        "This query is related to a college-level textbook, which provides structured explanations, "
        "definitions, and examples. Find the most relevant concepts or explanations that address the query: ",
        "A textbook page with structured educational content and explanations.",
    ),
    "Manuallib": (
        "This query pertains to a product manual, which contains detailed technical specifications, usage "
        "instructions, and troubleshooting steps. Find the most relevant section that answers the query: ",
        "A product manual page with technical specifications and instructions.",
    ),
}


def visrag_texts(source: str, query: str) -> tuple[str, str]:
    """(query text, target text) of a VisRAG row: `{QP} {query} ` -> `{TP}  <|image_1|>`; a source
    without prompts gives `{query} ` -> ` <|image_1|>`, as the reference."""
    prompts = VISRAG_PROMPTS.get(source)
    if prompts is None:
        return f"{query} ", f" {IMAGE}"
    query_prefix, target_prefix = prompts
    return f"{query_prefix} {query} ", f"{target_prefix}  {IMAGE}"
