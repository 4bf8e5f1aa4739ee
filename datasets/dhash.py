"""Difference hashes (dHash) and Hamming-distance search for near-duplicate images.

Hand-written rather than taken from ``imagehash``: that package is not a dependency, and dHash is
twenty lines of numpy/OpenCV. The inspection daemon reuses :func:`dhash_array` on defect crops to
tell whether two frames show the same defect.

A dHash shrinks the grayscale image to 9x8 and keeps one bit per horizontally adjacent pixel pair
(``right > left``), so it survives re-encoding, resizing and brightness changes but not crops.

64 bits are too few for NEU-DET's low-contrast textures: an image dominated by a left-to-right
illumination gradient hashes to (nearly) all zeros whatever its texture, so 2,237 pairs of the
1,440 development images lie within 4 bits although only one pair is a real duplicate. The hash
is therefore only the fast candidate filter; :func:`detail_signature` confirms a candidate by
correlating the images' high-pass 32x32 thumbnails (1.0 for a copy, >= 0.9 after brightening,
JPEG re-encoding or resizing; at most 0.8 for the gradient look-alikes).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HASH_BITS = 64
_HASH_W, _HASH_H = 9, 8  # 9 columns give 8 differences per row, 8 rows: 64 bits
_CHUNK_ROWS = 1024  # rows of the pairwise distance matrix computed at once (bounds memory)
_SIG_SIDE, _SIG_BLUR_SIGMA = 32, 3.0


def dhash_array(image: np.ndarray) -> int:
    """dHash of an image array.

    Args:
        image: ``(H, W)`` grayscale or ``(H, W, 3)`` BGR, any numeric dtype, ``H, W >= 1``.

    Returns:
        A 64-bit unsigned int; bit 63 is the top-left pixel pair, bit 0 the bottom-right one.
    """
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(
            f"dhash_array: expected a non-empty (H, W) or (H, W, 3) image, got shape {image.shape}"
        )
    # float32 before resizing: area averages are not rounded, so a uniform brightness shift cannot
    # create or break ties between neighbours.
    small = cv2.resize(image.astype(np.float32), (_HASH_W, _HASH_H), interpolation=cv2.INTER_AREA)
    bits = small[:, 1:] > small[:, :-1]  # (8, 8)
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as ``(H, W)`` uint8; raises ``ValueError`` when it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8)  # imdecode(fromfile) also handles non-ASCII paths
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    return image


def dhash_file(path: str | Path) -> int:
    """dHash of an image file; raises ``ValueError`` when the file cannot be decoded."""
    return dhash_array(read_gray(path))


def detail_signature(gray: np.ndarray) -> np.ndarray:
    """Unit vector of an image's fine structure, for confirming dHash candidates.

    Args:
        gray: ``(H, W)`` grayscale image.

    Returns:
        ``(1024,)`` float32: the 32x32 area thumbnail minus its Gaussian blur (sigma 3 px, which
        removes illumination gradients), mean-centred and scaled to unit length. The dot product of
        two signatures is their correlation in ``[-1, 1]``; a featureless image gives the zero vector.
    """
    thumb = cv2.resize(gray.astype(np.float32), (_SIG_SIDE, _SIG_SIDE), interpolation=cv2.INTER_AREA)
    detail = thumb - cv2.GaussianBlur(thumb, (0, 0), _SIG_BLUR_SIGMA)
    detail -= detail.mean()
    norm = float(np.linalg.norm(detail))
    return (detail / norm if norm > 1e-6 else np.zeros_like(detail)).ravel()


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def _as_array(hashes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    names = sorted(hashes)
    return names, np.array([hashes[n] for n in names], dtype=np.uint64)


def near_duplicates(
    hashes: dict[str, int], max_distance: int = 4, against: dict[str, int] | None = None
) -> list[tuple[str, str, int]]:
    """Pairs of hashes at Hamming distance ``<= max_distance``.

    Args:
        hashes: name -> dHash.
        max_distance: inclusive bit-distance threshold (0 finds pixel-identical thumbnails only).
        against: when given, compare every ``hashes`` entry with every ``against`` entry (a between-set
            check, e.g. train vs. test leakage) instead of ``hashes`` with itself.

    Returns:
        ``(a, b, distance)`` sorted by distance then names; ``a`` from ``hashes``, ``b`` from ``against``
        (within one set ``a < b`` and each pair appears once). Work is ``O(N*M)`` vectorised numpy,
        in row chunks, so 1440x1440 takes milliseconds.
    """
    names_a, arr_a = _as_array(hashes)
    names_b, arr_b = _as_array(against if against is not None else hashes)
    pairs: list[tuple[str, str, int]] = []
    for start in range(0, len(names_a), _CHUNK_ROWS):
        block = arr_a[start : start + _CHUNK_ROWS, None] ^ arr_b[None, :]
        dist = np.bitwise_count(block)
        hit = dist <= max_distance
        if against is None:  # keep the upper triangle: each unordered pair once, no self-pairs
            rows = np.arange(start, start + block.shape[0])[:, None]
            hit &= np.arange(len(names_b))[None, :] > rows
        for i, j in zip(*np.nonzero(hit), strict=True):
            pairs.append((names_a[start + i], names_b[j], int(dist[i, j])))
    pairs.sort(key=lambda p: (p[2], p[0], p[1]))
    return pairs
