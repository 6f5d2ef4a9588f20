"""Export a trained model for other libraries (sentence-transformers, transformers / vLLM) so that it
embeds there exactly as here, or is refused with one line naming what the target cannot reproduce.
See docs/export.md for what was verified where."""

from .support import FORMATS, ExportError
from .writer import export_model_folder

__all__ = ["FORMATS", "ExportError", "export_model_folder"]
