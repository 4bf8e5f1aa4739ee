"""dHash, Hamming distance and the near-duplicate search, on synthetic ramps and real NEU-DET images."""

from __future__ import annotations

import itertools
import shutil

import cv2
import numpy as np
import pytest

from datasets import dhash
from datasets.dhash import (
    detail_signature,
    dhash_array,
    dhash_file,
    hamming,
    near_duplicates,
    read_gray,
)

ALL_ONES = 2**64 - 1


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.tile(np.arange(200, dtype=np.uint8), (100, 1)), ALL_ONES),  # brighter to the right: every bit set
        (np.tile(np.arange(200, 0, -1).astype(np.uint8), (100, 1)), 0),  # darker to the right: none
        (np.full((50, 50), 128, np.uint8), 0),  # flat: no neighbour is brighter
        (np.tile(np.arange(0, 900, 4, dtype=np.float64), (30, 1)), ALL_ONES),  # any dtype, any size
    ],
)
def test_dhash_of_ramps(image, expected):
    assert dhash_array(image) == expected


def test_dhash_bit_order_first_row_is_most_significant():
    image = np.zeros((8, 9), np.uint8)
    image[0, 1] = 255  # top-left pair rises, the next falls
    assert dhash_array(image) == 1 << 63


def test_dhash_colour_equals_gray(neu_root):
    path = neu_root / "images" / "scratches_10.jpg"
    colour = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert dhash_array(colour) == dhash_array(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)) == dhash_file(path)


def test_dhash_rejects_empty_and_undecodable(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        dhash_array(np.zeros((0, 5), np.uint8))
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"plain text, not JPEG")
    with pytest.raises(ValueError, match="cannot decode"):
        dhash_file(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot decode"):
        read_gray(empty)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [(0, 0, 0), (0, 1, 1), (0b1011, 0b0110, 3), (0, ALL_ONES, 64), (ALL_ONES, ALL_ONES - 2**40, 1)],
)
def test_hamming(a, b, distance):
    assert hamming(a, b) == hamming(b, a) == distance


def test_near_duplicates_within_one_set_lists_each_pair_once():
    hashes = {"a": 0, "b": 0b1, "c": 0b111, "d": ALL_ONES, "e": 0}
    assert near_duplicates(hashes, 1) == [("a", "e", 0), ("a", "b", 1), ("b", "e", 1)]
    assert near_duplicates(hashes, 0) == [("a", "e", 0)]
    assert len(near_duplicates(hashes, 64)) == 10  # 5 choose 2: no self-pairs, no mirrored pairs


def test_near_duplicates_against_another_set():
    train = {"t1": 0, "t2": 0xFF00}
    test = {"x": 0b10, "y": 0xFF00, "z": ALL_ONES}
    assert near_duplicates(train, 2, against=test) == [("t2", "y", 0), ("t1", "x", 1)]
    assert near_duplicates({}, 4, against=test) == []
    assert near_duplicates(train, 4, against={}) == []


def test_near_duplicates_matches_brute_force_across_chunks(monkeypatch):
    monkeypatch.setattr(dhash, "_CHUNK_ROWS", 7)  # force several row chunks
    rng = np.random.default_rng(0)
    base = [int(v) for v in rng.integers(0, 2**63, size=6, dtype=np.int64)]
    # 60 hashes in clusters around 6 random centres, 0-3 bits flipped each
    hashes = {
        f"h{i:02d}": base[i % 6] ^ sum(1 << int(b) for b in rng.choice(64, i % 4, replace=False))
        for i in range(60)
    }
    expected = sorted(
        (
            (a, b, hamming(hashes[a], hashes[b]))
            for a, b in itertools.combinations(sorted(hashes), 2)
            if hamming(hashes[a], hashes[b]) <= 4
        ),
        key=lambda p: (p[2], p[0], p[1]),
    )
    assert expected  # the clusters make close pairs
    assert near_duplicates(hashes, 4) == expected


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)


def test_copy_and_brightened_copy_of_a_real_image_stay_close(neu_root, tmp_path):
    original = neu_root / "images" / "crazing_1.jpg"
    copy = tmp_path / "copy.jpg"
    shutil.copyfile(original, copy)
    gray = read_gray(original)
    brighter = _jpeg(cv2.convertScaleAbs(gray, alpha=1.0, beta=15), 90)
    assert dhash_file(copy) == dhash_file(original)
    assert hamming(dhash_array(brighter), dhash_array(gray)) <= 4
    assert float(detail_signature(brighter) @ detail_signature(gray)) >= 0.9


def test_detail_signature_separates_gradient_look_alikes(neu_root):
    # Both images are dominated by the same left-to-right illumination gradient: identical dHash,
    # different steel. The high-pass signature tells them apart.
    a = read_gray(neu_root / "images" / "pitted_surface_107.jpg")
    b = read_gray(neu_root / "images" / "pitted_surface_194.jpg")
    assert hamming(dhash_array(a), dhash_array(b)) == 0
    sig_a, sig_b = detail_signature(a), detail_signature(b)
    assert sig_a.shape == (1024,) and sig_a.dtype == np.float32
    assert float(sig_a @ sig_a) == pytest.approx(1.0, abs=1e-5)
    assert float(sig_a @ sig_b) < 0.9


def test_detail_signature_of_a_flat_image_is_zero():
    assert not detail_signature(np.full((40, 40), 77, np.uint8)).any()
