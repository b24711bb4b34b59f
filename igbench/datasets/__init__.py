"""Built-in datasets plugins, registered through the same hook as any third-party plugin."""

from .. import hookimpl


@hookimpl
def igbench_datasets(register):
    """Register the built-in datasets."""
