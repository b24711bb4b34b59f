"""Built-in architecture plugins, registered through the same hook as any third-party plugin."""

from .. import hookimpl


@hookimpl
def igbench_architectures(register):
    """Register the built-in architectures."""
    from .cnn import CleverhansCNN, PaperCNN, PaperCNNSoftplus
    from .mlp import MLP

    for plugin in (PaperCNN(), PaperCNNSoftplus(), CleverhansCNN(), MLP()):
        register(plugin)
