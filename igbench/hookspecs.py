"""The ``igbench_*`` hooks that plugins implement.

Every hook receives a ``register`` callback. A plugin calls it once per object it provides; what a
hook returns is not read (one that returns objects and registers none is reported, as is a
``wrapper`` hook)::

    from igbench import hookimpl
    from igbench.plugin_types import DefensePlugin

    class MyDefense(DefensePlugin):
        name = "my-defense"
        summary = "One line that `igbench plugins` shows."
        ...

    @hookimpl
    def igbench_defenses(register):
        register(MyDefense())

Register cheap objects: plugin classes must not import torch at module level (``igbench --help``
and ``igbench plugins`` stay fast); import it inside the methods that do the work.

The registry calls these hooks when it is first asked for a plugin, and again after a plugin is
registered or unregistered; a hook should register the same objects every time. It checks each
object's type, and a name registered twice keeps the first provider (built-ins come first, then
packages in load order; ``tryfirst``/``trylast`` do not change it) with a warning naming both;
``IGBENCH_STRICT_PLUGINS=1`` makes every such problem an error.
Built-in plugins (``igbench.datasets``, ``igbench.architectures``, ``igbench.defenses``,
``igbench.attacks``) use exactly these hooks; third-party packages are found through the
``igbench`` entry-point group.
"""

import pluggy

hookspec = pluggy.HookspecMarker("igbench")


@hookspec
def igbench_datasets(register):
    """Register :class:`igbench.plugin_types.DatasetPlugin` objects.

    ``register(plugin)`` adds one data set; its ``load`` returns an :class:`igbench.data.DataSplits`
    with float32 tensors, NCHW, inside its ``[clip_min, clip_max]`` (``[0, 1]`` for every built-in).
    """


@hookspec
def igbench_architectures(register):
    """Register :class:`igbench.plugin_types.ArchitecturePlugin` objects.

    ``build(input_shape, num_classes, params)`` returns a fresh ``torch.nn.Module`` producing logits.
    """


@hookspec
def igbench_defenses(register):
    """Register :class:`igbench.plugin_types.DefensePlugin` objects.

    ``train(trainer, params)`` returns a trained model; most defenses subclass
    :class:`igbench.plugin_types.LossDefense` and only define the per-batch loss.
    """


@hookspec
def igbench_attacks(register):
    """Register :class:`igbench.plugin_types.AttackPlugin` objects, or attack providers.

    ``perturb(model, x, y, params, ctx)`` returns adversarial inputs inside ``[ctx.clip_min,
    ctx.clip_max]``. ``model`` is the trained model's frozen inference copy (eval mode, BatchNorm
    folded, weights without gradients): the same function, faster; gradients flow to ``x`` only. An
    :class:`igbench.plugin_types.AttackProvider` serves a whole namespace of names such as
    ``art:<ClassName>``.
    """
