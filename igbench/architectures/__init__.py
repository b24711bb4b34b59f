"""Built-in architectures plugins, registered through the same hook as any third-party plugin."""

from .. import hookimpl


@hookimpl
def igbench_architectures(register):
    """Register the built-in architectures."""
