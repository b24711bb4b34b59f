"""Full MNIST (60,000 / 10,000) from the four IDX files, md5-verified."""

from __future__ import annotations

from .idx_dataset import STEMS, IdxDataset, validation_param

MNIST_MD5 = dict(zip(STEMS, (
    "6bbc9ace898e44ae57da46a324031adb",
    "a25bea736e30d166cdddb491f175f624",
    "2646ac647ad5339dbf082846283269ea",
    "27ae3e4e09519cfbb04c329615203637",
)))


class MnistDataset(IdxDataset):
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey, pixels in [0, 1].

    The study's main data set: it trained on 55,000 images and tested on all 10,000. ``validation=5000``
    holds out the *last* 5,000 training images; the study's loader (TensorFlow's ``read_data_sets``) held
    out the *first* 5,000, so the two 55,000-image training sets share 50,000 images (REPLICATION.md). Read from the four IDX files (gzipped or not) in the data dir
    and checked against their md5s; downloaded with torchvision into the data dir (or the cache) when no
    searched folder holds them. `--dataset mnist`, the default, falls back to the bundled
    `mnist-sample` when MNIST is neither found nor downloadable and no data dir was named.
    """

    name = "mnist"
    summary = "MNIST digits, 60,000 train / 10,000 test, 28x28 grey (IDX files, md5-verified)"
    params = (validation_param(60000),)
    title = "MNIST"
    folders = ("mnist", "mnist/MNIST/raw", "MNIST/raw", ".")
    md5 = MNIST_MD5
    class_names = tuple(str(d) for d in range(10))
    torchvision_class = "MNIST"
    download_hint = "https://ossci-datasets.s3.amazonaws.com/mnist/ (or torchvision.datasets.MNIST(root, download=True))"
    base_notes = "The paper trained on 55,000 images (validation=5000) and tested on all 10,000."
