"""Built-in datasets plugins, registered through the same hook as any third-party plugin.

Modules here import numpy, torch, PIL and scipy only inside ``load``; importing this package is cheap.
"""

from .. import hookimpl
from .fashion_mnist import FashionMnistDataset
from .mnist import MnistDataset
from .mnist_sample import MnistSampleDataset
from .notmnist import NotMnistDataset
from .svhn import SvhnDataset

BUILTIN_DATASETS = (MnistDataset, MnistSampleDataset, FashionMnistDataset, NotMnistDataset, SvhnDataset)


@hookimpl
def igbench_datasets(register):
    """Register the built-in datasets."""
    for cls in BUILTIN_DATASETS:
        register(cls())
