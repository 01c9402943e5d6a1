"""The checkpoints hdrmerge knows: one small record per checkpoint.

Facts come from the authors' repository (github.com/ltkong218/SAFNet at the
commit pinned below); ``weights/SHA256SUMS`` and ``weights/README.md`` at the top
of the project repeat them for people, and a test keeps the three in step.

This module imports nothing heavy: ``hdrmerge weights list`` must be instant.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The authors' repository and the commit whose files the pins below describe.
AUTHORS_REPO = "ltkong218/SAFNet"
AUTHORS_COMMIT = "598e9a431ac87e98796183419e4ef49b5c869d0f"
#: Where the authors' files can be fetched when the Hub cannot serve them.
#: ``HDRMERGE_FALLBACK_URL`` overrides it (a mirror, or a test server).
AUTHORS_BASE_URL = f"https://github.com/{AUTHORS_REPO}/raw/{AUTHORS_COMMIT}/checkpoints"

#: The Hugging Face Hub repository hdrmerge downloads from, and its revision.
#: ``--hub-repo`` / ``HDRMERGE_HUB_REPO`` and ``HDRMERGE_HUB_REVISION`` override them.
#: Integrity never depends on the revision: every file is checked against the
#: pins below before it is used, whichever repository or revision served it.
DEFAULT_HUB_REPO = "hdrmerge/safnet"
DEFAULT_HUB_REVISION = "main"

LICENCE = (
    "SAFNet authors' weights: academic research use only, no commercial use "
    "(Kong et al., ECCV 2024; github.com/ltkong218/SAFNet)"
)


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint and how to recognise it.

    ``sha256`` is known only for checkpoints whose bytes have been seen; the
    others are pinned by ``git_blob``, the git object id of the file in the
    authors' repository (SHA-1 of ``b"blob <size>\\0" + content``), which is
    just as binding.
    """

    name: str
    arch: str
    training_set: str
    filename: str
    git_blob: str
    sha256: str | None = None
    size: int | None = None
    licence: str = LICENCE
    paper: str = "Kong et al., SAFNet, ECCV 2024 (arXiv 2407.16308)"

    @property
    def origin(self) -> str:
        """Where the file comes from, for people."""
        return f"github.com/{AUTHORS_REPO} checkpoints/{self.filename} @ {AUTHORS_COMMIT[:7]}"

    @property
    def pin(self) -> str:
        """The strongest integrity pin, as ``algo:hex``."""
        return f"sha256:{self.sha256}" if self.sha256 else f"git-blob:{self.git_blob}"


CHECKPOINTS: dict[str, Checkpoint] = {
    c.name: c
    for c in (
        Checkpoint(
            name="safnet-s",
            arch="SAFNet-S",
            training_set="Kalantari 2017 (SIGGRAPH17)",
            filename="SAFNet_S_siggraph17.pth",
            git_blob="eebce8392160d16f4441c8b1a7455c1f038cc1d9",
            sha256="9d4e18199fb7dd990ec9ca94e706b823c2eb0c451e514fc403103e86d69bd5fe",
            size=2287342,
        ),
        Checkpoint(
            name="safnet",
            arch="SAFNet",
            training_set="Kalantari 2017 (SIGGRAPH17)",
            filename="SAFNet_siggraph17.pth",
            git_blob="b374983e7fbcada2c3c0c39f1e061b1bab5c5307",
        ),
        Checkpoint(
            name="safnet-challenge123",
            arch="SAFNet",
            training_set="Challenge123",
            filename="SAFNet_challenge123.pth",
            git_blob="77ea895143f9d36f3991712c8527f4f7079b2f14",
        ),
    )
}

#: The checkpoint used when the user names none.
DEFAULT_CHECKPOINT = "safnet-s"


def get_checkpoint(name: str) -> Checkpoint:
    """The registry entry called ``name``; InputError listing the known ones otherwise."""
    from hdrmerge.errors import InputError

    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise InputError(
            f"unknown model {name!r}; known: {', '.join(CHECKPOINTS)} (see `hdrmerge weights list`)"
        ) from None
