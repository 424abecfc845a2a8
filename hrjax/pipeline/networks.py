"""The two networks of the method, split once into (graphdef, state) and passed explicitly, with the description
of the base network (:class:`hrjax.bases.BaseNetwork`) the pipeline reads its settings from."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hrjax.bases import DEFAULT_BASE, BaseNetwork, get_base
from hrjax.models import mergenet
from hrjax.models.layers import configure
from hrjax.pipeline.batching import Batcher, auto_max_batch
from hrjax.weights.load import load_model


def configured_graphdef(graphdef: nnx.GraphDef, state: nnx.State, *, precision: str | None = None,
                        grouped_impl: str | None = None) -> nnx.GraphDef:
    """The graphdef of one split network with its convolutions set (see :meth:`Models.configured`)."""
    return nnx.split(configure(nnx.merge(graphdef, state), precision=precision, grouped_impl=grouped_impl))[0]


@dataclass(frozen=True, eq=False)
class Models:
    """Both networks as (graphdef, state), which base network the first is (its settings: receptive field,
    input rule, normalisation, ...), and optionally the device mesh their batched work is sharded over
    (weights replicated on every device of the mesh)."""

    base: BaseNetwork
    base_graphdef: nnx.GraphDef
    base_state: nnx.State
    merge_graphdef: nnx.GraphDef
    merge_state: nnx.State
    mesh: Mesh | None = None

    @functools.cached_property
    def merge_size(self) -> int:
        """The merge net's input size (:func:`hrjax.models.mergenet.input_size`)."""
        return mergenet.input_size(self.merge_graphdef, self.merge_state)

    @functools.cached_property
    def on_first_device(self) -> "Models":
        """These models on the first device of their mesh, unsharded (themselves when there is no mesh), for work on
        one item: the whole-image passes, which a mesh would pad to one copy per device. The weights are that
        device's replica (no copy), so the programs are the ones a run without a mesh compiles."""
        if self.mesh is None:
            return self
        first = self.mesh.devices.flat[0]

        def replica(x):
            return next(s.data for s in x.addressable_shards if s.device == first)

        return Models(self.base, self.base_graphdef, jax.tree.map(replica, self.base_state), self.merge_graphdef,
                      jax.tree.map(replica, self.merge_state))

    def batcher(self, max_batch: int) -> Batcher:
        """Chunks of at most ``max_batch`` items per call; 0 = chosen from free device memory."""
        if max_batch == 0:
            devices = jax.local_devices()[:1] if self.mesh is None else list(self.mesh.devices.flat)
            max_batch = auto_max_batch(devices)
        return Batcher(max_batch, self.mesh)

    def configured(self, *, precision: str | None = None, grouped_impl: str | None = None) -> "Models":
        """The same weights with every convolution set to ``precision`` (hrjax.models.layers.PRECISIONS:
        "float32" = parity, "tf32", "bfloat16" = fast) and/or grouped-conv formulation ``grouped_impl``
        ("auto", "native", "split", "packed"). Only the graphdefs change; jitted stages compile once per setting."""

        def regraph(graphdef, state):
            return configured_graphdef(graphdef, state, precision=precision, grouped_impl=grouped_impl)

        return Models(self.base, regraph(self.base_graphdef, self.base_state), self.base_state,
                      regraph(self.merge_graphdef, self.merge_state), self.merge_state, self.mesh)

    def on_mesh(self, mesh: Mesh | None) -> "Models":
        """The same models with their weights replicated over ``mesh`` (``None``: default device)."""
        if mesh is None:
            return Models(self.base, self.base_graphdef, self.base_state, self.merge_graphdef, self.merge_state)
        rep = NamedSharding(mesh, PartitionSpec())
        return Models(self.base, self.base_graphdef, jax.device_put(self.base_state, rep), self.merge_graphdef,
                      jax.device_put(self.merge_state, rep), mesh)


def load_models(weights_dir: Path | None = None, *, base: str = DEFAULT_BASE,
                merge_model: str = "mergenet", merge_weights_dir: Path | None = None,
                mesh: Mesh | None = None, precision: str = "float32", grouped_impl: str = "auto") -> Models:
    """Load the base depth network and the merge network from the converted-weights store.

    Args:
      weights_dir: the store (default: :func:`hrjax.weights.store.default_weights_dir`).
      base: the base network's name (:data:`hrjax.bases.BASES`: ``midas_v21``, ``leres_res101``).
      merge_model: the merge network's catalogue name.
      merge_weights_dir: take the merge network from another store (e.g. one exported by
        ``hrjax train-merge``); default: the same ``weights_dir``.
      mesh: shard batched work over its devices (e.g. :func:`hrjax.pipeline.batching.data_mesh`).
      precision, grouped_impl: see :meth:`Models.configured` (the defaults reproduce the reference).

    Returns:
      :class:`Models`, both networks split into (graphdef, state), with the base's description.
    """
    description = get_base(base)
    mg, ms = load_model(description.name, weights_dir)
    gg, gs = load_model(merge_model, merge_weights_dir if merge_weights_dir is not None else weights_dir)
    models = Models(description, mg, ms, gg, gs)
    if precision != "float32" or grouped_impl != "auto":
        models = models.configured(precision=precision, grouped_impl=grouped_impl)
    return models.on_mesh(mesh)
