"""What a run ran on: library versions, platform, CPU/GPU and the git commit, recorded in every result."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from . import __version__

# Result field -> distribution name (looked up with importlib.metadata, so nothing heavy is imported).
_DISTRIBUTIONS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "art": "adversarial-robustness-toolbox",
    "numpy": "numpy",
}


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """A human-readable CPU model name (from /proc/cpuinfo on Linux), or None when unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in {"model name", "Hardware", "Processor"} and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def gpu_name(device: str) -> str | None:
    """The name of the CUDA device ``device`` refers to, or None for CPU runs / no CUDA."""
    if not device.startswith("cuda"):
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        _, _, index = device.partition(":")
        return str(torch.cuda.get_device_name(int(index) if index else torch.cuda.current_device()))
    except Exception:  # a broken driver must not stop a result from being written
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def utc_timestamp() -> str:
    """Now, in UTC, as result files write it (``created``): ``2026-11-30T12:00:00Z``."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_changed_paths(cwd: str | os.PathLike[str] | None = None) -> list[str] | None:
    """Tracked files with uncommitted changes (staged or not), relative to the repository root, sorted.

    None when ``cwd`` is not in a repository or git is missing. A run whose tree is dirty records these,
    so a reader can tell uncommitted result files (harmless) from uncommitted code (not reproducible
    from the commit).
    """
    where = Path(cwd) if cwd is not None else SOURCE_DIR
    status = _git(["status", "--porcelain", "-z", "--untracked-files=no"], where)
    if status is None:
        return None
    paths, fields = set(), status.split("\0")
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # a rename or copy is followed by its source path
            if i < len(fields) and fields[i]:
                paths.add(fields[i])
            i += 1
    return sorted(paths)


#: Where the running igbench's code lies: records name the git state of its repository (an editable
#: install, a checkout) and make no git claim for an installed copy. Not the working directory, which may
#: be another repository altogether.
SOURCE_DIR = Path(__file__).resolve().parent


def git_commit_and_changes(cwd: str | os.PathLike[str] | None = None) -> tuple[str | None, list[str] | None]:
    """``(commit, changed paths)`` of the repository holding ``cwd``: one ``git status`` serves both
    the dirty flag and the list. ``(None, None)`` as for :func:`git_provenance`."""
    where = Path(cwd) if cwd is not None else SOURCE_DIR
    head = _git(["rev-parse", "HEAD"], where)
    if head is None or not head.strip():
        return None, None
    return head.strip(), git_changed_paths(where)


def git_provenance(cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``git_commit`` and ``git_dirty`` fields of a record (a result's ``environment``, an ``explain``
    block), plus ``git_dirty_paths`` when the tree is dirty, for the repository holding ``cwd`` (default:
    :data:`SOURCE_DIR`, igbench's own code). Commit and dirty flag are ``None`` when ``cwd`` is not inside a repository,
    the repository has no commit yet, or git is not installed. Dirty means tracked files have uncommitted
    changes; the paths let a reader tell uncommitted outputs from uncommitted code."""
    commit, changed = git_commit_and_changes(cwd)
    out: dict[str, Any] = {"git_commit": commit, "git_dirty": None if changed is None else bool(changed)}
    if changed:
        out["git_dirty_paths"] = changed
    return out


def capture_environment(device: str, seed: int, cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``environment`` block of a result file (see igbench/schema/result.schema.json)."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for field, dist in _DISTRIBUTIONS.items():
        env[field] = package_version(dist)
    # the running code's version, as in the checkpoint hashes (a stale editable install's metadata lags)
    env["igbench"] = __version__
    env.update(
        {
            "device": str(device),
            "cpu": cpu_model(),
            "gpu": gpu_name(str(device)),
            **git_provenance(cwd),
            "seed": int(seed),
            "torch_threads": torch_threads(),
            "working_dir": os.getcwd(),
        }
    )
    if variables := recorded_env_vars():
        env["env_vars"] = variables
    if str(device).startswith("cuda"):  # what float32 and determinism meant on the GPU
        env["cuda_arithmetic"] = cuda_arithmetic()
    return env


def cuda_arithmetic() -> dict[str, Any]:
    """How a GPU computes "float32" here: cuDNN convolutions' and matrix products' fp32 precision ("ieee",
    or "tf32" with a 10-bit mantissa), and whether cuDNN picks deterministic algorithms."""
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        conv = cudnn.conv.fp32_precision
        conv = cudnn.fp32_precision if conv == "none" else conv  # "none": the cuDNN-wide setting applies
        mm = matmul.fp32_precision
        mm = torch.backends.fp32_precision if mm == "none" else mm  # "none": the global setting applies
        precision = {"cudnn_conv_fp32": str(conv), "matmul_fp32": str(mm)}
    else:
        precision = {"cudnn_conv_fp32": "tf32" if cudnn.allow_tf32 else "ieee",
                     "matmul_fp32": "tf32" if matmul.allow_tf32 else "ieee"}
    return {**precision, "cudnn_deterministic": bool(cudnn.deterministic)}


def exact_cuda_arithmetic() -> None:
    """On a GPU, make float32 mean float32 for this process: cuDNN's convolutions otherwise run in TF32
    (a 10-bit mantissa; PyTorch's default), so an fp32 result would not be one (``--precision bf16`` is
    the fast option), and pick deterministic cuDNN algorithms, so that a resumed training can end with the
    weights of an uninterrupted one. :func:`cuda_arithmetic` reads both back for each result."""
    import torch

    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9; mixing in the old flags errs
        torch.backends.cudnn.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def compute_device(device) -> "torch.device":
    """``torch.device(device)``, with :func:`exact_cuda_arithmetic` set first when it is a GPU. Every engine
    entry point that computes on a device (training, a grid's attacks, ``explain``) takes its device through
    here, so a library caller gets the same float32 as the CLI."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        exact_cuda_arithmetic()
    return device


#: Environment variables that change what a run computes or where its inputs come from (thread counts
#: change float rounding; the IGBENCH_ ones pick data, models and plugins). A result records those that
#: are set, so its ``command`` can be re-run as it ran.
RECORDED_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG",
    "IGBENCH_DATA_DIR", "IGBENCH_CACHE_DIR", "IGBENCH_OFFLINE", "IGBENCH_PLUGINS", "IGBENCH_STRICT_PLUGINS",
    "IGBENCH_MALLOC_TUNING",
)


def recorded_env_vars() -> dict[str, str]:
    """The variables of :data:`RECORDED_ENV_VARS` that are set in this process, by name."""
    return {name: os.environ[name] for name in RECORDED_ENV_VARS if name in os.environ}


def torch_threads() -> int | None:
    """torch's intra-op thread count: on a CPU it changes the order of float sums, so the same seed
    trains to slightly different weights with a different count."""
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # torch missing or broken: the result is still written
        return None
