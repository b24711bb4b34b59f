"""Fashion-MNIST (60,000 / 10,000) from the four IDX files, md5-verified."""

from __future__ import annotations

from .idx_dataset import STEMS, IdxDataset, validation_param

# md5 of the uncompressed files: the same content as Zalando's published .gz files (whose own md5s,
# 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd..., change whenever a file is recompressed, as
# Debian's package does).
FASHION_MD5 = dict(zip(STEMS, (
    "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "9018921c3c673c538a1fc5bad174d6f9",
    "8181f5470baa50b63fa0f6fddb340f0a",
    "15d484375f8d13e6eb1aabb0c3f46965",
)))

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class FashionMnistDataset(IdxDataset):
    """Zalando's Fashion-MNIST: ten kinds of clothing, 60,000 training and 10,000 test images, 28x28 grey.

    Not in the study: a drop-in replacement for MNIST (same size, layout and number of classes) that
    is harder to classify; configs/paper-fashion-mnist.toml runs the MNIST grid on it unchanged.
    ``validation`` holds out the last N training images. Read from the four IDX files in the data dir
    or Debian's dataset-fashion-mnist package, md5-checked, downloaded with torchvision otherwise.
    """

    name = "fashion-mnist"
    summary = "Fashion-MNIST clothing images, 60,000 train / 10,000 test, 28x28 grey (IDX, md5-verified)"
    params = (validation_param(60000),)
    title = "Fashion-MNIST"
    folders = ("fashion-mnist", "fashion-mnist/FashionMNIST/raw", "FashionMNIST/raw", ".")
    extra_dirs = ("/usr/share/datasets/fashion-mnist",)
    md5 = FASHION_MD5
    class_names = FASHION_CLASSES
    torchvision_class = "FashionMNIST"
    download_hint = ("https://github.com/zalandoresearch/fashion-mnist (or torchvision.datasets.FashionMNIST(root, "
                     "download=True), or apt install dataset-fashion-mnist)")
    base_notes = "Not used in the paper; a drop-in 28x28 grey 10-class alternative to MNIST."
