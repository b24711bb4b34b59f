"""Built-in attacks plugins, registered through the same hook as any third-party plugin."""

from .. import hookimpl


@hookimpl
def igbench_attacks(register):
    """Register the built-in attacks."""
