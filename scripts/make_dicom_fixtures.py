#!/usr/bin/env python3
"""Writes small DICOM test files and pydicom's reference pixels for them, for tests/dicom.rs (issue 10).

Owns: the fixtures (a CT with slope/intercept and two windows, a MONOCHROME1 radiograph, an MR with a window and
one with a SIGMOID VOI LUT Function, a multi-frame file without a window, an RLE-encoded CT, an RGB image, VOI LUT
and Modality LUT Sequences, an enhanced multi-frame CT with functional groups, 16-bit grey PNG and TIFF, and
pydicom's own test files) and the bad files (no pixel data, truncated pixel data, only a slope, a DICOMDIR, an
unsupported transfer syntax, a truncated LUT, palette colour, JPEG-LS, 12-bit JPEG, a truncated file), plus
`manifest.json`: for each good case the file, the medgemma flags, and a reference JSON of 8-bit pixels computed
with pydicom's `apply_modality_lut` + `apply_voi_lut` (+ MONOCHROME1 inversion, + min-max without a window); for
each bad case the substrings its error must contain.
Must not: run medgemma or judge its output (the Rust test does); write outside the output folder; hold any real
patient's data (every name and ID written here is made up; pydicom's test files are its public, anonymised samples).

Usage: make_dicom_fixtures.py OUT_DIR   (needs pydicom >= 3 and numpy)
"""

from __future__ import annotations

import argparse
import copy
import json
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.encaps import encapsulate
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space, pixel_array
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
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
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
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    elif ds.PixelRepresentation == 0:
        lo, hi = 0.0, 2.0**ds.BitsStored - 1
    else:
        lo, hi = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        lo, hi = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept), hi * float(ds.RescaleSlope) + float(
            ds.RescaleIntercept
        )
    return lo, hi


def flatten_frame(ds: Dataset, frame: int) -> Dataset:
    """A copy of an enhanced multi-frame dataset with frame `frame`'s functional group values (its own Pixel Value
    Transformation and Frame VOI LUT, else the shared ones) written as top-level attributes, which pydicom's
    apply_modality_lut / apply_voi_lut read; pydicom 3 does not apply functional groups itself."""
    flat = copy.deepcopy(ds)  # Dataset.copy() shares the elements: deleting from it would delete from `ds`
    for attr in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if attr in flat:
            delattr(flat, attr)
    groups = []
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    if "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame - 1])
    for group in groups:  # the frame's own group last, so it wins
        if "PixelValueTransformationSequence" in group:
            item = group.PixelValueTransformationSequence[0]
            flat.RescaleSlope, flat.RescaleIntercept = item.RescaleSlope, item.RescaleIntercept
        if "FrameVOILUTSequence" in group:
            item = group.FrameVOILUTSequence[0]
            flat.WindowCenter, flat.WindowWidth = item.WindowCenter, item.WindowWidth
            if "VOILUTFunction" in item:
                flat.VOILUTFunction = item.VOILUTFunction
    return flat


def grey_reference(values: np.ndarray, ds: Dataset, window_index: int) -> np.ndarray:
    """Modality values to 8-bit grey by pydicom's apply_voi_lut: a VOI LUT scaled from 0..2^bits-1, a window from
    pydicom's output range, or min-max without either; MONOCHROME1 inverted."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[window_index - 1].LUTDescriptor[2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "a VOI LUT on a float input array": intended, as our pipeline does
            fraction = apply_voi_lut(values, ds, index=window_index - 1).astype(np.float64) / (2.0**bits - 1)
    elif "WindowCenter" in ds:
        lo, hi = y_range(ds)
        fraction = (apply_voi_lut(values, ds, index=window_index - 1) - lo) / (hi - lo)
    else:
        fraction = (values - values.min()) / max(values.max() - values.min(), 1e-300)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        fraction = 1.0 - fraction
    return np.clip(np.round(fraction * 255.0), 0, 255).astype(np.uint8)


def reference(ds: Dataset, frame: int = 1, window_index: int = 1, window: tuple[float, float] | None = None) -> dict:
    """8-bit grey (or RGB) pixels by pydicom's pipeline, for frame `frame` (1-based)."""
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1)) > 1:
        arr = arr[frame - 1]
        ds = flatten_frame(ds, frame)
    if ds.SamplesPerPixel == 3:
        rgb = arr.astype(np.uint8)
        return {"width": int(ds.Columns), "height": int(ds.Rows), "channels": 3, "pixels": rgb.ravel().tolist()}
    if window is not None:
        ds = copy.deepcopy(ds)
        ds.WindowCenter, ds.WindowWidth = window
        for attr in ("VOILUTFunction", "VOILUTSequence"):
            if attr in ds:
                delattr(ds, attr)
    values = apply_modality_lut(arr, ds)
    if not ds.get("VOILUTSequence"):
        values = values.astype(np.float64)
    grey = grey_reference(values, ds, window_index)
    return {"width": int(ds.Columns), "height": int(ds.Rows), "channels": 1, "pixels": grey.ravel().tolist()}


def lut_item(descriptor: list[int], data: np.ndarray, signed_first: bool = False, vr: str = "OW") -> Dataset:
    """One LUT Sequence item. The descriptor is SS when the first mapped value is negative (signed pixels), US
    otherwise; the data OW (bytes) or US (a list)."""
    item = Dataset()
    item.add_new(0x00283002, "SS" if signed_first else "US", descriptor)
    if vr == "OW":
        item.add_new(0x00283006, "OW", data.astype("<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", [int(v) for v in data])
    return item


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
    mr_sigmoid = copy.deepcopy(mr)
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
    cases += lut_cases(out) + enhanced_cases(out) + grey16_cases(out) + wheel_cases(out)
    return cases


def add_case(out: Path, cases: list[dict[str, Any]], name: str, ds: Dataset, args: list[str], ref: dict) -> None:
    """Saves `ds` as NAME.dcm with its reference NAME.json and lists the case."""
    path = out / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    (out / f"{name}.json").write_text(json.dumps(ref))
    cases.append({"name": name, "file": path.name, "args": args, "reference": f"{name}.json"})


def lut_cases(out: Path) -> list[dict[str, Any]]:
    """VOI LUT Sequence (winning over the window; several items; --window overrides it), Modality LUT Sequence
    (instead of rescale; values below the first mapped one and past the last entry), and both together."""
    cases: list[dict[str, Any]] = []
    dx = base(DX_IMAGE, "DX")
    set_pixels(dx, ramp(50, 64, 0, 4095, 11).astype(np.uint16), bits_stored=12)
    dx.WindowCenter, dx.WindowWidth = 2048, 4096
    gamma = np.round(65535 * (np.arange(3000) / 2999) ** 0.6)
    # The second table has 10-bit entries, not 8: pydicom 3.0.2's apply_voi computes the index in the table's
    # dtype, so with an 8-bit table any input 256 or more past the first mapped value wraps (300 reads entry 44);
    # medgemma follows PS3.3 C.11.2.1.1 there (a unit test in src/dicom/lut.rs pins it).
    falling = 1023 - np.arange(1024)
    dx.VOILUTSequence = Sequence([lut_item([3000, 500, 16], gamma), lut_item([1024, 1000, 10], falling, vr="US")])
    without_lut = copy.deepcopy(dx)
    del without_lut.VOILUTSequence
    assert reference(dx) != reference(without_lut), "the VOI LUT changes nothing"
    add_case(out, cases, "dx_voi_lut", dx, [], reference(dx))
    add_case(out, cases, "dx_voi_lut_index_2", dx, ["--window-index", "2"], reference(dx, window_index=2))
    add_case(out, cases, "dx_voi_lut_overridden", dx, ["--window", "1000,500"], reference(dx, window=(1000, 500)))

    signed = base(CT_IMAGE, "CT")
    set_pixels(signed, ramp(40, 40, -1024, 1500, 12).astype(np.int16))
    signed.VOILUTSequence = Sequence([lut_item([2000, -500, 12], np.round(4095 * np.sqrt(np.arange(2000) / 1999)), True)])
    add_case(out, cases, "ct_signed_voi_lut", signed, [], reference(signed))

    mr = base(MR_IMAGE, "MR")
    set_pixels(mr, ramp(48, 48, 0, 4095, 13).astype(np.uint16), bits_stored=12)
    mr.ModalityLUTSequence = Sequence([lut_item([3000, 100, 16], np.arange(3000) * 7 + 300)])
    mr.ModalityLUTSequence[0].ModalityLUTType = "US"
    mr.WindowCenter, mr.WindowWidth = 8000, 12000
    without_lut = copy.deepcopy(mr)
    del without_lut.ModalityLUTSequence
    assert reference(mr) != reference(without_lut), "the Modality LUT changes nothing"
    add_case(out, cases, "mr_modality_lut", mr, [], reference(mr))

    ot = base(SC_IMAGE, "OT")
    set_pixels(ot, ramp(32, 32, 0, 255, 14).astype(np.uint8))
    ot.ModalityLUTSequence = Sequence([lut_item([200, 20, 8], 255 - np.arange(200), vr="US")])
    ot.ModalityLUTSequence[0].ModalityLUTType = "US"
    add_case(out, cases, "ot_modality_lut_min_max", ot, [], reference(ot))

    both = base(CR_IMAGE, "CR")
    set_pixels(both, ramp(30, 40, 0, 4095, 15).astype(np.uint16), "MONOCHROME1", bits_stored=12)
    both.ModalityLUTSequence = Sequence([lut_item([4096, 0, 16], np.arange(4096) * 2)])
    both.ModalityLUTSequence[0].ModalityLUTType = "US"
    both.VOILUTSequence = Sequence([lut_item([6000, 1000, 12], np.round(np.arange(6000) * 4095 / 5999))])
    add_case(out, cases, "cr_modality_and_voi_lut", both, [], reference(both))
    return cases


def functional_group(rescale: tuple[str, str] | None, window: tuple[float, float] | None, function: str = "") -> Dataset:
    """One functional group item with a Pixel Value Transformation and/or a Frame VOI LUT macro."""
    group = Dataset()
    if rescale is not None:
        item = Dataset()
        item.RescaleSlope, item.RescaleIntercept = rescale
        item.RescaleType = "HU"
        group.PixelValueTransformationSequence = Sequence([item])
    if window is not None:
        item = Dataset()
        item.WindowCenter, item.WindowWidth = window
        if function:
            item.VOILUTFunction = function
        group.FrameVOILUTSequence = Sequence([item])
    return group


def enhanced_cases(out: Path) -> list[dict[str, Any]]:
    """An enhanced CT of 3 frames: a shared rescale and window; frame 2 has its own window (LINEAR_EXACT), frame 3
    its own rescale. The reference reads the groups in this script (pydicom 3 does not apply them)."""
    cases: list[dict[str, Any]] = []
    ct = base(ENHANCED_CT_IMAGE, "CT")
    frames = np.stack([ramp(32, 40, 0, 3000, 20 + k) for k in range(3)]).astype(np.uint16)
    set_pixels(ct, frames, bits_stored=12)
    ct.SharedFunctionalGroupsSequence = Sequence([functional_group(("1", "-1024"), (40, 400))])
    ct.PerFrameFunctionalGroupsSequence = Sequence(
        [
            functional_group(None, None),
            functional_group(None, (-600, 1500), "LINEAR_EXACT"),
            functional_group(("2", "-2048"), None),
        ]
    )
    for frame in (1, 2, 3):
        args = [] if frame == 1 else ["--frame", str(frame)]
        ref = reference(ct, frame=frame)
        # The groups must matter: without them the frame would be min-max scaled.
        plain = copy.deepcopy(ct)
        del plain.SharedFunctionalGroupsSequence, plain.PerFrameFunctionalGroupsSequence
        assert ref != reference(plain, frame=frame), f"frame {frame}: the functional groups change nothing"
        add_case(out, cases, f"enhanced_ct_frame_{frame}", ct, args, ref)
    assert "PerFrameFunctionalGroupsSequence" in dcmread(out / "enhanced_ct_frame_3.dcm")
    return cases


def png16(path: Path, grey: np.ndarray) -> None:
    """A 16-bit greyscale PNG (colour type 0), written by hand: no imaging library is needed."""
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in grey)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", grey.shape[1], grey.shape[0], 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tiff16(path: Path, grey: np.ndarray) -> None:
    """A 16-bit greyscale baseline TIFF (little endian, one uncompressed strip, BlackIsZero), written by hand."""
    pixels = grey.astype("<u2").tobytes()
    rows, cols = grey.shape
    entries = [(256, 4, cols), (257, 4, rows), (258, 3, 16), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1)]
    entries += [(278, 4, rows), (279, 4, len(pixels))]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8 + len(pixels)) + pixels + ifd + b"\x00\x00\x00\x00")


def grey16_cases(out: Path) -> list[dict[str, Any]]:
    """16-bit greyscale PNG and TIFF: `--window C,W` on the raw values (LINEAR, as pydicom windows a 16-bit
    unsigned DICOM), or min-max without one."""
    cases: list[dict[str, Any]] = []
    grey = ramp(30, 40, 0, 4095, 30).astype(np.uint16)
    for kind, write in (("png", png16), ("tiff", tiff16)):
        path = out / f"grey16.{kind}"
        write(path, grey)
        for window in (None, (1200.0, 800.0)):
            ds = Dataset()
            ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME2", 16, 0
            if window is not None:
                ds.WindowCenter, ds.WindowWidth = window
            name = f"grey16_{kind}" + ("_window" if window else "_min_max")
            pixels = grey_reference(grey.astype(np.float64), ds, 1)
            ref = {"width": 40, "height": 30, "channels": 1, "pixels": pixels.ravel().tolist()}
            (out / f"{name}.json").write_text(json.dumps(ref))
            args = ["--window", f"{window[0]},{window[1]}"] if window else []
            cases.append({"name": name, "file": path.name, "args": args, "reference": f"{name}.json"})
    return cases


def wheel_cases(out: Path) -> list[dict[str, Any]]:
    """pydicom's own test files (shipped inside the installed wheel, nothing downloaded): CT_small (rescale, no
    window: min-max), MR_small and its RLE, implicit VR and big endian copies (window 600/1600), a deflated file, a 1-bit
    segmentation, an MR with a window of 450/200 (and an overlay, which is not drawn),
    the 15-frame 32-bit RT dose, RLE RGB, uncompressed YBR_FULL_422, a copy of CT_small without its preamble, and
    a JPEG baseline YCbCr 4:2:2 file.

    The JPEG case: SC_rgb_dcmtk_+eb+cy+n2.dcm's reference is SC_ybr_full_422_uncompressed.dcm, the same picture
    decoded by GDCM (libjpeg) and stored uncompressed, with pydicom's convert_color_space to RGB. pydicom itself
    has no JPEG decoder here (no Pillow, no pylibjpeg). The two decoders differ in the inverse DCT and in how they
    upsample the half-width chroma (libjpeg's output was stored subsampled and pydicom repeats each chroma sample),
    yet measured they differ by at most 1 grey level here, so the case is held to the same tolerance as the rest.
    """
    cases: list[dict[str, Any]] = []

    def add_wheel(name: str, test_file: str, args: list[str], ref: dict) -> None:
        data = Path(get_testdata_file(test_file)).read_bytes()
        path = out / f"{name}.dcm"
        path.write_bytes(data)
        (out / f"{name}.json").write_text(json.dumps(ref))
        cases.append({"name": name, "file": path.name, "args": args, "reference": f"{name}.json"})

    def ref_of(test_file: str, **kwargs: Any) -> dict:
        return reference(dcmread(get_testdata_file(test_file)), **kwargs)

    add_wheel("pydicom_ct_small", "CT_small.dcm", [], ref_of("CT_small.dcm"))
    for variant in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"):
        name = "pydicom_" + variant.removesuffix(".dcm").lower()
        add_wheel(name, variant, [], ref_of(variant))
    add_wheel("pydicom_deflated", "image_dfl.dcm", [], ref_of("image_dfl.dcm"))
    add_wheel("pydicom_rtdose_frame_7", "rtdose.dcm", ["--frame", "7"], ref_of("rtdose.dcm", frame=7))
    add_wheel("pydicom_rgb_rle", "SC_rgb_rle.dcm", [], ref_of("SC_rgb_rle.dcm"))
    ybr = dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    rgb = convert_color_space(pixel_array(ybr, raw=True), "YBR_FULL", "RGB")
    ybr_ref = {"width": 100, "height": 100, "channels": 3, "pixels": rgb.ravel().tolist()}
    add_wheel("pydicom_ybr_full_422", "SC_ybr_full_422_uncompressed.dcm", [], ybr_ref)
    add_wheel("pydicom_jpeg_baseline_422", "SC_rgb_dcmtk_+eb+cy+n2.dcm", [], ybr_ref)

    add_wheel("pydicom_segmentation_1_bit", "liver_1frame.dcm", [], ref_of("liver_1frame.dcm"))
    add_wheel("pydicom_overlay_mr", "examples_overlay.dcm", [], ref_of("examples_overlay.dcm"))

    no_preamble = Path(get_testdata_file("CT_small.dcm")).read_bytes()[128:]
    (out / "no_preamble.dcm").write_bytes(no_preamble)
    (out / "no_preamble.json").write_text(json.dumps(ref_of("CT_small.dcm")))
    cases.append({"name": "no_preamble", "file": "no_preamble.dcm", "args": [], "reference": "no_preamble.json"})
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

    short_lut = base(DX_IMAGE, "DX")
    set_pixels(short_lut, ramp(16, 16, 0, 4095, 9).astype(np.uint16), bits_stored=12)
    short_lut.VOILUTSequence = Sequence([lut_item([4096, 0, 16], np.arange(100))])
    add("voi_lut_truncated_table", short_lut, ["VOI LUT Sequence", "100 LUT Data values", "4096", "truncated"])

    for name, test_file, expect in (
        ("pydicom_mr_truncated", "MR_truncated.dcm", ["(7FE0,0010)", "damaged or truncated"]),
        ("pydicom_palette", "examples_palette.dcm", ["PALETTE COLOR", "not supported"]),
        ("pydicom_jpeg_ls", "MR_small_jpeg_ls_lossless.dcm", ["JPEG-LS", "1.2.840.10008.1.2.4.80", "convert"]),
        ("pydicom_jpeg_12_bit", "JPGExtended.dcm", ["cannot be decoded", "JPEG Extended", "convert"]),
    ):
        (out / f"{name}.dcm").write_bytes(Path(get_testdata_file(test_file)).read_bytes())
        cases.append({"name": name, "file": f"{name}.dcm", "expect": expect})

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
