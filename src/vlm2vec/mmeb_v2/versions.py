"""Data versions that change MMEB-V2 scores under an unchanged task name, and how to tell them apart.

Two fixes changed the data silently for the reference's users. ViDoSeek-page and MMLongBench-page
first pointed every label one page too far (hub repos `VLM2Vec/ViDoSeek-page` and
`VLM2Vec/MMLongBench`; also the copies inside the release's visual-document data archive); the
page-fixed repos `*-page-fixed` replace them and are the default here. MomentSeeker was
de-duplicated from 1,800 queries to 1,602. An older version is refused unless asked for, and the
version is part of `TaskData.data_version`, so a cached result from other data is never reused.
"""

from __future__ import annotations

from ..errors import DataError

PAGE_FIXED, PAGE_OLD, PAGE_UNKNOWN = "page-fixed", "page-old", "page-unverified"
MOMENTSEEKER_DEDUP, MOMENTSEEKER_OLD = "dedup-1602", "original-1800"
#: identities (hub repo or folder name) of the pre-fix page data, per task
OLD_PAGE_SOURCES = {
    "ViDoSeek-page": ("VLM2Vec/ViDoSeek-page", "ViDoSeek-page"),
    "MMLongBench-page": ("VLM2Vec/MMLongBench", "MMLongBench", "MMLongBench-page"),
}


class DataVersionError(DataError):
    """A task's data is an older (or unidentifiable) version; the message names what was found."""


def page_version(task: str, identity: str, allow_old: bool = False) -> str:
    """Version of a page task's clone from its identity (`owner/name` or folder name)."""
    if identity.endswith("-page-fixed"):
        return PAGE_FIXED
    if identity in OLD_PAGE_SOURCES[task]:
        if allow_old:
            return PAGE_OLD
        raise DataVersionError(
            f"task {task!r}: {identity!r} is the data before the 2025-11-03 page fix (every label points "
            f"one page too far; published scores use VLM2Vec/{task}-fixed). Clone VLM2Vec/{task}-fixed, "
            "or allow old data to reproduce the paper's Table 5"
        )
    if allow_old:
        return PAGE_UNKNOWN
    raise DataVersionError(
        f"task {task!r}: cannot tell whether {identity!r} holds the page-fixed data; use a git clone of "
        f"VLM2Vec/{task}-fixed or a folder named {task}-fixed"
    )


def momentseeker_version(pairs: list[tuple[str, str]], allow_old: bool = False) -> str:
    """Version of MomentSeeker from its (query, input_frames) pairs: the original 1,800-query file
    repeats queries; the de-duplicated one (1,602) does not."""
    repeated = len(pairs) - len(set(pairs))
    if len(pairs) != 1800 and not repeated:
        return MOMENTSEEKER_DEDUP
    if allow_old:
        return MOMENTSEEKER_OLD
    raise DataVersionError(
        f"task 'MomentSeeker': found the original version ({len(pairs)} queries, {repeated} repeated); "
        "published scores since v2.0.1 use the de-duplicated 1,602 queries (VLM2Vec/MomentSeeker); "
        "allow old data to compare with the paper's 1,800-query numbers"
    )
