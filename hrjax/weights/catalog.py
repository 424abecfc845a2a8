"""The models hrjax knows: how to build each one and where its official checkpoint comes from (SPEC 12).

Imports neither jax nor flax (the models are named by string and imported by :meth:`ModelEntry.build`), so the
command line can check the weights and print the fix-it commands before anything heavy is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type hint only
    from flax import nnx


@dataclass(frozen=True)
class OfficialCheckpoint:
    file_name: str                 # the name hrjax downloads to
    aliases: tuple[str, ...]       # other names of the very same file
    sha256: str
    size: int | None               # bytes, where known
    urls: tuple[str, ...]          # official first, then mirrors
    licence: str
    # Where the state_dict sits in the file: None, the file is the state_dict itself (or a {"model",
    # "optimizer"} wrapper); else the entry of the top-level dict that holds it, other entries ignored.
    state_dict_entry: str | None = None
    # A prefix every key may carry (nn.DataParallel's "module."): removed when *all* keys have it, as the
    # official loader's strip_prefix_if_present does; a partly prefixed state_dict is left for the strict check.
    optional_prefix: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str                   # "module:callable" returning an un-loaded nnx.Module
    checkpoint: OfficialCheckpoint
    description: str

    def build(self, **architecture) -> nnx.Module:
        """The un-loaded network; ``architecture`` (a store's, see ``WeightsInfo.architecture``) overrides the
        builder's defaults, which are the official checkpoint's."""
        module, attr = self.builder.split(":")
        return getattr(importlib.import_module(module), attr)(**architecture)


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
    "leres_res101": ModelEntry(
        name="leres_res101",
        builder="hrjax.models.leres:LeReS",
        description="LeReS depth network, ResNeXt-101 32x8d backbone (AdelaiDepth), base of --depthNet 2",
        checkpoint=OfficialCheckpoint(
            file_name="res101.pth",
            aliases=(),
            sha256="1d696b2ef3e8336b057d0c15bc82d2fecef821bfebe5ef9d7671a5ec5dde520b",
            size=None,
            urls=(
                # BoostingMonocularDepth README (Feb 2024 note) and its Colab notebook: the LeReS site's link
                # expired; then the link of AdelaiDepth's LeReS README before it moved to Baidu Pan (dead).
                "https://huggingface.co/lllyasviel/Annotators/resolve/850be791e8f704b2fa2e55ec9cc33a6ae3e28832/"
                "res101.pth",
                "https://cloudstor.aarnet.edu.au/plus/s/lTIJF4vrvHCAI31/download",
            ),
            licence="Adobe Research License: noncommercial use only, no redistribution (AdelaiDepth LeReS/LICENSE)",
            # the official loaders: load_state_dict(strip_prefix_if_present(checkpoint["depth_model"],
            # "module.")) (BoostingMonocularDepth run.py l. 72-75, AdelaiDepth lib/net_tools.load_ckpt); the
            # file also holds "shift_model" / "focal_model" (point-cloud modules), unused here
            state_dict_entry="depth_model",
            optional_prefix="module.",
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


# What ``hrjax weights download`` fetches without --model: what the default ``hrjax boost`` needs (the MiDaS base
# and the merge net, ~0.65 GB). The other bases (LeReS 0.5 GB, Depth Anything V2 up to 1.3 GB) only on request.
DEFAULT_DOWNLOAD = ("midas_v21", "mergenet")


def fix_it_commands(model: str, weights_dir: Path | None = None) -> str:
    """The commands that install ``model`` into ``weights_dir`` (None: the default folder), for error messages."""
    file_name = get(model).checkpoint.file_name
    wd = f" --weights-dir {weights_dir}" if weights_dir is not None else ""
    return (f"  hrjax weights download --model {model}{wd}\n"
            f"or, with a manually downloaded {file_name}:\n"
            f"  hrjax weights convert --model {model} --source PATH/TO/{file_name}{wd}")


def get(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(MODELS)}") from None
