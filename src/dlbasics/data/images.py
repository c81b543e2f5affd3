"""torchvision's image datasets, MNIST, Fashion-MNIST and CIFAR-10, held in memory.

torchvision's own dataset classes read them: downloaded once into ``data.root`` (checked
where torchvision checks, CIFAR-10 by MD5) and read from there offline afterwards. The
images become ``C x H x W`` arrays of uint8 pixels, held in memory as the other datamodules'
rows are, so the fast batch path serves them; each batch becomes float pixels in ``[0, 1]``,
standardised per channel by the training images' mean and standard deviation
(``data.standardize``, on by default) where it is served (:mod:`dlbasics.data.pixels`).
The official split is kept: its test images are the test split, and the validation split
is drawn from its training images (stratified by class, ``data.val_fraction``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.data.arrays import Split, split_rows
from dlbasics.data.base import InMemoryDataModule
from dlbasics.errors import DataError

# data.dataset -> torchvision's class
DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


class ImagesWithTestSplit(InMemoryDataModule):
    """Images whose test split is given (the last ``_test_rows`` of :meth:`load_arrays`):
    the validation split is drawn from the others, stratified by class. Without a given
    test split (``_test_rows == 0``) the rows are split as the base splits them."""

    _test_rows = 0

    def __init__(self, **options: Any) -> None:
        # A convolution's activations for 4,096 MNIST images (the base's evaluation batch)
        # take about 1 GB; for 512, an eighth of it, at the same speed on a CPU.
        options.setdefault("eval_batch_size", 512)
        super().__init__(**options)

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> Split:
        if not self._test_rows:
            return super()._split_rows(x, y)
        rows = len(x) - self._test_rows
        parts = split_rows(
            x[:rows], y[:rows], self.val_fraction, 0.0, stratify=self.stratify,
            seed=self.split_seed,
        )  # fmt: skip
        parts["test"] = (x[rows:].copy(), y[rows:].copy())  # not a view keeping all of x
        return parts


class TorchvisionImages(ImagesWithTestSplit):
    """One of torchvision's image classification sets (:data:`DATASETS`).

    Args:
        dataset: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        root: the folder torchvision keeps it in (``<root>/MNIST/raw/...``,
            ``<root>/cifar-10-batches-py/...``).
        download: fetch it into ``root`` when it is not there yet.
        **split_options: the base's (``batch_size``, ``val_fraction``, ...);
            ``test_fraction`` has no effect: the official test images are the test split.
    """

    def __init__(self, dataset: str, root: str, download: bool = True, **split_options: Any):
        if dataset not in DATASETS:
            raise ValueError(f"dataset={dataset!r}: one of {', '.join(DATASETS)}")
        super().__init__(task="classification", **split_options)
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        train, test = self._read(train=True), self._read(train=False)
        self.label_names = {str(index): str(name) for index, name in enumerate(train.classes)}
        self._test_rows = len(test)
        x = np.concatenate([_pixels(train), _pixels(test)])
        y = np.concatenate([np.asarray(train.targets), np.asarray(test.targets)])
        return x, y

    def _read(self, train: bool):
        """torchvision's dataset from ``root``; downloaded first if it is not there."""
        from torchvision import datasets

        kind = getattr(datasets, DATASETS[self.dataset])
        try:
            return kind(str(self.root), train=train, download=False)
        except RuntimeError as missing:  # "Dataset not found" (or, CIFAR-10, corrupted)
            if not self.download:
                raise DataError(self._not_there(kind, str(missing))) from None
        try:
            return kind(str(self.root), train=train, download=True)
        except Exception as error:  # no network, a proxy, a refused or truncated file
            reason = " ".join(str(error).split()) or type(error).__name__
            raise DataError(self._not_there(kind, f"downloading failed: {reason}")) from None

    def _not_there(self, kind, why: str) -> str:
        """One line: where the files go, their names and where they come from."""
        root = self.root.resolve()  # the folder a learner can open, whatever the cwd
        if hasattr(kind, "resources"):  # MNIST, Fashion-MNIST: four IDX files
            folder = root / kind.__name__ / "raw"
            names = ", ".join(name for name, _ in kind.resources)
            source = kind.mirrors[0]
        else:  # CIFAR-10: one archive, unpacked into root
            folder = root
            names = kind.filename
            source = kind.url.rsplit("/", 1)[0] + "/"
        return (
            f"data={self.dataset}: {kind.__name__} is not in {folder} ({why}); put {names} "
            f"there (from {source}), or point data.root at a folder that has them"
        )


def _pixels(dataset) -> np.ndarray:
    """A torchvision dataset's images as uint8 ``N x C x H x W``."""
    images = np.asarray(dataset.data)
    if images.ndim == 3:  # MNIST, Fashion-MNIST: N x H x W, one channel
        images = images[:, None]
    else:  # CIFAR-10: N x H x W x C
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images, dtype=np.uint8)


# A set estimated above this share of the memory still available is refused before loading.
MEMORY_SHARE = 0.5


class FolderImages(ImagesWithTestSplit):
    """The user's own images in torchvision's ImageFolder layout: one subfolder per class
    (``path/cat/1.png``, ``path/dog/2.jpg``), or ``path/train/<class>/...`` and
    ``path/test/<class>/...``, whose test images are then the test split.

    Every image is read once (PNG, JPEG, BMP, ... as torchvision's ``ImageFolder`` finds
    them), converted to ``channels`` (1: grey, 3: RGB; default: RGB unless every image is
    grey) and resized to ``image_size`` (``[H, W]``; default: the images' own size, which
    must then be the same for all), and held in memory as uint8 pixels, as torchvision's
    sets are. A set that would take more than half the memory still available is refused
    with its size.
    """

    def __init__(
        self,
        path: str,
        image_size: list[int] | None = None,
        channels: int | None = None,
        **split_options: Any,
    ) -> None:
        super().__init__(task="classification", **split_options)
        self.path = Path(path).expanduser()
        self.image_size = None if image_size is None else [int(v) for v in image_size]
        if channels not in (None, 1, 3):
            raise ValueError(f"channels={channels}: 1 (grey) or 3 (RGB)")
        self.channels = channels
        self.files: list[str] = []  # every image, in the order load_arrays read them
        self.split_positions: dict[str, np.ndarray] = {}  # each split's rows of ``files``

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.path.is_dir():
            raise DataError(f"data.path={self.path}: no such folder of images")
        train_dir, test_dir = self.path / "train", self.path / "test"
        if train_dir.is_dir() and test_dir.is_dir():  # the user's own split
            (train, classes), (test, test_classes) = self._find(train_dir), self._find(test_dir)
            if test_classes != classes:
                raise DataError(
                    f"data.path={test_dir}: its class folders {test_classes} are not train/'s "
                    f"{classes}; give test/ the same subfolders"
                )
        else:
            (train, classes), test = self._find(self.path), []
        files = [*train, *test]
        self._check_memory(files)
        self.files = [path for path, _ in files]
        images = self._load(self.files)
        self.label_names = {str(index): name for index, name in enumerate(classes)}
        self._test_rows = len(test)
        return images, np.array([label for _, label in files])

    def split_files(self, name: str) -> list[str]:
        """The files of split ``name``, in its order, relative to ``data.path``."""
        if not self.splits:
            self.setup()
        return [
            str(Path(self.files[row]).relative_to(self.path)) for row in self.split_positions[name]
        ]

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> Split:
        """The base's split, drawn on row positions first, so that each split knows its
        files (interpret names the images it shows by them)."""
        positions = super()._split_rows(np.arange(len(x))[:, None], y)
        self.split_positions = {name: part[0][:, 0] for name, part in positions.items()}
        return {name: (x[rows], y[rows]) for name, rows in self.split_positions.items()}

    def _find(self, folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
        """``(file, class index)`` of every image under ``folder``, and the class names."""
        from torchvision.datasets import ImageFolder

        try:
            found = ImageFolder(str(folder), loader=str)  # file names only: read below
        except (FileNotFoundError, OSError) as error:  # no class folders, an empty one
            raise DataError(f"data.path={folder}: {' '.join(str(error).split())}") from None
        if len(found.classes) < 2:
            raise DataError(
                f"data.path={folder}: one class folder ({found.classes[0]}); a classifier "
                "needs two or more, one subfolder per class"
            )
        return found.samples, found.classes

    def _size_and_mode(self, files: list[str]) -> tuple[tuple[int, int], str]:
        """The images' ``(H, W)`` and PIL mode: the settings', or what the files hold."""
        size, _ = _header(files[0])
        if self.channels is not None:
            return tuple(self.image_size or size), "L" if self.channels == 1 else "RGB"
        grey = all(_header(file)[1] in ("1", "L", "I", "I;16", "F") for file in files)
        return tuple(self.image_size or size), "L" if grey else "RGB"

    def _check_memory(self, files: list) -> None:
        """Refuse a set that would not fit, from its count and the first image's size."""
        (height, width), _ = self._size_and_mode([files[0][0]])
        channels = self.channels or 3  # grey or colour shows only in every header: assume colour
        need = len(files) * height * width * channels  # uint8 pixels
        available = _available_memory()
        if available and need > MEMORY_SHARE * available:
            raise DataError(
                f"data.path={self.path}: {len(files)} images of {channels} x {height} x {width} "
                f"take {_amount(need)} in memory, more than half of the {_amount(available)} "
                "available; use a smaller data.image_size (e.g. [64, 64]) or fewer images"
            )

    def _load(self, files: list[str]) -> np.ndarray:
        (height, width), mode = self._size_and_mode(files)
        images = np.empty((len(files), 1 if mode == "L" else 3, height, width), np.uint8)
        for index, file in enumerate(files):
            resize = self.image_size is not None
            images[index] = read_pixels(file, mode, (height, width), resize, key="data.path")
        return images


def read_image(
    file: str | Path, mode: str, size: tuple[int, int], resize: bool = True, key: str = "input"
) -> np.ndarray:
    """One image file as float32 ``C x H x W`` pixels in ``[0, 1]`` (see :func:`read_pixels`)."""
    return read_pixels(file, mode, size, resize, key).astype(np.float32) / 255.0


def read_pixels(
    file: str | Path, mode: str, size: tuple[int, int], resize: bool = True, key: str = "input"
) -> np.ndarray:
    """One image file as uint8 ``C x H x W`` pixels: converted to ``mode`` (``L`` grey,
    ``RGB``) and, with ``resize``, to ``size`` (``(H, W)``); a DataError naming the file (and
    ``key``, the setting that named it) if it cannot be read or is of another size."""
    from PIL import Image

    height, width = size
    with _opened(file, key) as opened:
        image = opened.convert(mode)
    if (image.height, image.width) != (height, width):
        if not resize:
            raise DataError(
                f"{key}: {file} is {image.height} x {image.width}, the first image "
                f"{height} x {width}; give them one size with data.image_size=[{height},{width}]"
            )
        image = image.resize((width, height), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _amount(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _header(file: str) -> tuple[tuple[int, int], str]:
    """An image file's ``(H, W)`` and PIL mode, read from its header."""
    with _opened(file, "data.path") as image:
        return (image.height, image.width), image.mode


@contextlib.contextmanager
def _opened(file: str | Path, key: str):
    """The image file opened by PIL, or a DataError naming it (and ``key``, the setting
    that named it) if it is not an image that can be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            yield image
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"{key}: {file} is not an image that can be read ({error}); remove it or replace it"
        ) from None


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
