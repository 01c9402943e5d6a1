"""The checkpoints hdrmerge knows: one small record per checkpoint.

Facts come from the authors' repositories (github.com/ltkong218/SAFNet and
github.com/eezkni/AFUNet, each at the commit pinned below; AFUNet's facts as
docs/afunet-spec.md records them); ``weights/SHA256SUMS`` and
``weights/README.md`` at the top of the project repeat them for people, and a
test keeps them in step.

This module imports nothing heavy: ``hdrmerge weights list`` must be instant.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The authors' repository and the commit whose files the pins below describe.
AUTHORS_REPO = "ltkong218/SAFNet"
AUTHORS_COMMIT = "598e9a431ac87e98796183419e4ef49b5c869d0f"

#: AFUNet's authors' repository and the commit the pins describe (the model
#: files and checkpoints are unchanged since 3e5087b, spec section 0).
AFUNET_REPO = "eezkni/AFUNet"
AFUNET_COMMIT = "d57f7832f2d2a7d6d654a1d7f5668828d375c7dd"

#: The Hugging Face Hub repository hdrmerge downloads from, and its revision.
#: ``--hub-repo`` / ``HDRMERGE_HUB_REPO`` and ``HDRMERGE_HUB_REVISION`` override them.
#: Integrity never depends on the revision: every file is checked against the
#: pins below before it is used, whichever repository or revision served it.
DEFAULT_HUB_REPO = "hdrmerge/safnet"
AFUNET_HUB_REPO = "hdrmerge/afunet"
DEFAULT_HUB_REVISION = "main"

LICENCE = (
    "SAFNet authors' weights: academic research use only, no commercial use "
    "(Kong et al., ECCV 2024; github.com/ltkong218/SAFNet)"
)
#: AFUNet's licence as the authors state it: the "License" section of their
#: README links the MIT licence; there is no LICENSE file, no copyright holder
#: is named, and nothing separate is said about the checkpoints.
AFUNET_LICENCE = (
    "MIT, as stated by the AFUNet authors' README (its License section links "
    "opensource.org/licenses/MIT; the repository has no LICENSE file and names no copyright holder); "
    "no separate statement covers the checkpoints "
    "(Li, Ni, Yang, ICCV 2025; github.com/eezkni/AFUNet)"
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
    #: The licence in a word or two, for the table of ``weights list``.
    licence_short: str = "academic only"
    paper: str = "Kong et al., SAFNet, ECCV 2024 (arXiv 2407.16308)"
    #: The authors' repository, the pinned commit and the file's folder in it.
    repo: str = AUTHORS_REPO
    commit: str = AUTHORS_COMMIT
    folder: str = "checkpoints"
    #: Hub repository (hdrmerge's mirror) that serves the file first.
    hub_repo: str = DEFAULT_HUB_REPO

    @property
    def origin(self) -> str:
        """Where the file comes from, for people."""
        return f"github.com/{self.repo} {self.folder}/{self.filename} @ {self.commit[:7]}"

    @property
    def url(self) -> str:
        """The file at the pinned commit of the authors' repository (the fallback source)."""
        return f"https://github.com/{self.repo}/raw/{self.commit}/{self.folder}/{self.filename}"

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
        *(
            Checkpoint(
                name=f"afunet-{stem.lower()}",
                arch="AFUNet",
                training_set=training_set,
                filename=f"{stem}.pth",
                git_blob=blob,
                licence=AFUNET_LICENCE,
                licence_short="MIT",
                paper="Li, Ni, Yang, AFUNet, ICCV 2025 (arXiv 2506.23537)",
                repo=AFUNET_REPO,
                commit=AFUNET_COMMIT,
                folder="pretrain_model",
                hub_repo=AFUNET_HUB_REPO,
            )
            for stem, training_set, blob in (
                ("Kalantari", "Kalantari 2017 (SIGGRAPH17)", "9e4cd349b7508d819554609c2aab6f92eeacf394"),
                ("Hu", "Hu et al. 2020 (sensor-realistic synthetic)", "9dcc2ff4cdeaa195331b740886ba43b91569cd04"),
                ("Tel", "Tel et al. 2023 (SCTNet data)", "e373e5d26a5edbb07dac2785f26a6cf65a51570b"),
            )
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
        from hdrmerge.weights.finetuned import cached_names

        raise InputError(
            f"unknown model {name!r}; known: {', '.join([*CHECKPOINTS, *cached_names()])} (see `hdrmerge weights list`)"
        ) from None
