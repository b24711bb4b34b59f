"""Built-in defenses plugins, registered through the same hook as any third-party plugin."""

from .. import hookimpl


@hookimpl
def igbench_defenses(register):
    """Register the built-in defenses."""
