"""What a dataset plugin's ``load`` must return, checked once right after it returns.

A mistake here used to surface late or silently: a dict or ``None`` failed inside
``dataclasses.replace``, a ``DataSplits`` named after another data set was filed under that one's
leaderboard, and pixels outside the clip range trained every model before the built-in fgsm attack was
blamed for them. :func:`validate_splits` turns each into one line naming the plugin, its package and
the fix. It reads the tensors once (a min/max pass per split), so it costs far less than the loading.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import PluginError
from ..messages import say

if TYPE_CHECKING:  # pragma: no cover
    from ..plugin_types import DatasetPlugin

_HEX64 = re.compile(r"[0-9a-f]{64}")


def validate_splits(splits: Any, plugin: "DatasetPlugin") -> None:
    """Raise a one-line :class:`PluginError` when ``splits`` breaks the contract of ``plugin.load``."""
    problems = splits_problems(splits, plugin.name)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise PluginError(f"dataset plugin '{plugin.name}' (package '{plugin.source or 'unknown'}'): load() "
                          f"returned {problems[0]}{more}")
    _warn_if_channels_last(splits, plugin)


def splits_problems(splits: Any, name: str) -> list[str]:
    """What is wrong with ``splits`` as the ``load`` result of the dataset plugin called ``name``, each
    "what; how to fix it"; empty when nothing is."""
    import torch

    from ..data import DataSplits

    if not isinstance(splits, DataSplits):
        what = "None" if splits is None else f"a {type(splits).__name__}"
        return [f"{what}, not an igbench.data.DataSplits; return DataSplits(name=self.name, ...) "
                f"(igbench.datasets.build.build_splits makes one from uint8 arrays)"]
    problems = []
    if splits.name != name:
        problems.append(f"DataSplits.name {splits.name!r}, not the plugin's name {name!r}; results and leaderboards "
                        f"would file it under {splits.name!r}: set name=self.name (dataclasses.replace(splits, "
                        f"name=self.name) when wrapping another data set)")
    split_names = ["train", "test"]
    if splits.validation_x is not None or splits.validation_y is not None:
        split_names.append("validation")  # optional: images held out of training
    tensors = {f"{split}_{k}": getattr(splits, f"{split}_{k}") for split in split_names for k in "xy"}
    not_tensors = [f"{key} as a {type(value).__name__}, not a torch.Tensor; convert it (torch.from_numpy)"
                   + ("; validation_x and validation_y are given together or not at all" if value is None else "")
                   for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        return problems + not_tensors  # the checks below need tensors
    if not _is_count(splits.num_classes):
        problems.append(f"num_classes={splits.num_classes!r}; it must be a positive int")
    clip_ok = _is_number(splits.clip_min) and _is_number(splits.clip_max) and splits.clip_min < splits.clip_max
    if not clip_ok:
        problems.append(f"clip range [{splits.clip_min!r}, {splits.clip_max!r}]; clip_min and clip_max must be "
                        f"finite numbers with clip_min < clip_max")
    for split in split_names:
        problems += _split_problems(split, tensors[f"{split}_x"], tensors[f"{split}_y"], splits, clip_ok)
    tx = tensors["train_x"]
    for split in split_names[1:]:
        vx = tensors[f"{split}_x"]
        if tx.dim() == 4 and vx.dim() == 4 and tx.shape[1:] != vx.shape[1:]:
            problems.append(f"train images of (C, H, W) {tuple(tx.shape[1:])} but {split} images of "
                            f"{tuple(vx.shape[1:])}; all splits must hold images of one shape{_layout_hint(tx, vx)}")
    if not isinstance(splits.checksum, str) or not _HEX64.fullmatch(splits.checksum):
        problems.append(f"checksum {splits.checksum!r}; it must be a 64-character lowercase hex sha256: "
                        f"checksum=igbench.data.array_checksum(train_x, train_y, test_x, test_y)")
    return problems


def _split_problems(split: str, x, y, splits, clip_ok: bool) -> list[str]:
    import torch

    out = []
    if x.dim() != 4:
        out.append(f"{split}_x of shape {tuple(x.shape)}; images must be 4-D float32 (N, C, H, W), one grey "
                   f"channel as C=1 (x.reshape(N, 1, H, W))")
    if x.dtype != torch.float32:
        out.append(f"{split}_x of dtype {x.dtype}; it must be torch.float32 (x.float(), scaled to "
                   f"[clip_min, clip_max], e.g. uint8 / 255)")
    if y.dim() != 1:
        out.append(f"{split}_y of shape {tuple(y.shape)}; labels must be 1-D (N,) class indices (y.reshape(-1))")
    if y.dtype != torch.int64:
        out.append(f"{split}_y of dtype {y.dtype}; labels must be torch.int64 class indices (y.long())")
    n = x.shape[0] if x.dim() else 0
    if y.dim() == 1 and x.dim() >= 1 and y.shape[0] != n:
        out.append(f"{y.shape[0]} {split} labels for {n} {split} images; {split}_y must have one label per image")
    if n == 0:
        out.append(f"an empty {split} split; every split needs at least one example")
        return out
    if y.numel() and y.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        lo, hi = int(y.min()), int(y.max())
        if _is_count(splits.num_classes) and (lo < 0 or hi >= splits.num_classes):
            out.append(f"{split}_y with labels {lo}..{hi}; labels must be in 0..{splits.num_classes - 1} "
                       f"(num_classes={splits.num_classes}: shift 1-based labels down, or fix num_classes)")
    if x.is_floating_point() and x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if lo != lo or hi != hi:  # NaN propagates through aminmax
            out.append(f"{split}_x containing NaN; replace or drop those images")
        elif clip_ok and (lo < splits.clip_min or hi > splits.clip_max):
            out.append(f"{split}_x with values in [{lo:g}, {hi:g}], outside its clip range [{splits.clip_min:g}, "
                       f"{splits.clip_max:g}]; scale the pixels (uint8 / 255 for [0, 1]) or set clip_min/clip_max "
                       f"to the data's range (attacks clip to it)")
    return out


def _warn_if_channels_last(splits, plugin) -> None:
    """A one-line warning (not an error: such a shape may be meant) for images shaped like (N, H, W, C)."""
    hint = _layout_hint(splits.train_x)
    if hint:
        say(f"igbench: warning: dataset plugin '{plugin.name}' (package '{plugin.source or 'unknown'}') gives "
            f"images of (C, H, W) {tuple(splits.train_x.shape[1:])}{hint}")


def _layout_hint(*xs) -> str:
    """``"; that looks channels-last ..."`` when any of ``xs`` is (N, H, W, C) with C in 1..4 and H, W larger."""
    for x in xs:
        if x.dim() == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] > 4 and x.shape[2] > 4:
            return ("; that looks channels-last (N, H, W, C): igbench wants (N, C, H, W), "
                    "x.permute(0, 3, 1, 2).contiguous()")
    return ""


def _is_number(v) -> bool:
    import math

    import numbers

    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v) -> bool:
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
