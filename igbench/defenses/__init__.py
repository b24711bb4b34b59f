"""Built-in defenses plugins, registered through the same hook as any third-party plugin."""

from .. import hookimpl


@hookimpl
def igbench_defenses(register):
    """Register the built-in defenses."""
    from .advtrain import AdvTrain, AdvTrainGradReg
    from .distillation import Distillation
    from .gradreg import CertaintyInsensitivity, GradReg, GradRegFD
    from .plain import NoDefense

    for plugin in (NoDefense(), GradReg(), GradRegFD(), CertaintyInsensitivity(), Distillation(), AdvTrain(),
                   AdvTrainGradReg()):
        register(plugin)
