"""Image loading for training rows: decode eagerly so a broken file fails here, naming source/row/path."""

from __future__ import annotations

from PIL import Image

from .records import BadRowError


def load_image(path: str, *, source: str, row: int) -> Image.Image:
    """Open and fully decode `path` as RGB (alpha dropped, as the backbone processors do).

    Raises `BadRowError` for a missing, unreadable or corrupt file, so the caller can either stop with
    a message that points at the row or skip it (`data.skip_bad_rows`).
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB") if image.mode != "RGB" else image.copy()
    except FileNotFoundError:
        raise BadRowError(source, row, "image file not found", path) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRowError(source, row, f"cannot read image ({type(exc).__name__}: {exc})", path) from None
