"""The models hrjax knows: how to build each one and where its official checkpoint comes from (SPEC 12)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from flax import nnx


@dataclass(frozen=True)
class OfficialCheckpoint:
    file_name: str                 # the name hrjax downloads to
    aliases: tuple[str, ...]       # other names of the very same file
    sha256: str
    size: int | None               # bytes, where known
    urls: tuple[str, ...]          # official first, then mirrors
    licence: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str                   # "module:callable" returning an un-loaded nnx.Module
    checkpoint: OfficialCheckpoint
    description: str

    def build(self) -> nnx.Module:
        module, attr = self.builder.split(":")
        return getattr(importlib.import_module(module), attr)()


MODELS: dict[str, ModelEntry] = {
    "midas_v21": ModelEntry(
        name="midas_v21",
        builder="hrjax.models.midas_v21:MidasNet",
        description="MiDaS v2.1 large (ResNeXt-101 32x8d WSL encoder), the base depth network",
        checkpoint=OfficialCheckpoint(
            file_name="midas_v21-f6b98070.pt",
            aliases=("midas_v21_384.pt", "model-f6b98070.pt", "model.pt"),
            sha256="f6b980704cfd7259c7cc2b058c2f160159c55e84b3b6c08331b4156a84629f70",
            size=422_509_849,
            urls=(
                "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_384.pt",
                "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21-f6b98070.pt",
                "https://github.com/intel-isl/MiDaS/releases/download/v2_1/model-f6b98070.pt",
                "https://github.com/AlexeyAB/MiDaS/releases/download/midas_dpt/midas_v21-f6b98070.pt",
            ),
            licence="MIT",
        ),
    ),
    "mergenet": ModelEntry(
        name="mergenet",
        builder="hrjax.models.mergenet:UnetGenerator",
        description="pix2pix U-Net 'unet_1024' merge network of Boosting Monocular Depth",
        checkpoint=OfficialCheckpoint(
            file_name="latest_net_G.pth",
            aliases=(),
            sha256="50ec735d74ed6499562d898f41b49343e521808b8dae589aa3c2f5c9ac9f7462",
            size=None,
            urls=(
                "https://sfu.ca/~yagiz/CVPR21/latest_net_G.pth",
                "https://huggingface.co/lllyasviel/Annotators/resolve/9a7d84251d487d11/latest_net_G.pth",
            ),
            licence="research only (no commercial use), per the Boosting Monocular Depth authors",
        ),
    ),
}


def _dav2_entry(size: str, repo: str, sha256: str, n_bytes: int, licence: str, params: str) -> ModelEntry:
    file_name = f"depth_anything_v2_{size}.pth"
    return ModelEntry(
        name=f"dav2_{size}",
        builder=f"hrjax.models.dav2:dav2_{size}",
        description=f"Depth Anything V2 {repo.rsplit('-', 1)[-1]} ({params} parameters, DINOv2 {size[3:].upper()}/14 "
                    f"+ DPT), a base depth network",
        checkpoint=OfficialCheckpoint(
            file_name=file_name,
            aliases=(),
            # the Git LFS object id (= sha256) of the file in the official Hugging Face repository
            sha256=sha256,
            size=n_bytes,
            urls=(f"https://huggingface.co/depth-anything/{repo}/resolve/main/{file_name}",),
            licence=licence,
        ),
    )


# Depth Anything V2 (DepthAnything/Depth-Anything-V2 README, "Pre-trained Models"): the official checkpoints live
# on Hugging Face only; the sha256 pins the exact file. Licences per the official README / model cards.
MODELS.update({
    e.name: e for e in (
        _dav2_entry("vits", "Depth-Anything-V2-Small",
                    "715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378", 99_218_434,
                    "Apache-2.0", "24.8M"),
        _dav2_entry("vitb", "Depth-Anything-V2-Base",
                    "0d2b7002e62d39d655571c371333340bd88f67ab95050c03591555aa05645328", 389_961_218,
                    "CC-BY-NC-4.0 (non-commercial)", "97.5M"),
        _dav2_entry("vitl", "Depth-Anything-V2-Large",
                    "a7ea19fa0ed99244e67b624c72b8580b7e9553043245905be58796a608eb9345", 1_341_395_338,
                    "CC-BY-NC-4.0 (non-commercial)", "335.3M"),
    )
})


def get(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(MODELS)}") from None
