"""data=mnist, fashion_mnist, cifar10: torchvision's own classes read files written here in
each dataset's real on-disk format (nothing can be downloaded), and the CNN trains on them."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import struct

import numpy as np
import pytest

import dlbasics
from conftest import fit_error

TRAIN, TEST = 120, 40


def pattern_images(count: int, size: int, channels: int, seed: int):
    """Images whose class is easy to see: class c lights up column block c."""
    generator = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = generator.integers(0, 40, size=(count, size, size, channels), dtype=np.uint8)
    width = max(1, size // 10)
    for index, label in enumerate(labels):
        images[index, :, label * width : (label + 1) * width, :] = 255
    return images, labels


def write_idx(folder, stem: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's IDX files: big-endian magic, sizes, then the bytes."""
    count, rows, cols = images.shape
    (folder / f"{stem}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, count, rows, cols) + images.tobytes()
    )
    (folder / f"{stem}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, count) + labels.astype(np.uint8).tobytes()
    )


def write_mnist(root, name: str = "MNIST") -> None:
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    for stem, count, seed in (("train", TRAIN, 0), ("t10k", TEST, 1)):
        images, labels = pattern_images(count, 28, 1, seed)
        write_idx(raw, stem, images[..., 0], labels)


def write_cifar10(root, monkeypatch) -> None:
    """CIFAR-10's pickled batches; torchvision checks each file's MD5, so the class is told
    these files' own sums (its code path is otherwise the real one)."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = pattern_images(TRAIN + TEST, 32, 3, 2)
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # rows of R, G, B planes
    names = [f"data_batch_{i}" for i in range(1, 6)]
    chunks = np.array_split(np.arange(TRAIN), 5)
    batches = {n: (flat[c], labels[c]) for n, c in zip(names, chunks, strict=True)}
    batches["test_batch"] = (flat[TRAIN:], labels[TRAIN:])
    for name, (data, targets) in batches.items():
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": targets.tolist()}, handle)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]  # fmt: skip
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": classes}, handle)

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(n)] for n in names])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})


CNN = ("model=cnn", "model.channels=[8]", "model.hidden=16", "optimizer.lr=0.01",
       "data.batch_size=16", "trainer.max_epochs=4", "figures=none")  # fmt: skip


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_files_are_read_by_torchvision_and_learned(fit, tmp_path, dataset, folder):
    write_mnist(tmp_path / "data", folder)
    run = fit(f"data={dataset}", *CNN)
    described = run.config  # the official test images are the test split
    assert described.data.dataset == dataset
    rows = json.loads((run.dir / "data.json").read_text())
    assert rows["input_shape"] == [1, 28, 28] and rows["num_outputs"] == 10
    assert rows["rows"] == {"train": TRAIN - 12, "val": 12, "test": TEST}
    if dataset == "fashion_mnist":
        assert rows["class_names"][0] == "T-shirt/top"
    assert run.metrics["test/acc"] > 0.8, run.metrics


def test_cifar10_batches_are_read_by_torchvision_and_learned(fit, tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", monkeypatch)
    run = fit("data=cifar10", *CNN[:-1])  # with its figures
    assert {"confusion_matrix", "misclassified"} <= set(run.figures)
    rows = json.loads((run.dir / "data.json").read_text())
    assert rows["input_shape"] == [3, 32, 32] and rows["class_names"][1] == "automobile"
    assert rows["rows"]["test"] == TEST
    assert run.metrics["test/acc"] > 0.8, run.metrics
    # a run of these data is used as any other, from any folder: its test split again
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert dlbasics.load(run.dir).evaluate()["test/acc"] == pytest.approx(run.metrics["test/acc"])


def test_images_stay_uint8_and_each_batch_is_standardised_by_the_training_images(
    tmp_path, monkeypatch
):
    """A quarter of float32's memory: the splits hold the bytes as read; each batch the
    model sees is standardised per channel by the training split's mean and std."""
    import torch

    from dlbasics.data import TorchvisionImages

    write_cifar10(tmp_path, monkeypatch)
    data = TorchvisionImages("cifar10", str(tmp_path), download=False, val_fraction=0.2,
                             batch_size=16)  # fmt: skip
    data.setup("fit")
    stored, _ = data.splits["train"]
    assert stored.dtype == torch.uint8 and data.splits["test"][0].dtype == torch.uint8
    pixels = stored.double() / 255
    channel_mean = pixels.mean(dim=(0, 2, 3))
    assert data.feature_scaling.mean.shape == (3, 1, 1)
    saved = data.describe()["feature_scaling"]  # data.json: a number per channel
    assert saved["shape"] == [3, 1, 1] and np.allclose(saved["mean"], channel_mean, atol=1e-5)
    assert np.allclose(data.feature_scaling.mean.ravel(), channel_mean, atol=1e-5)
    seen = torch.cat([x for x, _ in data.train_dataloader()])  # every training image once
    assert seen.dtype == torch.float32
    assert torch.allclose(seen.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(seen.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    test_batch, _ = next(iter(data.test_dataloader()))  # by the training statistics too
    mean, std = (torch.from_numpy(v) for v in (data.feature_scaling.mean, data.feature_scaling.std))
    expected = (data.splits["test"][0][: len(test_batch)] / 255 - mean) / std
    assert torch.allclose(test_batch, expected, atol=1e-5)
    shown, _ = data.original_split("train")  # what figures show: pixels in [0, 1]
    assert np.allclose(shown, pixels.numpy(), atol=1e-6)
    plain = TorchvisionImages("cifar10", str(tmp_path), download=False, standardize=False)
    plain.setup()
    x, _ = next(iter(plain.test_dataloader()))
    assert plain.feature_scaling is None and 0 <= float(x.min()) and float(x.max()) == 1.0


def test_without_the_files_and_without_a_network_one_line_says_what_to_put_where(
    fit, tmp_path, monkeypatch
):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    message = fit_error(fit, "data=mnist", *CNN)
    assert message.startswith(f"data=mnist: MNIST is not in {tmp_path / 'data' / 'MNIST' / 'raw'}")
    assert "train-images-idx3-ubyte.gz" in message and "https://" in message
    assert "\n" not in message
    message = fit_error(fit, "data=cifar10", "data.download=false", *CNN)
    assert "cifar-10-python.tar.gz" in message and "data.root" in message


# -- data=images: the user's own folders -----------------------------------------------------


def write_folder(root, classes=("cat", "dog", "owl"), per_class=12, size=(20, 16), mode="RGB",
                 suffix=".png"):  # fmt: skip
    """One subfolder per class; class k's images are bright in their k-th band of rows."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            height, width = size
            pixels = generator.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            band = height // len(classes)
            pixels[k * band : (k + 1) * band] = 250
            Image.fromarray(pixels).convert(mode).save(root / name / f"{index}{suffix}")


IMAGES_CNN = ("model=cnn", "model.channels=[8]", "model.hidden=16", "optimizer.lr=0.01",
              "data.batch_size=8", "trainer.max_epochs=6", "figures=none")  # fmt: skip


def test_a_folder_of_class_folders_is_learned_and_named_by_its_folders(fit, tmp_path, monkeypatch):
    write_folder(tmp_path / "photos")
    run = fit("data=images", "data.path=photos", *IMAGES_CNN)
    used = json.loads((run.dir / "data.json").read_text())
    assert used["input_shape"] == [3, 20, 16] and used["class_names"] == ["cat", "dog", "owl"]
    assert sum(used["rows"].values()) == 36
    assert run.metrics["val/acc"] > 0.6, run.metrics
    # what interpret shows is named by its file: each file's own pixels and class
    from dlbasics.data import FolderImages
    from dlbasics.data.images import read_image

    data = FolderImages(str(tmp_path / "photos"), val_fraction=0.2, test_fraction=0.2)
    data.setup()
    shown, labels = data.original_split("test")
    for file, pixels, label in zip(data.split_files("test"), shown, labels, strict=True):
        assert np.allclose(read_image(tmp_path / "photos" / file, "RGB", (20, 16)), pixels)
        assert data.class_names[label] == file.split("/")[0]
    worst = run.interpret(top=3).top_losses
    assert worst.index.name == "file" and len(worst) == 3
    assert all(worst["true"] == [name.split("/")[0] for name in worst.index])
    # used from another folder: the run's data.path is read from where it started
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = dlbasics.load(run.dir).evaluate()
    assert again["test/acc"] == pytest.approx(run.metrics["test/acc"])


def test_train_and_test_folders_are_the_split_and_images_are_resized_and_made_grey(fit, tmp_path):
    write_folder(tmp_path / "photos" / "train", per_class=10, size=(24, 24))
    write_folder(tmp_path / "photos" / "test", per_class=3, size=(30, 20), suffix=".jpg")
    run = fit("data=images", "data.path=photos", "data.image_size=[12,12]", "data.channels=1",
              *IMAGES_CNN)  # fmt: skip
    used = json.loads((run.dir / "data.json").read_text())
    assert used["input_shape"] == [1, 12, 12]
    assert used["rows"]["test"] == 9 and used["rows"]["train"] + used["rows"]["val"] == 30
    # the test folder scored as other data (read, resized, made grey and standardised as the
    # run's own split was) gives the run's test metrics
    other = run.evaluate(path=str(tmp_path / "photos" / "test"))
    assert other["eval/loss"] == pytest.approx(run.metrics["test/loss"], abs=1e-5)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda root: write_folder(root, classes=("only",)), "one class folder (only)"),
        (lambda root: (write_folder(root), (root / "dog" / "3.png").write_bytes(b"not a png")),
         "dog/3.png is not an image that can be read"),
        (lambda root: (write_folder(root, mode="L"), (root / "cat" / "0.png").write_bytes(b"")),
         "cat/0.png is not an image that can be read"),
        (lambda root: (write_folder(root), write_folder(root, classes=("owl",), size=(10, 10))),
         "give them one size with data.image_size="),
        (lambda root: (write_folder(root), (root / "empty").mkdir()), "empty"),
    ],
    ids=["one-class", "corrupt", "corrupt-first-of-grey", "mixed-sizes", "empty-class"],
)  # fmt: skip
def test_what_a_folder_gets_wrong_is_one_line_naming_the_file_or_folder(
    fit, tmp_path, make, expected
):
    make(tmp_path / "photos")
    message = fit_error(fit, "data=images", "data.path=photos", *IMAGES_CNN)
    assert expected in message and "\n" not in message, message


def test_a_folder_too_large_for_memory_is_refused_with_its_size(fit, tmp_path, monkeypatch):
    from dlbasics.data import images

    write_folder(tmp_path / "photos")
    monkeypatch.setattr(images, "_available_memory", lambda: 2**20)  # 1 MiB left
    message = fit_error(fit, "data=images", "data.path=photos", "data.image_size=[256,256]",
                        *IMAGES_CNN)  # fmt: skip
    assert "36 images of 3 x 256 x 256 take 7 MiB in memory, more than half of the 1 MiB" in message
    assert "data.image_size" in message


def test_predict_on_a_folder_or_a_file_of_images_writes_a_class_per_file(fit, tmp_path):
    from dlbasics.using.predict import main as predict

    write_folder(tmp_path / "photos")
    run = fit("data=images", "data.path=photos", *IMAGES_CNN)
    write_folder(tmp_path / "new", per_class=4, size=(40, 32), suffix=".jpg")  # other size
    predict([f"run={run.dir}", "input=new", "output=new.csv"])
    rows = list(csv.DictReader(open(tmp_path / "new.csv")))
    assert list(rows[0]) == ["path", "predicted_class", "probability_cat", "probability_dog",
                             "probability_owl"]  # fmt: skip
    assert len(rows) == 12 and rows[0]["path"] == "cat/0.jpg"
    right = sum(row["predicted_class"] == row["path"].split("/")[0] for row in rows)
    assert right >= 8, rows
    assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("prob")) - 1) < 1e-5
               for r in rows)  # fmt: skip
    predict([f"run={run.dir}", "input=new/owl/1.jpg", "output=one.csv"])
    assert len(list(csv.DictReader(open(tmp_path / "one.csv")))) == 1
    # in Python: a folder, or a list of files in the order given
    frame = run.predict("new")
    assert frame["predicted_class"].tolist() == [r["predicted_class"] for r in rows]
    listed = run.predict(["new/owl/1.jpg", tmp_path / "new" / "cat" / "0.jpg"])
    assert listed["path"].tolist() == ["new/owl/1.jpg", str(tmp_path / "new" / "cat" / "0.jpg")]
    assert listed["predicted_class"].tolist() == [rows[9]["predicted_class"], rows[0]["predicted_class"]]
    with pytest.raises(dlbasics.ConfigError, match="new.csv is not an image file"):
        run.predict(["new/owl/1.jpg", "new.csv"])
    # an export predicts the same, with the same columns (onnxruntime, no torch); it takes
    # images, N x 3 x 20 x 16 pixels in [0, 1], the run's standardisation in its graph
    exported = run.export("onnx")
    import onnxruntime

    (graph_input,) = onnxruntime.InferenceSession(str(exported)).get_inputs()
    assert graph_input.name == "images" and graph_input.shape[1:] == [3, 20, 16]
    about = json.loads(exported.with_name(exported.name + ".json").read_text())
    assert about["input"].startswith("images: float32 (batch, C, H, W), pixels in [0, 1]")
    assert about["feature_names"] is None and about["input_shape"] == [3, 20, 16]
    predict([f"model={exported}", "input=new", "output=onnx.csv"])
    again = list(csv.DictReader(open(tmp_path / "onnx.csv")))
    assert [r["predicted_class"] for r in again] == [r["predicted_class"] for r in rows]
    (tmp_path / "empty").mkdir()
    with pytest.raises(dlbasics.DataError, match="a folder without image files"):
        predict([f"run={run.dir}", "input=empty"])


def test_images_given_to_a_run_of_a_table_are_refused(fit, tmp_path):
    from dlbasics.using.predict import main as predict

    run = fit("model=mlp", "data=moons", "data.n_samples=200", "trainer.max_epochs=1",
              "figures=none")  # fmt: skip
    write_folder(tmp_path / "new", per_class=1)
    with pytest.raises(dlbasics.ConfigError, match=r"images, but the run learned from samples"):
        predict([f"run={run.dir}", "input=new"])


# -- data.augment --------------------------------------------------------------------------


def test_each_image_draws_its_own_flip_and_shift():
    import torch

    from dlbasics.config.schema import AUGMENTATIONS
    from dlbasics.data.augment import AUGMENTATIONS as APPLIED
    from dlbasics.data.augment import augmentation

    assert tuple(APPLIED) == AUGMENTATIONS  # what the checks accept is what is applied
    torch.manual_seed(0)
    images = torch.rand(200, 3, 10, 12)
    flipped = augmentation(["flip"])(images)
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images, strict=True)]
    same = [torch.equal(f, i) for f, i in zip(flipped, images, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert 60 < sum(mirrored) < 140  # each its own draw, about half
    shifted = augmentation(["crop"])(images)
    offsets = set()
    for out, image in zip(shifted, images, strict=True):
        padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if torch.equal(out, padded[:, dy : dy + 10, dx : dx + 12])]  # fmt: skip
        assert found, "not a shift of its own image by up to 4 pixels"
        offsets.add(found[0])
    assert len(offsets) > 20
    stacked = augmentation(["flip", "crop"])(images.view(4, 50, 3, 10, 12))  # seeds= members
    assert stacked.shape == (4, 50, 3, 10, 12)


def test_augmented_training_still_learns_and_leaves_evaluation_alone(fit, tmp_path):
    write_folder(tmp_path / "photos")
    run = fit("data=images", "data.path=photos", "data.augment=[flip,crop]", *IMAGES_CNN)
    assert run.config.data.augment == ["flip", "crop"]
    assert run.metrics["val/acc"] > 0.5, run.metrics
    # the test split is scored without augmentation: evaluate gives the run's own numbers
    assert dlbasics.load(run.dir).evaluate()["test/acc"] == pytest.approx(run.metrics["test/acc"])


def test_augmenting_what_is_not_images_or_an_unknown_one_is_one_line(fit, tmp_path):
    write_folder(tmp_path / "photos")
    message = fit_error(fit, "data=images", "data.path=photos", "data.augment=[rotate]")
    assert message.startswith("data.augment: 'rotate' is not an augmentation; use any of flip")


def test_misclassified_colour_images_are_drawn_in_colour():
    from dlbasics.figures import draw

    green = np.zeros((3, 3, 12, 12))
    green[:, 1] = 1.0  # pure green photos: nothing else in the figure is that colour
    drawn = draw.rgb_array(draw.misclassified_figure(green, [0, 1, 2], [1, 2, 0], list("abc")))
    pixels = drawn.reshape(-1, 3).astype(float) / (255 if drawn.dtype == np.uint8 else 1)
    pure_green = (pixels[:, 1] > 0.9) & (pixels[:, 0] < 0.1) & (pixels[:, 2] < 0.1)
    assert pure_green.sum() >= 3 * 12 * 12  # three tiles of at least their own size
