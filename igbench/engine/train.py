"""The shared training loop that every defense runs on.

A :class:`Trainer` owns what is common to all defenses (data, architecture, optimizer settings, seed,
device, progress bar, NaN detection); a defense supplies the per-batch loss, or orchestrates several
``fit`` calls (distillation: teacher, then student).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..environment import compute_device, cpu_model, gpu_name, torch_threads
from ..errors import IgbenchError, PluginCrashed, PluginError, TrainingError, UsageError, check_at_least
from ..messages import say
from ..plugin_calls import DEBUG_ENV, debugging, is_third_party, named, one_line
from ..torch_utils import out_of_memory
from .allocator import keep_freed_memory
from .cache import cpu_state_dict, load_weights
from .memory_format import MEMORY_FORMATS, as_layout, layout_errors_explained, training_layout
from .monitor import DEFAULT_MONITOR_EPS, TrainingMonitor
from .model_checks import (build_model, check_output, eval_forward, loss_pair_problem, output_error,
                           output_problem, output_problem_of, probabilities_note)
from .snapshots import rng_state, set_rng_state


#: Training precisions: the paper's float32, or bfloat16 autocast (see :class:`TrainConfig`).
PRECISIONS = ("fp32", "bf16")


#: seeds are below this in size: torch takes 64-bit seeds, and a model's seed plus a small offset
#: (distillation's student) must stay one
SEED_LIMIT = 10**18


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and schedule shared by every defense (paper defaults: Adam 2e-4, eps 1e-4, batch 256).

    These are the library's defaults. The CLI's quick run without a grid file uses its own
    (``grid_config.DEFAULTS``: batch 64, lr 1e-3, one epoch), and every paper configuration sets them.

    ``steps`` (number of batches) wins over ``epochs`` when set; the paper trained 15,000 batches.
    ``precision``: ``fp32`` (the paper's), or ``bf16``: each training step's loss, its forward and backward
    passes (a defense's own input-gradient passes included) run under ``torch.autocast`` in bfloat16,
    which puts convolutions and matrix products in bfloat16 and keeps reductions, the loss and the weights
    in float32. Faster on CPUs with AMX or AVX512-BF16 and on recent GPUs; a model is then not the same
    model as its fp32 twin (its own checkpoint hash). Evaluation and attacks always run in float32.
    ``monitor_every``: every so many steps (0: never) measure the model on held-out images, clean and under
    FGSM at ``monitor_eps`` (:mod:`igbench.engine.monitor`); it does not change the model, so it is not hashed.
    ``memory_format``: ``contiguous`` (PyTorch's default) or ``channels_last``, the layout of the weights
    and batches while a model trains (:mod:`igbench.engine.memory_format`). Like the thread count it
    changes speed and float rounding only, so it is recorded with the device a model ran on, not hashed.
    """

    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 256
    lr: float = 2e-4
    adam_eps: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    memory_format: str = "contiguous"
    monitor_every: int = 0
    monitor_eps: float = DEFAULT_MONITOR_EPS

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise UsageError(f"--memory-format must be one of {', '.join(MEMORY_FORMATS)}, "
                             f"got {self.memory_format!r}")
        if not (self.epochs > 0 and math.isfinite(self.epochs)):  # checked with --steps too: the result records it
            raise UsageError(f"--epochs must be a finite number > 0, got {self.epochs}")
        if not abs(int(self.seed)) < SEED_LIMIT:  # torch takes 64-bit seeds
            raise UsageError(f"--seed must be a whole number with at most 18 digits, got {self.seed}")
        if self.steps is not None:
            check_at_least(self.steps, 1, "--steps")
        check_at_least(self.batch_size, 1, "--batch-size")
        if not (self.lr > 0 and math.isfinite(self.lr)):  # inf trained one step, then stopped on a nan loss
            raise UsageError(f"--lr must be a finite number > 0, got {self.lr}")
        if not (self.adam_eps > 0 and math.isfinite(self.adam_eps)):
            raise UsageError(f"Adam's eps (adam_eps) must be > 0, got {self.adam_eps}")
        if self.monitor_every < 0:
            raise UsageError(f"--monitor-every must be >= 0 steps (0: no monitoring), got {self.monitor_every}")
        if not (self.monitor_eps >= 0 and math.isfinite(self.monitor_eps)):
            raise UsageError(f"--monitor-eps must be a finite number >= 0, got {self.monitor_eps}")

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(self.epochs * n_train / self.batch_size))

    def describe(self) -> dict[str, Any]:
        """The fields that define a trained model (the device and memory format are recorded elsewhere,
        not hashed; monitoring changes nothing). The precision appears only when it is not fp32, so fp32
        models keep the hashes they had before it existed. With ``steps`` set, ``epochs`` does not change the model and reads as its
        default (``--steps 150 --epochs 3`` retrained the ``--steps 150`` model under another key; every
        recorded model with steps had the default epochs, so no key changes)."""
        d = asdict(self)
        for unhashed in ("device", "memory_format", "monitor_every", "monitor_eps"):
            d.pop(unhashed)
        if d["steps"] is not None:
            d["epochs"] = TrainConfig.epochs
        if d["precision"] == "fp32":
            d.pop("precision")
        return d

    def autocast(self, device):
        """The context a training step's loss runs in: bfloat16 autocast for ``bf16``, else nothing."""
        if self.precision == "fp32":
            return nullcontext()
        import torch

        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


LossFn = Callable[[Any, Any, Any], tuple[Any, Any]]


class Trainer:
    """Trains models of one architecture on one data set with one :class:`TrainConfig`."""

    def __init__(self, data, arch, arch_params: dict[str, Any], config: TrainConfig, label: str = "model",
                 progress: bool = True, snapshots=None, defense=None) -> None:
        """``snapshots`` (a :class:`~igbench.engine.snapshots.TrainingSnapshots`) makes every ``fit``
        resumable: an interrupted one continues from its last snapshot, a finished one is not repeated.
        ``defense``: the defense plugin being trained, named by the errors about what its loss returns
        (:meth:`LossDefense.train <igbench.plugin_types.LossDefense.train>` sets it when it is unset)."""
        self.data = data
        self.arch = arch
        self.arch_params = arch_params
        self.config = config
        self.label = label
        self.progress = progress
        self.defense = defense
        self.device = compute_device(config.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.train_x = data.train_x.to(self.device)
        self.train_y = data.train_y.to(self.device)
        self.steps_done = 0
        self.train_seconds = 0.0  # wall time of all fits, including earlier interrupted attempts
        self.snapshots = snapshots
        self._fits = 0
        #: Every distinct setup (device, torch thread count, memory format, CPU or GPU model) the fits ran
        #: on, in order of first use, including earlier interrupted attempts: on a CPU the thread count and
        #: the CPU model change float rounding, so a training resumed on another ends with other weights.
        self.ran_on: list[dict[str, Any]] = []
        #: held-out accuracy during training (``config.monitor_every``), or None
        self.monitor = (TrainingMonitor.for_data(data, config.monitor_every, config.monitor_eps, self.device)
                        if config.monitor_every else None)

    # ------------------------------------------------------------------ errors
    def _blame_architecture(self, model, x, exc: Exception) -> None:
        """Raise the architecture's error, from ``exc``, when its model's output is not logits, or when a
        third-party model cannot run on the batch at all (one forward pass answers both)."""
        out, failure = eval_forward(model, x)
        if failure is None:
            if problem := output_problem(out, int(x.shape[0]), self.data.num_classes):
                raise output_error(self.arch, problem) from exc
        elif is_third_party(self.arch) and not debugging():  # a model that cannot run at all: was a traceback
            raise PluginCrashed(f"{named(self.arch)} built a model that fails on a batch of shape {tuple(x.shape)}: "
                                f"{one_line(failure)} (check its layers against build's input_shape; run with "
                                f"{DEBUG_ENV}=1 for the traceback)", failure) from exc

    def _bad_loss(self, problem: str, out, model, x, desc: str) -> PluginError:
        """The one-line error for a loss function's wrong return value (``problem``: loss_pair_problem's)."""
        batch, classes = int(x.shape[0]), self.data.num_classes
        if problem == "logits":
            arch_problem = output_problem_of(model, x, classes)
            if arch_problem:
                return output_error(self.arch, arch_problem)
            problem = f"got logits of shape {tuple(out[1].shape)}"
        owner = named(self.defense) if self.defense is not None else desc
        return PluginError(f"{owner}: loss must return (scalar loss tensor, logits of shape (batch, num_classes) = "
                           f"({batch}, {classes})), {problem}")

    def _not_finite(self, loss, x, desc: str, step: int, total: int) -> str:
        """Why the loss is NaN or infinite, and what to change: the data set when the batch itself is not
        finite, else the learning rate and (when the defense has one) its penalty weight."""
        import torch

        where = f"{desc}: loss became {loss.item()} at step {step}/{total}"
        if not bool(torch.isfinite(x).all()):
            return (f"{where} because the training batch contains NaN or infinite values: {self._dataset_named()} "
                    "produced them; its load must return finite images in [clip_min, clip_max]")
        defense = self.defense
        if defense is None:
            return f"{where}; lower the learning rate (--lr) or the defense's strength"
        if defense.param("lambda") is not None:
            return f"{where}; lower the learning rate (--lr) or the penalty weight of {named(defense)} (--param lambda=...)"
        if defense.params:
            return (f"{where}; lower the learning rate (--lr) or change the parameters of {named(defense)} "
                    f"(`igbench plugins {defense.name}` lists them)")
        return f"{where}; lower the learning rate (--lr)"

    def _dataset_named(self) -> str:
        from ..registry import get_registry

        try:
            return named(get_registry().get("dataset", self.data.name))
        except IgbenchError:
            return f"the data set '{self.data.name}'"

    def _setup(self) -> dict[str, Any]:
        setup: dict[str, Any] = {"device": str(self.device), "torch_threads": torch_threads()}
        if self.config.memory_format != "contiguous":  # absent = contiguous, as before the option existed
            setup["memory_format"] = self.config.memory_format
        # The processor model too: another instruction set picks other kernels, so other rounding (the
        # short notMNIST grid retrained on an AMD EPYC gave other weights than on the Intel Xeon before it).
        kind = {"cpu": "cpu", "cuda": "gpu"}.get(self.device.type)
        processor = cpu_model() if kind == "cpu" else gpu_name(str(self.device)) if kind == "gpu" else None
        if processor:
            setup[kind] = processor
        return setup

    def _ran_on(self, earlier: list[dict[str, Any]] | None = None) -> None:
        for setup in [*(earlier or []), self._setup()]:
            if setup not in self.ran_on:
                self.ran_on.append(dict(setup))

    # ------------------------------------------------------------------ models
    def new_model(self, offset: int = 0):
        """A freshly initialised model, seeded by the config seed (+ ``offset`` for a second model)."""
        import torch

        torch.manual_seed(self.config.seed + offset)
        model = build_model(self.arch, tuple(self.data.input_shape), self.data.num_classes, self.arch_params)
        return model.to(self.device)

    # ------------------------------------------------------------------ resuming
    def _restore_finished(self, model, done: dict[str, Any], path, fit_index: int, label: str):
        """``model`` as a finished fit's snapshot (at ``path``) left it, counted as trained (steps, seconds)."""
        self._ran_on(done.get("ran_on"))
        if self.monitor is not None:
            self.monitor.start(fit_index, label, done.get("monitor"))
        load_weights(model, done["model"], f"training snapshot {path}")
        set_rng_state(done["rng"], self.device)
        self.steps_done += int(done["steps"])
        self.train_seconds += float(done["seconds"])
        return model.eval()

    def _restore_partial(self, model, opt, gen, partial: dict[str, Any], desc: str, total: int, path,
                         fit_index: int) -> tuple:
        """Weights, optimizer, batch order and random state of an interrupted fit's snapshot; returns
        ``(order, position in it, first step to take, seconds already spent)`` and says where it resumes."""
        load_weights(model, partial["model"], f"training snapshot {path}")
        opt.load_state_dict(partial["optimizer"])
        gen.set_state(partial["generator"])
        set_rng_state(partial["rng"], self.device)
        first = int(partial["step"]) + 1
        say(f"{desc}: resuming training at step {first}/{total} from {path}")
        last = partial.get("setup")
        if last is not None and not _same_setup(last, self._setup()):
            say(f"{desc}: the snapshot was trained on {describe_setup(last)} and continues on "
                f"{describe_setup(self._setup())}; "
                "float sums are ordered differently, so the weights will differ slightly from an "
                "uninterrupted training's (the result file lists both)")
        self._ran_on(partial.get("ran_on"))
        if self.monitor is not None:
            self.monitor.start(fit_index, desc, partial.get("monitor"))
        return partial["order"], int(partial["pos"]), first, float(partial["seconds"])

    def _monitored(self, fit_index: int) -> dict[str, Any]:
        """A snapshot's ``monitor`` entry: the curve of fit ``fit_index`` so far (nothing without monitoring)."""
        return {"monitor": self.monitor.points(fit_index)} if self.monitor is not None else {}

    # ------------------------------------------------------------------ loop
    def fit(self, model, loss_fn: LossFn, desc: str | None = None, targets=None, steps: int | None = None):
        """Train ``model`` with Adam on ``loss_fn(model, x_batch, y_batch) -> (loss, logits)``.

        ``targets`` (a tensor aligned with the training images, e.g. soft labels) replaces the labels
        passed to ``loss_fn``; the progress bar always reports accuracy against the true labels.
        Raises :class:`TrainingError` naming the run and step when the loss is not finite, and
        :class:`PluginError` when ``loss_fn`` returns anything but a scalar loss attached to the graph and
        ``(batch, num_classes)`` logits (naming the architecture when its model's output is the problem).
        With ``snapshots`` the fit resumes from its last snapshot, or returns at once when it had finished.
        """
        import torch

        from ..progress import progress
        from .interrupts import deferred_stop

        cfg = self.config
        desc = desc or self.label
        n = self.train_x.shape[0]
        total = steps if steps is not None else cfg.total_steps(n)
        fit_index, self._fits = self._fits, self._fits + 1
        started = time.perf_counter()
        snaps = self.snapshots
        done = snaps.load(fit_index, "done") if snaps else None
        if done is not None:  # finished before an interruption of a later fit
            return self._restore_finished(model, done, snaps.path(fit_index, "done"), fit_index, desc)
        if targets is not None:
            targets = targets.to(self.device)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        model.train()
        order = torch.randperm(n, generator=gen)
        pos, first, seconds_before = 0, 1, 0.0
        partial = snaps.load(fit_index, "partial") if snaps else None
        if partial is not None:
            order, pos, first, seconds_before = self._restore_partial(model, opt, gen, partial, desc, total,
                                                                      snaps.path(fit_index, "partial"), fit_index)
        self._ran_on()
        monitor = self.monitor
        if monitor is not None and fit_index not in monitor.curves:
            monitor.start(fit_index, desc)
        bar = progress(total, f"train {desc}", unit="step", initial=first - 1, enabled=self.progress)
        # The bar's running loss and hits stay on the device and are read every 10 steps: one host sync a
        # step (the finiteness check) instead of three, which a small model on a GPU notices.
        loss_sum = correct = torch.zeros((), device=self.device)
        seen = batches = 0
        shown: dict[str, str] = {}  # the bar's postfix: running loss and accuracy, the last monitored accuracies
        monitored_before = monitor.seconds if monitor is not None else 0.0

        def trained_for() -> float:
            """Seconds of training in this fit, earlier attempts included; the monitor's measuring left out."""
            measuring = monitor.seconds - monitored_before if monitor is not None else 0.0
            return seconds_before + time.perf_counter() - started - measuring

        def save_partial(step) -> bool:
            return snaps.save(fit_index, "partial", {
                "step": step, "total": total, "label": desc,
                "model": cpu_state_dict(model), "optimizer": opt.state_dict(),
                "generator": gen.get_state(), "order": order, "pos": pos, "rng": rng_state(self.device),
                "seconds": trained_for(), "ran_on": self.ran_on,
                "setup": self._setup(), **self._monitored(fit_index)})

        step, measuring = first, False
        try:
            with deferred_stop() if snaps is not None else nullcontext(None) as stop, \
                    training_layout(model, cfg.memory_format), layout_errors_explained(desc, cfg.memory_format):
                for step in range(first, total + 1):
                    if pos + cfg.batch_size > n and pos > 0:
                        order, pos = torch.randperm(n, generator=gen), 0
                    idx = order[pos:pos + cfg.batch_size].to(self.device)
                    pos += cfg.batch_size
                    x, y = as_layout(self.train_x[idx], cfg.memory_format), self.train_y[idx]
                    with cfg.autocast(self.device):
                        try:
                            out = loss_fn(model, x, targets[idx] if targets is not None else y)
                        except Exception as exc:
                            if step == first and out_of_memory(exc) is None:  # output that cannot be logits
                                self._blame_architecture(model, x, exc)       # fails inside the loss
                            raise
                    problem = loss_pair_problem(out, x.shape[0], self.data.num_classes)
                    if problem:
                        raise self._bad_loss(problem, out, model, x, desc)
                    loss, logits = out
                    if not torch.isfinite(loss):
                        raise TrainingError(self._not_finite(loss, x, desc, step, total))
                    opt.zero_grad(set_to_none=True)
                    backward_to_weights(loss, model)
                    opt.step()
                    loss_sum = loss_sum + loss.detach().float()
                    correct = correct + (logits.detach().argmax(1) == y).sum()
                    seen += y.shape[0]
                    batches += 1
                    if step % 10 == 0 or step == total:
                        shown.update(loss=f"{float(loss_sum) / batches:.4f}", acc=f"{int(correct) / max(seen, 1):.3f}")
                        loss_sum, correct, seen, batches = loss_sum.new_zeros(()), correct.new_zeros(()), 0, 0
                        bar.set_postfix(refresh=False, **shown)
                    if monitor is not None and monitor.due(step, total):
                        measuring = True
                        clean, adv = monitor.measure(model)
                        measuring = False
                        monitor.record(fit_index, step, clean, adv)
                        shown.update({"held-out": f"{clean:.3f}", f"fgsm{monitor.eps:g}": f"{adv:.3f}"})
                        bar.set_postfix(refresh=False, **shown)
                        same = desc == self.label or desc.startswith(self.label + " ")  # "distillation teacher"
                        who = desc if same else f"{self.label} ({desc})"  # the model id, which may be dist
                        _log_line(bar, monitor.line(who, step, total, clean, adv))
                    bar.update(1)
                    if snaps is not None and step < total and (stop or snaps.due()):
                        saved = save_partial(step)
                        if stop:
                            where = (f"snapshot saved to {snaps.path(fit_index, 'partial')}" if saved else
                                     "its snapshot could not be written (above): a re-run resumes from the last "
                                     "snapshot written, or from step 1")
                            try:
                                say(f"\n{desc}: stopped after step {step}/{total}; {where}")
                            except OSError:  # a hangup closed the terminal: the snapshot is what matters
                                pass
                            raise KeyboardInterrupt
        except Exception as exc:
            if (what := out_of_memory(exc)) is None or debugging():
                raise
            doing = (f"measuring it for --monitor-every; free some {what} or monitor less often" if measuring else
                     f"training on batches of {min(cfg.batch_size, n)} images; lower --batch-size (the paper used 256)")
            raise TrainingError(f"{desc}: ran out of {what} at step {step}/{total}, {doing}") from None
        finally:
            bar.close()
        seconds = trained_for()
        if snaps is not None:
            snaps.save(fit_index, "done", {"model": cpu_state_dict(model), "rng": rng_state(self.device),
                                           "steps": total, "seconds": seconds, "ran_on": self.ran_on,
                                           **self._monitored(fit_index)})
            if stop:  # asked to stop during the last step: the finished fit is saved
                raise KeyboardInterrupt
        self.train_seconds += seconds
        self.steps_done += total
        model.eval()
        return model


def _log_line(bar, line: str) -> None:
    """``line`` above a live tqdm bar (so the bar is redrawn below it), else :func:`~igbench.messages.say`."""
    if getattr(bar, "disable", True) is False and hasattr(bar, "write"):
        bar.write(line, file=sys.stderr)
    else:
        say(line)


def describe_setup(setup: dict[str, Any]) -> str:
    """One training setup (a ``ran_on`` entry) in words: "cpu with 2 torch thread(s), AMD EPYC"."""
    threads = f" with {setup['torch_threads']} torch thread(s)" if setup.get("torch_threads") else ""
    layout = f", {setup['memory_format']}" if "memory_format" in setup else ""
    processor = "".join(f", {setup[k]}" for k in ("cpu", "gpu") if setup.get(k))
    return f"{setup['device']}{threads}{layout}{processor}"


def _same_setup(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two training setups round alike; a snapshot from before igbench recorded the processor
    model is compared without it."""
    unknown = {k for k in ("cpu", "gpu") if (k in a) != (k in b)}
    return {k: v for k, v in a.items() if k not in unknown} == {k: v for k, v in b.items() if k not in unknown}


def backward_to_weights(loss, model) -> None:
    """``loss.backward()`` into the model's trainable parameters only.

    A defense's loss may also depend on tensors that require grad for its own sake (the input batch of
    double backprop); their gradients are not needed for the step, so autograd skips computing them.
    """
    loss.backward(inputs=[p for p in model.parameters() if p.requires_grad])


def predict_logits(model, x, batch_size: int = 1024):
    """Logits of ``model`` in eval mode on ``x``, batched, without gradients; the model's train/eval flags
    are restored afterwards."""
    import torch

    from ..torch_utils import eval_mode, model_device

    device = model_device(model)
    out = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i:i + batch_size].to(device)))
    return torch.cat(out) if out else torch.empty(0)


#: notes :func:`accuracy` has printed in this process (one per architecture, not one per model)
_SAID: set[str] = set()


def accuracy(model, x, y, batch_size: int = 1024, arch=None, num_classes: int | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``. With ``arch`` and ``num_classes``, logits that are not
    ``(len(x), num_classes)`` are a :class:`PluginError` naming the architecture."""
    if x.shape[0] == 0:
        return float("nan")
    logits = predict_logits(model, x, batch_size)
    if arch is not None and num_classes is not None:
        check_output(arch, logits, int(x.shape[0]), num_classes)
        if (note := probabilities_note(arch, logits)) and note not in _SAID:  # once per architecture
            _SAID.add(note)
            say(note)
    pred = logits.argmax(1).cpu()
    return float((pred == y.cpu()).float().mean())
