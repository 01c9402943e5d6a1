"""The deghosting networks: architectures, detection from a state dict, strict loading.

One class per architecture (:class:`SAFNet`, :class:`SAFNetS`, :class:`AFUNet`);
a state dict is matched to its architecture by its keys, then loaded strictly: every key
must be present with the right shape, and no key may be left over. Any
mismatch raises :class:`~hdrmerge.errors.ArchitectureError` naming the
architecture found and the offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hdrmerge.errors import ArchitectureError
from hdrmerge.models.afunet import AFUNet
from hdrmerge.models.safnet import (
    Motion,
    SAFNet,
    SAFNetModel,
    SAFNetOutput,
    SAFNetS,
    explicit_fusion,
    flow_size,
)

__all__ = [
    "AFUNet",
    "ARCHITECTURES",
    "Model",
    "Motion",
    "SAFNet",
    "SAFNetModel",
    "SAFNetOutput",
    "SAFNetS",
    "build_model",
    "detect_architecture",
    "explicit_fusion",
    "flow_size",
    "load_state_dict",
    "make_frames",
]

#: Any of the networks hdrmerge runs.
Model = SAFNet | SAFNetS | AFUNet

ARCHITECTURES: dict[str, type[SAFNet] | type[SAFNetS] | type[AFUNet]] = {
    "SAFNet": SAFNet,
    "SAFNet-S": SAFNetS,
    "AFUNet": AFUNet,
}

# Keys whose presence tells SAFNet from SAFNet-S: only SAFNet-S has a
# seventh refinement conv, only SAFNet has residual blocks.
_SIGNATURES: dict[str, str] = {
    "SAFNet-S": "refinenet.conv7.weight",
    "SAFNet": "refinenet.resblock1.conv1.0.weight",
}

# Top-level module names of each family: the two share none, so the key
# prefixes alone tell a SAFNet checkpoint from an AFUNet one.
_FAMILY_PREFIXES: dict[str, tuple[str, ...]] = {
    "SAFNet": ("encoder.", "decoder.", "refinenet."),
    "AFUNet": ("SFM.", "a_12.", "a_32.", "f_12.", "f_32.", "mlps_end.", "patch_embed."),
}


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``module.`` prefix that DataParallel training leaves on every key."""
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def detect_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """Name of the architecture a state dict was saved from.

    ``SAFNet``, ``SAFNet-S`` or ``AFUNet``. Raises ArchitectureError when it
    is none of them, or mixes the keys of both families.
    """
    state = _strip_prefix(state)
    families = [f for f, prefixes in _FAMILY_PREFIXES.items() if any(k.startswith(prefixes) for k in state)]
    if len(families) > 1:
        shown = {f: next(k for k in sorted(state) if k.startswith(_FAMILY_PREFIXES[f])) for f in families}
        raise ArchitectureError(
            f"the checkpoint mixes SAFNet keys ({shown['SAFNet']}, …) and AFUNet keys "
            f"({shown['AFUNet']}, …); it is damaged or was put together from two checkpoints"
        )
    if families == ["AFUNet"]:
        return "AFUNet"
    found = [arch for arch, key in _SIGNATURES.items() if key in state]
    if len(found) == 1:
        return found[0]
    if not found and not families:
        sample = ", ".join(sorted(state)[:3]) or "no tensors at all"
        raise ArchitectureError(
            f"not a SAFNet or AFUNet checkpoint (keys start: {sample}); "
            "use one listed by `hdrmerge weights list`"
        )
    raise ArchitectureError(
        "cannot tell SAFNet from SAFNet-S: the checkpoint has "
        + ("both" if found else "neither")
        + f" of {', '.join(_SIGNATURES.values())}; it is damaged or of another architecture"
    )


def _describe(keys: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict(
    model: Model, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> Model:
    """Load ``state`` into ``model`` strictly; name every mismatching key.

    Unlike ``nn.Module.load_state_dict`` this checks shapes before copying and
    reports missing, unexpected and wrongly shaped tensors in one message.
    """
    state = _strip_prefix(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        try:
            found = detect_architecture(state)
        except ArchitectureError:
            found = "unknown"
        parts = []
        if missing:
            parts.append(f"missing {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected {_describe(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {_describe(wrong)}")
        raise ArchitectureError(
            f"{source} does not fit {model.arch} (it looks like {found}): " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    if isinstance(model, AFUNet):
        if bad := model.foreign_buffers():
            # The forward pass reads the stored relative-position indices, so a
            # wrong one would silently change every attention.
            raise ArchitectureError(
                f"{source} does not fit {model.arch}: buffers differ from the ones the "
                f"architecture defines: {_describe(bad)}; the file is damaged"
            )
    return model


def build_model(
    state: Mapping[str, torch.Tensor], arch: str | None = None, *, source: str = "checkpoint"
) -> Model:
    """A model in eval mode with ``state`` loaded; architecture detected unless given."""
    arch = arch or detect_architecture(state)
    if arch not in ARCHITECTURES:
        raise ArchitectureError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    model = ARCHITECTURES[arch]()
    load_state_dict(model, state, source=source)
    return model.eval()


def make_frames(
    ldrs: Sequence[torch.Tensor], exposures: Sequence[float], gamma: float = 2.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's three 6-channel inputs from LDR frames (spec section 1).

    ``ldrs``: short, reference, long, each B×3×H×W float in [0, 1] (gamma 2.2
    encoded). ``exposures``: exposure of each frame relative to the shortest
    (``2 ** (ev - min(ev))``). Returns ``(x0, x1, x2)``, each B×6×H×W:
    ``ldr ** 2.2 / e`` then ``ldr``.
    """
    if len(ldrs) != 3 or len(exposures) != 3:
        raise ValueError(f"need 3 frames and 3 exposures, got {len(ldrs)} and {len(exposures)}")
    out = []
    for ldr, e in zip(ldrs, exposures):
        if ldr.dim() != 4 or ldr.shape[1] != 3:
            raise ValueError(f"expected a B×3×H×W frame, got shape {tuple(ldr.shape)}")
        out.append(torch.cat((ldr.pow(gamma) / e, ldr), dim=1))
    return out[0], out[1], out[2]
