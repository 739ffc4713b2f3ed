#!/usr/bin/env python3
"""Writes small DICOM test files and pydicom's reference pixels for them, for tests/dicom.rs (issue 10).

Owns: the fixtures (a CT with slope/intercept and two windows, a MONOCHROME1 radiograph, an MR with a window and
one with a SIGMOID VOI LUT Function, a multi-frame file without a window, an RLE-encoded CT, an RGB image) and the
bad files (no pixel data, truncated pixel data, only a slope, a DICOMDIR, an unsupported transfer syntax), plus
`manifest.json`: for each good case the file, the medgemma flags, and a reference JSON of 8-bit pixels computed
with pydicom's `apply_modality_lut` + `apply_voi_lut` (+ MONOCHROME1 inversion, + min-max without a window); for
each bad case the substrings its error must contain.
Must not: run medgemma or judge its output (the Rust test does); write outside the output folder; hold any real
patient's data (every name and ID here is made up).

Usage: make_dicom_fixtures.py OUT_DIR   (needs pydicom >= 3 and numpy)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    JPEG2000Lossless,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
DICOMDIR = "1.2.840.10008.1.3.10"


def base(sop_class: str, modality: str, ts: str = ExplicitVRLittleEndian) -> Dataset:
    """A dataset with file meta and made-up patient identifiers (which medgemma must never print)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "PID-0042-SECRET"
    ds.PatientBirthDate = "19010203"
    return ds


def set_pixels(ds: Dataset, arr: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None) -> None:
    """Native pixel data from `arr` (rows x cols, frames x rows x cols, or rows x cols x 3)."""
    ds.PhotometricInterpretation = photometric
    colour = photometric != "MONOCHROME1" and photometric != "MONOCHROME2"
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    shape = arr.shape[:-1] if colour else arr.shape
    if len(shape) == 3:
        ds.NumberOfFrames = shape[0]
    ds.Rows, ds.Columns = shape[-2], shape[-1]
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def y_range(ds: Dataset) -> tuple[float, float]:
    """The output range pydicom's apply_windowing maps a window to (see pydicom.pixels.processing)."""
    if ds.PixelRepresentation == 0:
        lo, hi = 0.0, 2.0**ds.BitsStored - 1
    else:
        lo, hi = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        lo, hi = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept), hi * float(ds.RescaleSlope) + float(
            ds.RescaleIntercept
        )
    return lo, hi


def reference(ds: Dataset, frame: int = 1, window_index: int = 1, window: tuple[float, float] | None = None) -> dict:
    """8-bit grey (or RGB) pixels by pydicom's pipeline, for frame `frame` (1-based)."""
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1)) > 1:
        arr = arr[frame - 1]
    if ds.SamplesPerPixel == 3:
        rgb = arr.astype(np.uint8)
        return {"width": int(ds.Columns), "height": int(ds.Rows), "channels": 3, "pixels": rgb.ravel().tolist()}
    if window is not None:
        ds = ds.copy()
        ds.WindowCenter, ds.WindowWidth = window
        if "VOILUTFunction" in ds:
            del ds.VOILUTFunction
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if "WindowCenter" in ds:
        lo, hi = y_range(ds)
        fraction = (apply_voi_lut(values, ds, index=window_index - 1) - lo) / (hi - lo)
    else:
        fraction = (values - values.min()) / max(values.max() - values.min(), 1e-300)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        fraction = 1.0 - fraction
    grey = np.clip(np.round(fraction * 255.0), 0, 255).astype(np.uint8)
    return {"width": int(ds.Columns), "height": int(ds.Rows), "channels": 1, "pixels": grey.ravel().tolist()}


def ramp(rows: int, cols: int, lo: float, hi: float, seed: int) -> np.ndarray:
    """A diagonal ramp from lo to hi with a little noise: every grey level of a window gets used."""
    y, x = np.mgrid[0:rows, 0:cols]
    t = (x + y) / (rows + cols - 2)
    noise = np.random.default_rng(seed).normal(0, (hi - lo) * 0.01, (rows, cols))
    return np.clip(lo + t * (hi - lo) + noise, lo, hi)


def good_cases(out: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(name: str, ds: Dataset, args: list[str], ref: dict) -> None:
        path = out / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        (out / f"{name}.json").write_text(json.dumps(ref))
        cases.append({"name": name, "file": path.name, "args": args, "reference": f"{name}.json"})

    ct = base(CT_IMAGE, "CT")
    set_pixels(ct, ramp(64, 64, 0, 3000, 1).astype(np.uint16), bits_stored=12)
    ct.RescaleSlope, ct.RescaleIntercept = 1, -1024
    ct.WindowCenter, ct.WindowWidth = [40, -600], [400, 1500]
    add("ct", ct, [], reference(ct))
    add("ct_window_index_2", ct, ["--window-index", "2"], reference(ct, window_index=2))
    add("ct_preset_bone", ct, ["--window", "bone"], reference(ct, window=(400, 1800)))
    add("ct_custom_window", ct, ["--window", "-160,240"], reference(ct, window=(-160, 240)))

    ct_signed = base(CT_IMAGE, "CT")
    set_pixels(ct_signed, ramp(48, 48, -1024, 1500, 2).astype(np.int16))
    ct_signed.RescaleSlope, ct_signed.RescaleIntercept = "0.5", "-20"
    ct_signed.WindowCenter, ct_signed.WindowWidth = 50, 350
    ct_signed.VOILUTFunction = "LINEAR_EXACT"
    add("ct_signed_linear_exact", ct_signed, [], reference(ct_signed))

    cr = base(CR_IMAGE, "CR")
    set_pixels(cr, ramp(60, 80, 0, 4095, 3).astype(np.uint16), "MONOCHROME1", bits_stored=12)
    cr.WindowCenter, cr.WindowWidth = 2048, 3000
    add("cr_monochrome1", cr, [], reference(cr))

    mr = base(MR_IMAGE, "MR")
    set_pixels(mr, ramp(64, 64, 0, 1600, 4).astype(np.uint16))
    mr.WindowCenter, mr.WindowWidth = 600, 1600
    add("mr", mr, [], reference(mr))
    mr_sigmoid = mr.copy()
    mr_sigmoid.VOILUTFunction = "SIGMOID"
    add("mr_sigmoid", mr_sigmoid, [], reference(mr_sigmoid))

    frames = np.stack([ramp(32, 32, 10 * k, 100 + 50 * k, 5 + k) for k in range(3)]).astype(np.uint8)
    multi = base(SC_IMAGE, "OT")
    set_pixels(multi, frames)
    add("multiframe_frame_2", multi, ["--frame", "2"], reference(multi, frame=2))
    add("multiframe_frame_1", multi, [], reference(multi, frame=1))

    rle = base(CT_IMAGE, "CT")
    set_pixels(rle, ramp(40, 40, 0, 3000, 6).astype(np.uint16), bits_stored=12)
    rle.RescaleSlope, rle.RescaleIntercept = 1, -1024
    rle.WindowCenter, rle.WindowWidth = -600, 1500
    ref = reference(rle)
    rle.compress(RLELossless)
    add("ct_rle", rle, [], ref)

    rgb = base(SC_IMAGE, "OT")
    y, x = np.mgrid[0:24, 0:24]
    set_pixels(rgb, np.stack([x * 10, y * 10, (x + y) * 5], axis=-1).astype(np.uint8), "RGB")
    add("rgb", rgb, [], reference(rgb))
    return cases


def bad_cases(out: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(name: str, ds: Dataset, expect: list[str]) -> None:
        path = out / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        cases.append({"name": name, "file": path.name, "expect": expect})

    sr = base(BASIC_TEXT_SR, "SR")
    sr.ContentDate = "20240101"
    add("no_pixel_data", sr, ["no pixel data", "SR"])

    truncated = base(CT_IMAGE, "CT")
    set_pixels(truncated, ramp(64, 64, 0, 3000, 7).astype(np.uint16), bits_stored=12)
    truncated.PixelData = truncated.PixelData[: 64 * 64]
    add("truncated_pixel_data", truncated, ["truncated", "4096 bytes", "8192"])

    slope = base(CT_IMAGE, "CT")
    set_pixels(slope, ramp(16, 16, 0, 3000, 8).astype(np.uint16), bits_stored=12)
    slope.RescaleSlope = 1
    add("only_slope", slope, ["RescaleSlope", "RescaleIntercept"])

    dicomdir = base(DICOMDIR, "OT")
    add("dicomdir", dicomdir, ["DICOMDIR"])

    j2k = base(CT_IMAGE, "CT", JPEG2000Lossless)
    set_pixels(j2k, np.zeros((16, 16), np.uint16), bits_stored=12)
    j2k.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    j2k["PixelData"].VR = "OB"
    add("jpeg2000", j2k, ["JPEG 2000", "1.2.840.10008.1.2.4.90"])

    huge = base(CT_IMAGE, "CT")
    set_pixels(huge, np.zeros((4, 4), np.uint16))
    huge.Rows, huge.Columns, huge.NumberOfFrames = 8000, 8000, 100
    add("too_many_pixels", huge, ["more than", "frames"])
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write into (created if missing)")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"good": good_cases(out), "bad": bad_cases(out), "secrets": ["Secret", "PID-0042", "19010203"]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
