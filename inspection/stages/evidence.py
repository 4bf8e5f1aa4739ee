"""The sink's evidence files: the annotated copy of a frame, defect crops, raw pixels, written atomically
(a reader never sees half a file; a full disk leaves nothing behind and says how much room was left)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.palette import class_bgr
from inspection.messages import Frame, FrameEvidence, FrameResult, TrackedDefect
from inspection.stages.anomaly_evidence import ANOMALY_CLASS, heat_map_crop, map_crop_path
from inspection.storage.paths import crop_path, crop_window, frame_image_path, live_frame_path, raw_frame_path

log = logging.getLogger("steel.sink")


def draw_boxes(image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, labels: list[str]) -> np.ndarray:
    """The frame with each box drawn and labelled in its class's colour (the dashboard's, one palette)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for box, cls in zip(boxes.astype(int), class_ids, strict=True):
        colour = class_bgr(labels[int(cls)])
        cv2.rectangle(canvas, (box[0], box[1]), (box[2] - 1, box[3] - 1), colour, 2)
        cv2.putText(
            canvas,
            labels[int(cls)],
            (box[0] + 2, max(10, box[1] + 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            colour,
            1,
            cv2.LINE_AA,
        )
    return canvas


# Encoder settings by file suffix: raw frames as uncompressed TIFF (lossless, cheap), pictures for people as
# JPEG at quality 95; PNG (heat-map crops, or a config's choice) at OpenCV's default, its fastest here.
ENCODE_PARAMS: dict[str, list[int]] = {
    ".tiff": [cv2.IMWRITE_TIFF_COMPRESSION, 1],
    ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
}


def write_image_atomic(path: Path, image: np.ndarray) -> None:
    """Write an image under a temporary name, then rename it; OSError (nothing left behind) when the
    folder cannot take it, naming the free space (a full disk). Encoded in memory and written by Python,
    so a failure is the system's own error, never an encoder's message on stderr (the log is JSON). The
    folder is made when the first write into it fails, not checked before every one (a frame has dozens
    of crops)."""
    try:
        ok, encoded = cv2.imencode(path.suffix, image, ENCODE_PARAMS.get(path.suffix, []))
    except cv2.error as exc:
        raise _cannot_write(path, str(exc).strip().splitlines()[-1]) from exc
    if not ok:
        raise _cannot_write(path, "the encoder refused the image")
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        try:
            tmp.write_bytes(encoded.tobytes())
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, exc.strerror or str(exc)) from exc


def _cannot_write(path: Path, detail: str) -> OSError:
    free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
    return OSError(f"cannot write {path} ({free} bytes free): {detail}")


def raw_pixels(frame: Frame) -> np.ndarray:
    """The frame as the detector saw it, resized back to the source frame when preprocessing resized it
    (defect boxes are stored in source-frame pixels)."""
    scale = frame.meta.get("preprocess_scale_xy")
    if scale is None:
        return frame.image
    size_wh = (round(frame.width * scale[0]), round(frame.height * scale[1]))
    return cv2.resize(frame.image, size_wh, interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class EvidenceOptions:
    """Which evidence files the daemon keeps (``output`` in the config) and where."""

    output_dir: Path
    save_crops: bool
    save_frames: str  # none | defects | all
    save_raw: bool
    live_every_s: float
    raw_format: str = "tiff"  # tiff | png (see inspection.storage.paths.RAW_FORMATS)
    crop_format: str = "jpg"  # jpg | png


@dataclass(frozen=True)
class EvidencePlan:
    """What to write for one frame, decided in frame order (the live view's refresh clock is shared by
    every frame of a line, so parallel writers must not decide it)."""

    frame_image: Path | None
    live_image: Path | None


class EvidenceWriter:
    """Writes one frame's evidence files. :meth:`plan` runs in frame order; :meth:`write` may run for
    several frames at once (OpenCV releases the GIL while it encodes)."""

    def __init__(self, options: EvidenceOptions, class_names: list[str], default_line: str) -> None:
        self.options = options
        self.class_names = class_names
        self.default_line = default_line
        self._last_live: dict[str, float] = {}

    def plan(self, result: FrameResult) -> EvidencePlan:
        frame, opts = result.frame, self.options
        want_frame = opts.save_frames == "all" or (opts.save_frames == "defects" and len(result.detections))
        line = frame.line_id or self.default_line
        now = time.monotonic()
        live = None
        if now - self._last_live.get(line, -1e9) >= opts.live_every_s:
            live = live_frame_path(opts.output_dir, line)
            self._last_live[line] = now
        target = frame_image_path(opts.output_dir, frame.source, frame.seq) if want_frame else None
        return EvidencePlan(frame_image=target, live_image=live)

    def write(self, result: FrameResult, plan: EvidencePlan) -> FrameEvidence:
        """Crops of the new defects, the annotated (and raw) frame, the live view. A file that cannot be
        written is left out and named in ``problem``; the frame is stored all the same."""
        problems: list[str] = []
        written = [(d.track_id, *self._crop(result.frame, d, problems)) for d in result.new_defects]
        image_path = self._frame_images(result, plan, problems)
        problem = f"evidence not saved: {problems[0]}" if problems else None
        return FrameEvidence(
            image_path=image_path,
            crop_paths=tuple((track, crop) for track, crop, _ in written),
            problem=problem,
            map_paths=tuple((track, heat) for track, _, heat in written if heat is not None),
        )

    def write_now(self, result: FrameResult) -> FrameEvidence:
        return self.write_safely(result, self.plan(result))

    def write_safely(self, result: FrameResult, plan: EvidencePlan) -> FrameEvidence:
        """:meth:`write`, with any error (not only a full disk) turned into the frame's ``problem``: the
        scored frame and its defects are never lost over a picture."""
        try:
            return self.write(result, plan)
        except Exception as exc:
            log.exception("evidence of %s#%s not written", result.frame.source, result.frame.seq)
            return FrameEvidence(image_path=None, problem=f"evidence not saved: {type(exc).__name__}: {exc}")

    def _crop(self, frame: Frame, d: TrackedDefect, problems: list[str]) -> tuple[str | None, str | None]:
        """The defect's crop, and for an ``anomaly`` defect the anomaly map's heat-map crop beside it."""
        window = crop_window(d.xyxy, (frame.height, frame.width)) if self.options.save_crops else None
        if window is None:
            return None, None
        xa, ya, xb, yb = window
        path = crop_path(
            self.options.output_dir, frame.source, frame.seq, d.track_id, self.options.crop_format
        )
        if not _saved(path, frame.image[ya:yb, xa:xb], problems):
            return None, None
        heat = heat_map_crop(frame, window) if d.class_name == ANOMALY_CLASS else None
        if heat is None or not _saved(map_crop_path(path), heat, problems):
            return str(path), None
        return str(path), str(map_crop_path(path))

    def _frame_images(self, result: FrameResult, plan: EvidencePlan, problems: list[str]) -> str | None:
        if plan.frame_image is None and plan.live_image is None:
            return None
        frame, dets = result.frame, result.detections
        annotated = draw_boxes(frame.image, dets.xyxy, dets.class_ids, self.class_names)
        path = None
        if plan.frame_image is not None:
            if _saved(plan.frame_image, annotated, problems):
                path = str(plan.frame_image)
            if self.options.save_raw:
                raw = raw_frame_path(
                    self.options.output_dir, frame.source, frame.seq, self.options.raw_format
                )
                _saved(raw, raw_pixels(frame), problems)
        if plan.live_image is not None:
            try:  # the live view is a convenience: a full disk costs the picture, not the frame
                write_image_atomic(plan.live_image, annotated)
            except OSError as exc:
                log.warning("live frame of %s not written: %s", plan.live_image.stem, exc)
        return path


def _saved(path: Path, image: np.ndarray, problems: list[str]) -> bool:
    """Write one crop or frame image; on failure note why in ``problems`` and return False."""
    try:
        write_image_atomic(path, image)
    except OSError as exc:
        problems.append(str(exc))
        return False
    return True
