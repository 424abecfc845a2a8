"""Test configuration in the equinox style: strict dtype promotion, rank promotion raises, 8 CPU devices.

The default run is spread over worker processes (pytest-xdist, ``-n auto`` in pyproject.toml, at most
:func:`pytest_xdist_auto_num_workers` of them): XLA compiles on one thread, so a second process keeps the
other core busy while one compiles, and the long tests (:data:`LONG_FIRST`) start first so none is left
running alone at the end. ``-n 0`` runs everything in this process.

The flags must be set before jax is imported anywhere, hence at the top of this file. Also set here, for the
whole session and every subprocess the tests start (they inherit the environment): one temporary JAX
compilation cache, so a program compiled once (MiDaS at a given shape, the merge net) is compiled once per
session instead of once per process or per test module.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# With pytest-xdist the controller imports this file before it starts the workers, which inherit its environment:
# every worker shares the controller's cache folder (a program compiled by one is loaded by the other), and only
# the controller removes it.
_SESSION_CACHE_ENV = "HRJAX_TEST_SESSION_CACHE"
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(_SESSION_CACHE_ENV):
    _COMPILE_CACHE = os.environ[_SESSION_CACHE_ENV]
else:
    _COMPILE_CACHE = tempfile.mkdtemp(prefix="hrjax-tests-jax-cache-")
    os.environ[_SESSION_CACHE_ENV] = _COMPILE_CACHE
    atexit.register(shutil.rmtree, _COMPILE_CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _COMPILE_CACHE     # this process (read when jax is imported) ...
os.environ["HRJAX_CACHE_DIR"] = _COMPILE_CACHE               # ... and the CLI's default --cache-dir
os.environ["HRJAX_KERNEL_DIR"] = os.path.join(_COMPILE_CACHE, "kernels")  # hrjax.ops.grouped_conv: built once
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

from hrjax.host_memory import limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()  # like the CLI: keeps the test process's heap from fragmenting (hrjax.host_memory)

from hrjax.cpu_backend import use_xla_convolutions  # noqa: E402

# like the CLI, in this process and (through XLA_FLAGS) every subprocess: convolutions on XLA's kernels, so the
# grouped-conv "auto" is "native" (a sixth of split's compile time per MiDaS shape; hrjax.cpu_backend)
use_xla_convolutions()

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ci_strict import pytest_runtest_makereport  # noqa: E402,F401  (CI=true: a skip is a failure)

pytest_plugins = ["pytester"]

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    """The module bench/<name>.py (the bench scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def golden_dir() -> Path | None:
    env = os.environ.get("HRJAX_GOLDEN_DIR")
    cand = Path(env) if env else ROOT.parent / "shared" / "golden"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def compile_cache() -> Path:
    """The session's JAX compilation cache (also the default of the CLI's --cache-dir in tests)."""
    return Path(_COMPILE_CACHE)


@pytest.fixture(scope="session")
def golden() -> Path:
    """The golden folder; missing, it is a skip (a failure under CI=true, see ci_strict)."""
    g = golden_dir()
    if g is None:
        pytest.skip("golden fixtures not found (../shared/golden or $HRJAX_GOLDEN_DIR)")
    return g


@pytest.fixture(scope="session")
def synth(golden):
    """The golden folder's synth_weights module (numpy-only weight rule, README section 2)."""
    from hrjax.convert.synthetic import synth_module

    return synth_module(golden)


@pytest.fixture(scope="session")
def golden_compare(golden):
    """The golden folder's compare.py (the tolerance table of README section 6)."""
    from hrjax.golden import compare_module

    return compare_module(golden)


@pytest.fixture(scope="session")
def synth_state_dicts(golden, synth) -> dict:
    """``{model: state dict}`` of the synthetic weights (golden README 2), numpy arrays, built once."""
    from hrjax.convert.synthetic import SESSION_MODELS, synth_state_dict

    return {model: synth_state_dict(golden, model, synth=synth) for model in SESSION_MODELS}


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """``<session temp>/<name>``, filled by ``build(folder)`` once per test session: with pytest-xdist the
    first worker to need it builds it under a file lock and the others wait for it and reuse it (the
    checkpoints and converted stores below cost ~30 CPU-s per process). Read-only for the tests: a test that
    changes a store copies it first."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' temp folders are siblings in the session's
    folder, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def _synthetic_checkpoint(tmp_path_factory, request, model: str, filename: str) -> Path:
    """The synthetic ``model`` as a plain torch state_dict (the official layout of MiDaS, the merge net and
    Depth Anything V2), written once per session. The state dicts are built only by the process that writes."""
    pytest.importorskip("torch")

    def build(folder: Path) -> None:
        request.getfixturevalue("synth").save_torch(request.getfixturevalue(model), folder / filename)
    return _built_once(tmp_path_factory, f"ckpt_{Path(filename).stem}", build) / filename


@pytest.fixture(scope="session")
def midas_state_dict(synth_state_dicts) -> dict:
    return synth_state_dicts["midas_v21"]


@pytest.fixture(scope="session")
def mergenet_state_dict(synth_state_dicts) -> dict:
    return synth_state_dicts["mergenet"]


@pytest.fixture(scope="session")
def midas_checkpoint(tmp_path_factory, request) -> Path:
    """Synthetic MiDaS v2.1 checkpoint in the official layout (plain torch state_dict), written once."""
    return _synthetic_checkpoint(tmp_path_factory, request, "midas_state_dict", "midas_v21-f6b98070.pt")


@pytest.fixture(scope="session")
def mergenet_checkpoint(tmp_path_factory, request) -> Path:
    """Synthetic merge-net checkpoint in the official layout (plain torch state_dict), written once."""
    return _synthetic_checkpoint(tmp_path_factory, request, "mergenet_state_dict", "latest_net_G.pth")


@pytest.fixture(scope="session")
def leres_state_dict(golden, synth) -> dict:
    """Synthetic LeReS ResNeXt-101 weights (golden README 2, 7), keys as RelDepthModel.state_dict() names them.
    Apart from ``synth_state_dicts``: 115 M values, built only by the sessions that run LeReS tests."""
    from hrjax.convert.synthetic import synth_state_dict

    return synth_state_dict(golden, "leres_res101", synth=synth)


@pytest.fixture(scope="session")
def leres_checkpoint(tmp_path_factory, request) -> Path:
    """The synthetic LeReS weights in the official ``res101.pth`` layout, written once: the state_dict under
    ``checkpoint["depth_model"]`` with nn.DataParallel's ``module.`` prefix on every key (SPEC 7), beside
    another entry the converter must ignore (the real file also holds the point-cloud modules)."""
    import collections

    torch = pytest.importorskip("torch")

    def build(folder: Path) -> None:
        # np.array(..., order="C"): 0-d entries (num_batches_tracked) stay 0-d, as in synth_weights.save_torch
        sd = collections.OrderedDict((f"module.{k}", torch.from_numpy(np.array(v, order="C", copy=True)))
                                     for k, v in request.getfixturevalue("leres_state_dict").items())
        torch.save({"depth_model": sd, "shift_model": collections.OrderedDict()}, folder / "res101.pth")
    return _built_once(tmp_path_factory, "ckpt_res101", build) / "res101.pth"


@pytest.fixture(scope="session")
def leres_weights_dir(tmp_path_factory, request) -> Path:
    """A weights store holding the synthetic LeReS, converted once with hrjax's converter (read-only: a test
    that changes a store copies it first). Its own folder: ``weights_dir``'s listing stays MiDaS + merge net."""
    return _converted_store(tmp_path_factory, request, "weights_leres", {"leres_res101": "leres_checkpoint"})


@pytest.fixture(scope="session")
def dav2_vits_state_dict(golden, synth) -> dict:
    """Synthetic Depth Anything V2 ViT-S weights (golden README 2 and 7), numpy arrays, built once."""
    from hrjax.convert.synthetic import synth_state_dict

    return synth_state_dict(golden, "dav2_vits", synth=synth)


@pytest.fixture(scope="session")
def dav2_vits_checkpoint(tmp_path_factory, request) -> Path:
    """Synthetic ViT-S checkpoint in the layout of the official depth_anything_v2_vits.pth, written once."""
    return _synthetic_checkpoint(tmp_path_factory, request, "dav2_vits_state_dict", "depth_anything_v2_vits.pth")


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory, request) -> Path:
    """A weights store holding both synthetic models, converted once with hrjax's own converter.

    Shared by every test that only reads it: tests that change a store copy it first."""
    return _converted_store(tmp_path_factory, request, "weights",
                            {"midas_v21": "midas_checkpoint", "mergenet": "mergenet_checkpoint"})


@pytest.fixture(scope="session")
def dav2_weights_dir(tmp_path_factory, request) -> Path:
    """A store holding the synthetic Depth Anything V2 ViT-S only (read-only; the merge net comes from
    ``weights_dir``, as for LeReS: converted once per session, not once per base)."""
    return _converted_store(tmp_path_factory, request, "weights_dav2", {"dav2_vits": "dav2_vits_checkpoint"})


def _converted_store(tmp_path_factory, request, folder: str, checkpoints: dict[str, str]) -> Path:
    """A weights store holding each ``{model: fixture giving its official checkpoint}``, converted by hrjax's
    own converter once per session (the checkpoints are written only if the store is not there yet)."""
    pytest.importorskip("torch")

    def build(wd: Path) -> None:
        from hrjax.convert.synthetic import converted_store

        converted_store(wd, {model: request.getfixturevalue(fixture) for model, fixture in checkpoints.items()})
    return _built_once(tmp_path_factory, folder, build)


@pytest.fixture(scope="session")
def models(weights_dir):
    """Both networks loaded once from ``weights_dir`` (hrjax.load_models), shared by the pipeline tests."""
    from hrjax.pipeline.networks import load_models

    return load_models(weights_dir)


@pytest.fixture(scope="session")
def auto_models(models):
    """``models`` itself, named for what it runs: the default grouped convolution ("auto"), which is "kernel" on
    the tests' CPU backend (hrjax.ops.grouped_conv, built once per session in the session's cache folder). One
    graphdef, so the tests using either fixture share their compiled programs. Every formulation keeps its parity
    tests (test_midas, test_leres, test_cpu_backend, test_grouped_conv)."""
    from hrjax.models.layers import resolve_grouped_impl

    assert resolve_grouped_impl("auto") == "kernel", "hrjax's grouped convolution did not build (see its warning)"
    return models


# --------------------------------------------------------------------------------------------------------
# a small merge net, for tests of the pipeline's and the CLI's plumbing

# 6 levels, ngf 4: the same UnetGenerator code as unet_1024, run at 64^2 (Models.merge_size) instead of 1024^2,
# where the merges were most of a small run's time. Results do not depend on the merge net's size for what those
# tests check (batching, sharding, progress, compilation, files, resume); the goldens use the real one.
SMALL_MERGE_ARCHITECTURE = {"ngf": 4, "num_downs": 6, "input_size": 64}


def small_merge_net():
    """(graphdef, state) of the small merge net with fixed random weights: std 1/sqrt(fan in) per HWIO kernel, so
    the net does not amplify float32 rounding differences, zero biases."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from hrjax.models.mergenet import UnetGenerator

    graphdef, state = nnx.split(UnetGenerator(**SMALL_MERGE_ARCHITECTURE))
    rng = np.random.default_rng(0)

    def init(a):
        return jnp.asarray(rng.normal(0.0, 1.0 / np.sqrt(np.prod(a.shape[:-1])), a.shape) if a.ndim == 4
                           else np.zeros(a.shape), jnp.float32)
    return graphdef, jax.tree.map(init, state)


def flat_arrays(state) -> dict[str, np.ndarray]:
    """``{PyTorch key: numpy array}`` of an nnx state (its paths joined with dots, as the key tables name them):
    the layout a store holds and train-merge exports."""
    from flax import nnx

    return {".".join(str(k) for k in path): np.asarray(v.get_value()) for path, v in nnx.to_flat_state(state)}


@pytest.fixture(scope="session")
def small_models(auto_models):
    """``auto_models`` with :func:`small_merge_net` in place of unet_1024."""
    import dataclasses

    graphdef, state = small_merge_net()
    models = dataclasses.replace(auto_models, merge_graphdef=graphdef, merge_state=state)
    assert models.merge_size == SMALL_MERGE_ARCHITECTURE["input_size"] and auto_models.merge_size == 1024
    return models


@pytest.fixture(scope="session")
def small_weights_dir(tmp_path_factory, weights_dir) -> Path:
    """A store with the synthetic MiDaS (a link to ``weights_dir``'s) and :func:`small_merge_net` as "mergenet",
    written the way ``train-merge`` exports a merge net (its architecture recorded in hrjax.json)."""
    def build(wd: Path) -> None:
        from hrjax.train.checkpoint import export_generator

        (wd / "midas_v21").symlink_to(weights_dir / "midas_v21", target_is_directory=True)
        export_generator(flat_arrays(small_merge_net()[1]), wd, "mergenet",
                         source="tests/conftest.py small_merge_net", architecture=SMALL_MERGE_ARCHITECTURE)
    return _built_once(tmp_path_factory, "weights_small_merge", build)


# --------------------------------------------------------------------------------------------------------
# spreading the run over processes (pytest-xdist)

# The longest tests of the default run (measured: 30-180 s each on 2 cores), started first: with the short ones
# after them, the workers finish together instead of one running a long test alone at the end.
LONG_FIRST = (
    "test_pipeline_golden.py::test_pipeline_matches_reference[lunch_640_Final_mr1728]",
    "test_pipeline_golden.py::test_pipeline_matches_reference[synthetic_480_Final_mr1500]",
    "test_distributed.py::test_two_process_run_matches_single_process",
    "test_cli.py::test_folder_run_bad_inputs_resume_overwrite",
    "test_train_cli.py::test_commands_generate_train_resume_and_export",
    "test_pipeline_behaviour.py::",
    "test_pipeline_golden.py::",
)


def _long_rank(item) -> int:
    nodeid = item.nodeid.split("tests/", 1)[-1]
    return next((i for i, p in enumerate(LONG_FIRST) if nodeid.startswith(p)), len(LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_rank)  # stable: the order within each rank is the collection order


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most 4 (each holds both networks and compiles MiDaS: ~3-4 GB at
    peak) and at most one per 6 GiB of memory."""
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = 12.0
    return max(1, min(os.cpu_count() or 1, 4, int(mem_gib // 6)))
