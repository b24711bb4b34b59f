"""``load_dataset``: what ``igbench run`` calls to get a data set, with the MNIST -> bundled-sample fallback
for a user who named no data folder."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatasetNotFound
from ..messages import say
from ..plugin_calls import plugin_call
from .contract import validate_splits
from .locate import ENV_DATA_DIR, search_roots

if TYPE_CHECKING:  # pragma: no cover
    from ..data import DataSplits

FALLBACK = {"mnist": "mnist-sample"}


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    params: dict[str, Any] | None = None,
    fallback: bool = True,
) -> "DataSplits":
    """Load the registered data set ``name`` with ``params`` (resolved and checked by the plugin).

    When ``name`` is ``mnist``, ``fallback`` is true, no data folder was named (neither ``data_dir`` nor
    ``IGBENCH_DATA_DIR``), no data set parameter was given (the sample cannot honour one, such as a paper
    config's ``validation``) and MNIST is neither in the download cache nor downloadable, print a one-line
    notice to stderr and return the bundled ``mnist-sample`` instead (its ``name`` stays ``mnist-sample``
    so results record what was really used). A user who names a data folder asked for full MNIST: there a
    missing MNIST is an error (:class:`DatasetNotFound`, with a hint at the sample), not a smaller data set.
    """
    from ..registry import get_registry

    registry = get_registry()
    plugin = registry.get("dataset", name)
    resolved = plugin.resolve_params(params)
    path = Path(data_dir).expanduser() if data_dir else None
    try:
        with plugin_call(plugin, "load"):  # a third-party load's exception: one line naming its package
            splits = plugin.load(path, resolved)
    except DatasetNotFound as exc:
        substitute = FALLBACK.get(name)
        if not fallback or substitute is None:
            raise
        named = str(path) if path else os.environ.get(ENV_DATA_DIR, "")
        if params:  # e.g. a paper config's validation = 5000: the sample cannot honour it
            given = ", ".join(f"{k}={v}" for k, v in params.items())
            raise DatasetNotFound(f"{exc} (igbench does not fall back to the bundled 5,000-digit sample here: it "
                                  f"cannot honour {given}; pass --data-dir with full MNIST)") from None
        if named:
            raise DatasetNotFound(f"{exc}; a data folder was named ({named}), so igbench does not fall back to "
                                  f"the bundled 5,000-digit sample: to use it, name none or pass --dataset "
                                  f"mnist-sample") from None
        roots = [str(root) for root, _how in search_roots(path)]
        reason = f"not in {' or '.join(roots)}"
        if getattr(exc, "download_failure", None):
            reason += f"; {exc.download_failure}"
        say(f"igbench: MNIST not found ({reason}); using the bundled 5,000-digit sample ({substitute}) instead. "
            "Pass --data-dir to use full MNIST.")
        sample = registry.get("dataset", substitute)
        sample_params = sample.resolve_params({})
        splits = sample.load(None, sample_params)
        validate_splits(splits, sample)
        return replace(splits, notes=f"Fallback: requested {name}, which was not found. {splits.notes}",
                       params=dict(sample_params))
    validate_splits(splits, plugin)  # before anything trains on it: a one-line error naming plugin and fix
    return replace(splits, params=dict(resolved))
