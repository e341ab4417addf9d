"""Every data source ends in the same uint8 format."""

import tarfile

import numpy as np
import pytest
from PIL import Image

from vispipe.classify.data import (
    DataError,
    Split,
    from_digits,
    from_folder,
    load_split,
    prepare,
    save_split,
    stratified_subset,
)


def make_folder(root, sizes=(8, 8), per_class=3, classes=("cat", "airplane", "dog")):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (*sizes, 3), dtype=np.uint8)).save(d / f"{i:04d}.png")
    return root


def test_digits_are_32x32_rgb_uint8_and_stratified():
    s = from_digits(seed=0)
    tr, te = s["train"], s["test"]
    assert tr.images.shape[1:] == (32, 32, 3) and tr.images.dtype == np.uint8
    assert len(tr) + len(te) == 1797 and len(te) == 360
    assert tr.classes == [str(i) for i in range(10)]
    assert np.array_equal(tr.images[..., 0], tr.images[..., 2])  # grey as RGB
    counts = np.bincount(te.labels)
    assert counts.min() >= 35 and counts.max() <= 37
    assert tr.images.max() > 200 and tr.images.min() == 0


def test_folder_and_archive_give_the_same_arrays(tmp_path):
    root = make_folder(tmp_path / "imgs")
    a = from_folder(root)
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar")  # an extra top-level folder is fine
    b = from_folder(archive)
    for split in ("train", "test"):
        assert a[split].classes == b[split].classes == ["airplane", "cat", "dog"]  # sorted, as ImageFolder
        assert np.array_equal(a[split].images, b[split].images)
        assert np.array_equal(a[split].labels, b[split].labels)
        assert a[split].images.shape == (9, 8, 8, 3)


def test_folder_errors_name_the_file(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (root / "train" / "cat" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="0001.png"):
        from_folder(root)
    with pytest.raises(DataError, match="does not exist"):
        from_folder(tmp_path / "missing")
    only_train = make_folder(tmp_path / "x")
    for f in (only_train / "test").rglob("*.png"):
        f.unlink()
    with pytest.raises(DataError, match="test/<class>"):
        from_folder(only_train)


def test_mixed_sizes_are_rejected(tmp_path):
    root = make_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "train" / "dog" / "big.png")
    with pytest.raises(DataError, match="differ in size"):
        from_folder(root)


def test_stratified_subset_keeps_proportions():
    labels = np.repeat(np.arange(4), [100, 100, 50, 50])
    s = Split(np.zeros((300, 2, 2, 3), np.uint8), labels, list("abcd"))
    sub = stratified_subset(s, 60, seed=0)
    assert np.bincount(sub.labels).tolist() == [20, 20, 10, 10]
    assert stratified_subset(s, None, 0) is s
    assert np.array_equal(stratified_subset(s, 60, 0).labels, sub.labels)  # seeded


def test_npz_round_trip_and_errors(tmp_path):
    s = from_digits(seed=0)["test"]
    save_split(s, tmp_path / "test.npz")
    back = load_split(tmp_path / "test.npz")
    assert np.array_equal(back.images, s.images) and back.classes == s.classes
    with pytest.raises(DataError, match="fetch_cifar10"):
        load_split(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="delete it and rerun"):
        load_split(tmp_path / "bad.npz")


@pytest.mark.parametrize("keep", [0.5, 0.0, 0.99])
def test_a_truncated_split_is_a_data_error_naming_the_file_and_the_rule(tmp_path, keep):
    s = from_digits(seed=0)["test"]
    path = tmp_path / "test.npz"
    save_split(s, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])  # an interrupted copy or download
    with pytest.raises(DataError) as e:
        load_split(path)
    assert str(path) in str(e.value) and "fetch_cifar10 rule" in str(e.value)


def test_a_corrupt_compressed_split_is_a_data_error(tmp_path):
    s = from_digits(seed=0)["test"]
    path = tmp_path / "test.npz"
    np.savez_compressed(path, images=s.images, labels=s.labels, classes=np.array(s.classes))
    blob = bytearray(path.read_bytes())
    blob[1000:1064] = bytes(64)  # inside the deflated images: zlib fails, not the zip directory
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="fetch_cifar10 rule") as e:
        load_split(path)
    assert str(path) in str(e.value)


def test_prepare_applies_limits_and_checks_path():
    cfg = {"source": "digits", "name": "d", "path": None, "limit_train": 100, "limit_test": 50}
    s = prepare(cfg, seed=0)
    assert len(s["train"]) == 100 and len(s["test"]) == 50
    with pytest.raises(DataError, match="data.path is null"):
        prepare({**cfg, "source": "folder"}, seed=0)
