#!/usr/bin/env python3
"""Writes small CT and MR series as DICOM folders, and the slices Google's MedGemma 1.5 recipe makes of them, for
tests/dicom_series.rs (issue 10, series).

Owns: the series fixtures (a shuffled 100-slice CT so that the 85-slice rule is used, an MR volume, a folder with
two series, a multi-frame CT, a folder holding one 90-frame MR, a series whose InstanceNumber order disagrees with
its positions) and the bad folders (missing, empty, only subfolders, no DICOM, a text file or a DICOMDIR as the
series, mixed sizes or modalities, missing or duplicate InstanceNumber, colour, truncated, no pixel data,
unreadable, an unsupported modality, a multi-frame file among slices), plus `manifest.json`. For each good case the
reference is a numpy re-implementation of Google's CT notebook (sort by InstanceNumber, keep
`round(i / 85 * (n - 1))` for i = 1..85, Hounsfield units, the three windows in float32, `np.round`, stack) or, for
MR, one min-max over the whole volume; it is written as raw RGB bytes (slice after slice, row by row), with the
selected InstanceNumbers (frame numbers for a multi-frame file) and each file's InstanceNumber in the manifest.
Must not: run medgemma or judge its output (the Rust test does); write outside the output folder; hold any real
patient's data (the names and IDs are made up, and the test checks they are never printed).

Usage: make_dicom_series_fixtures.py OUT_DIR   (needs pydicom >= 3 and numpy; deterministic)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dicom_fixtures import base, set_pixels  # noqa: E402  (the shared dataset helpers)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
DICOMDIR = "1.2.840.10008.1.3.10"
ROOT_UID = "1.2.826.0.1.3680043.10.1077"  # a made-up UID root for these fixtures
CT_WINDOWS = [(-1024, 1024), (-135, 215), (0, 80)]
MAX_SLICES = 85
AXIAL = [1, 0, 0, 0, 1, 0]


def uid(*parts: int) -> str:
    return ".".join([ROOT_UID, *map(str, parts)])


def instance(sop_class: str, modality: str, series: str, number: int | None, z: float, key: int) -> Dataset:
    """One slice's dataset with deterministic UIDs, its place in the series and the made-up patient."""
    ds = base(sop_class, modality)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid(9, key)
    ds.SeriesInstanceUID = series
    ds.StudyInstanceUID = uid(1)
    ds.StudyDate = "20200102"
    if number is not None:
        ds.InstanceNumber = number
    ds.ImagePositionPatient = [-12.0, -12.0, z]
    ds.ImageOrientationPatient = AXIAL
    return ds


def ct_hu(rows: int, cols: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A CT slice in HU over every window (air to bone), with values whose windowing ends in exact halves."""
    y, x = np.mgrid[0:rows, 0:cols]
    hu = -1100 + (x * cols + y) * 2600 // (rows * cols) + 7 * k
    hu = hu + rng.integers(-40, 40, (rows, cols))
    hu.flat[:4] = [0, -100, -30, 40]  # 127.5 (R), 25.5 and 76.5 (G), 127.5 (B): half to even matters
    return hu.astype(np.int16)


def write(path: Path, ds: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def ct_slice(series: str, number: int | None, z: float, key: int, hu: np.ndarray) -> Dataset:
    ds = instance(CT_IMAGE, "CT", series, number, z, key)
    set_pixels(ds, (hu + 1024).astype(np.int16))
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    return ds


# --- The reference: Google's notebook, re-implemented with numpy ---------------------------------------------


def norm(ct_slice: np.ndarray, hu_min: int, hu_max: int) -> np.ndarray:
    """The notebook's window: clip, then in float32 minus the low end, over the width, times 255."""
    clipped = np.clip(ct_slice, hu_min, hu_max).astype(np.float32)
    clipped -= hu_min
    clipped /= hu_max - hu_min
    clipped *= 255.0
    return clipped


def select(n: int, max_slices: int) -> list[int]:
    """The notebook's choice: all, or round(i / max * (n - 1)) for i = 1..max (Python's round: half to even)."""
    if n <= max_slices:
        return list(range(n))
    return [round(i / max_slices * (n - 1)) for i in range(1, max_slices + 1)]


def read_series(folder: Path, series_uid: str | None) -> list[Dataset]:
    """Every DICOM file of the folder (not a DICOMDIR) of the one series, sorted by InstanceNumber."""
    datasets = []
    for path in sorted(folder.iterdir()):
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            continue
        if ds.file_meta.MediaStorageSOPClassUID == DICOMDIR:
            continue
        if series_uid is None or ds.SeriesInstanceUID == series_uid:
            datasets.append(ds)
    return sorted(datasets, key=lambda ds: int(ds.InstanceNumber))


def recipe(volume: list[np.ndarray], modality: str, max_slices: int) -> tuple[list[int], np.ndarray]:
    """The selected indices and their RGB slices (n x rows x cols x 3, uint8) from modality values."""
    chosen = select(len(volume), max_slices)
    if modality == "CT":
        rgb = [np.round(np.stack([norm(volume[i], lo, hi) for lo, hi in CT_WINDOWS], -1), 0) for i in chosen]
    else:
        lo = min(float(v.min()) for v in volume)
        hi = max(float(v.max()) for v in volume)
        rgb = [np.repeat(np.round((volume[i] - lo) / (hi - lo) * 255.0)[..., None], 3, -1) for i in chosen]
    return chosen, np.stack(rgb).astype(np.uint8)


def reference(out: Path, name: str, source: Path, args: list[str], notices: list[str]) -> dict[str, Any]:
    """Reads `source` back with pydicom, applies the recipe, writes NAME.rgb and returns the manifest entry."""
    uid_arg = args[args.index("--series-uid") + 1] if "--series-uid" in args else None
    max_slices = int(args[args.index("--max-slices") + 1]) if "--max-slices" in args else MAX_SLICES
    datasets = read_series(source, uid_arg) if source.is_dir() else []
    if len(datasets) == 1:  # a folder whose series is one file: its frames are the slices
        source_file = Path(datasets[0].filename)
        datasets = []
    else:
        source_file = source
    if datasets:
        volume = [apply_modality_lut(ds.pixel_array, ds).astype(np.float64) for ds in datasets]
        numbers = [int(ds.InstanceNumber) for ds in datasets]
        modality = datasets[0].Modality
        files = {Path(ds.filename).name: int(ds.InstanceNumber) for ds in datasets}
    else:
        ds = pydicom.dcmread(source_file)
        volume = list(apply_modality_lut(ds.pixel_array, ds).astype(np.float64))
        numbers = list(range(1, len(volume) + 1))
        modality = ds.Modality
        files = {}
    chosen, rgb = recipe(volume, modality, max_slices)
    (out / f"{name}.rgb").write_bytes(rgb.tobytes())
    return {
        "name": name,
        "source": source.name,
        "args": args,
        "modality": modality,
        "n_instances": len(volume),
        "selected": [numbers[i] for i in chosen],
        "instance_numbers": files,
        "width": int(rgb.shape[2]),
        "height": int(rgb.shape[1]),
        "reference": f"{name}.rgb",
        "notices": notices,
    }


# --- The cases --------------------------------------------------------------------------------------------


def good_cases(out: Path) -> list[dict[str, Any]]:
    rng = np.random.default_rng(10)
    cases = []

    # 100 CT slices, file names not in InstanceNumber order, and one file that is not DICOM.
    folder = out / "ct_shuffled"
    names = rng.permutation(100)
    for k in range(100):
        ds = ct_slice(uid(2), k + 1, 2.5 * k, k, ct_hu(24, 24, k, rng))
        ds.SeriesDescription = "CT fixture"
        write(folder / f"im{names[k]:03d}", ds)
    (folder / "notes.txt").write_text("not DICOM\n")
    cases.append(reference(out, "ct_shuffled", folder, [], ["skipped 1 file(s) that are not DICOM"]))

    # 10 MR slices, 20 wide x 16 high, of varied brightness; the volume's extremes are in slices that
    # --max-slices 4 leaves out (indices 0 and 3), so a per-slice min-max would differ.
    folder = out / "mr"
    for k in range(10):
        ds = instance(MR_IMAGE, "MR", uid(3), k + 1, 4.0 * k, 100 + k)
        y, x = np.mgrid[0:16, 0:20]
        values = 200 + 30 * k + (x * 37 + y * 11) % 400 + rng.integers(0, 50, (16, 20))
        values.flat[0] = {0: 5, 3: 2000}.get(k, values.flat[0])
        set_pixels(ds, values.astype(np.uint16))
        write(folder / f"mr{k:02d}.dcm", ds)
    dicomdir = base(DICOMDIR, "OT")
    dicomdir.file_meta.MediaStorageSOPInstanceUID = dicomdir.SOPInstanceUID = uid(9, 99)
    write(folder / "DICOMDIR", dicomdir)
    cases.append(
        reference(
            out, "mr_max_4", folder, ["--max-slices", "4"], ["skipped 1 DICOMDIR", "--max-slices 4"]
        )
    )

    # Two series in one folder; --series-uid chooses.
    folder = out / "two_series"
    for k in range(3):
        write(folder / f"a{k}.dcm", ct_slice(uid(4), k + 1, 3.0 * k, 200 + k, ct_hu(16, 16, k, rng)))
    for k in range(2):
        ds = ct_slice(uid(5), k + 1, 3.0 * k, 210 + k, ct_hu(16, 16, 50 + k, rng))
        ds.SeriesDescription = "second"
        write(folder / f"b{k}.dcm", ds)
    cases.append(reference(out, "two_series_b", folder, ["--series-uid", uid(5)], []))

    # InstanceNumber order disagrees with the positions along the normal: a notice, not an error.
    folder = out / "disagree"
    for k, z in enumerate([0.0, 5.0, 2.5, 7.5, 10.0]):
        write(folder / f"s{k}.dcm", ct_slice(uid(6), k + 1, z, 300 + k, ct_hu(16, 16, k, rng)))
    cases.append(reference(out, "disagree", folder, [], ["disagrees with ImagePositionPatient"]))

    # A multi-frame CT: its frames are the slices.
    ds = instance(CT_IMAGE, "CT", uid(7), 1, 0.0, 400)
    frames = np.stack([ct_hu(16, 16, k, rng) for k in range(6)])
    set_pixels(ds, (frames + 1024).astype(np.int16))
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    write(out / "ct_multiframe.dcm", ds)
    cases.append(reference(out, "ct_multiframe", out / "ct_multiframe.dcm", [], []))

    # A folder holding one multi-frame MR (its frames are the slices), 90 frames so that 85 are chosen.
    ds = instance(MR_IMAGE, "MR", uid(8), 1, 0.0, 401)
    frames = rng.integers(0, 3000, (90, 12, 12)) + np.arange(90)[:, None, None] * 10
    set_pixels(ds, frames.astype(np.uint16))
    write(out / "mr_multiframe_folder" / "volume.dcm", ds)
    cases.append(reference(out, "mr_multiframe_folder", out / "mr_multiframe_folder", [], []))
    return cases


def bad_cases(out: Path) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    cases: list[dict[str, Any]] = []

    def add(name: str, expect: list[str], args: list[str] | None = None, names: str | None = None) -> None:
        """`names`: what the error must name (a file in the folder), besides the folder itself."""
        cases.append({"name": name, "source": name, "args": args or [], "expect": expect, "names": names})

    def ct(k: int, number: int | None = None, rows: int = 16, cols: int = 16) -> Dataset:
        ds = ct_slice(uid(20, len(cases)), k + 1 if number is None else number, 2.0 * k, 500 + 10 * len(cases) + k,
                      ct_hu(rows, cols, k, rng))
        return ds

    (out / "empty").mkdir()
    add("empty", ["the folder is empty"])

    (out / "no_dicom").mkdir()
    (out / "no_dicom" / "a.txt").write_text("hello\n")
    (out / "no_dicom" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    add("no_dicom", ["none of its 2 file(s) is a DICOM file"])

    write(out / "mixed_sizes" / "s0.dcm", ct(0))
    write(out / "mixed_sizes" / "s1.dcm", ct(1, rows=16, cols=20))
    add("mixed_sizes", ["slices differ in size", "16x16", "20x16"], names="s1.dcm")

    write(out / "two_series_unchosen" / "a.dcm", ct_slice(uid(21), 1, 0.0, 600, ct_hu(16, 16, 0, rng)))
    b = ct_slice(uid(22), 1, 0.0, 601, ct_hu(16, 16, 1, rng))
    b.SeriesDescription = "second"
    write(out / "two_series_unchosen" / "b.dcm", b)
    add("two_series_unchosen", ["2 series", "--series-uid", uid(21), uid(22), "second", "1 image(s)"])
    cases.append({"name": "two_series_wrong_uid", "source": "two_series_unchosen", "args": ["--series-uid", "1.2.3"],
                  "expect": ["--series-uid 1.2.3 matches none", uid(21), uid(22)], "names": None})

    write(out / "no_instance_number" / "s0.dcm", ct(0))
    ds = ct(1)
    del ds.InstanceNumber
    write(out / "no_instance_number" / "s1.dcm", ds)
    add("no_instance_number", ["no InstanceNumber"], names="s1.dcm")

    write(out / "duplicate_number" / "s0.dcm", ct(0, number=7))
    write(out / "duplicate_number" / "s1.dcm", ct(1, number=7))
    add("duplicate_number", ["both have InstanceNumber 7", "s0.dcm"], names="s1.dcm")

    for k in range(2):
        ds = instance(CT_IMAGE, "CT", uid(23), k + 1, k, 700 + k)
        set_pixels(ds, np.full((8, 8, 3), 100 + k, np.uint8), "RGB")
        write(out / "colour" / f"c{k}.dcm", ds)
    add("colour", ["RGB", "MONOCHROME2"], names="c0.dcm")

    for k in range(3):
        ds = ct(k)
        if k == 1:
            ds.PixelData = ds.PixelData[:100]
        write(out / "truncated" / f"s{k}.dcm", ds)
    add("truncated", ["truncated", "100 bytes", "512"], names="s1.dcm")

    write(out / "no_pixel_data" / "s0.dcm", ct(0))
    ds = ct(1)
    del ds.PixelData
    write(out / "no_pixel_data" / "s1.dcm", ds)
    add("no_pixel_data", ["no pixel data"], names="s1.dcm")

    write(out / "unreadable" / "s0.dcm", ct(0))
    (out / "unreadable" / "s1.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    add("unreadable", ["damaged or truncated"], names="s1.dcm")

    for k in range(2):
        ds = instance(PET_IMAGE, "PT", uid(24), k + 1, k, 800 + k)
        set_pixels(ds, np.full((8, 8), 100 + k, np.uint16))
        write(out / "pet" / f"p{k}.dcm", ds)
    add("pet", ["modality PT", "CT and MR only"])

    write(out / "multiframe_in_folder" / "s0.dcm", ct(0))
    ds = instance(CT_IMAGE, "CT", uid(20, len(cases)), 2, 2.0, 900)
    set_pixels(ds, np.zeros((3, 16, 16), np.int16))
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    write(out / "multiframe_in_folder" / "s1.dcm", ds)
    add("multiframe_in_folder", ["multi-frame file (3 frames)"], names="s1.dcm")

    for k, sub in enumerate(["series_a", "series_b"]):
        write(out / "study" / sub / "s0.dcm", ct_slice(uid(25, k), 1, 0.0, 950 + k, ct_hu(16, 16, k, rng)))
    add("study", ["only folders", "study/series_a", "study/series_b", "give the folder of one series"])

    write(out / "mixed_modalities" / "s0.dcm", ct_slice(uid(26), 1, 0.0, 960, ct_hu(16, 16, 0, rng)))
    ds = instance(MR_IMAGE, "MR", uid(26), 2, 1.0, 961)
    set_pixels(ds, np.full((16, 16), 300, np.uint16))
    write(out / "mixed_modalities" / "s1.dcm", ds)
    add("mixed_modalities", ["modalities differ", "is CT", "is MR"], names="s1.dcm")

    add("missing", ["not found"])
    dicomdir = base(DICOMDIR, "OT")
    dicomdir.file_meta.MediaStorageSOPInstanceUID = dicomdir.SOPInstanceUID = uid(9, 98)
    write(out / "DICOMDIR", dicomdir)
    add("DICOMDIR", ["it is a DICOMDIR", "give the folder of one series"])
    (out / "notes.txt").write_text("not DICOM\n")
    add("notes.txt", ["not a DICOM file"])
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write into (created if missing)")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "good": good_cases(out),
        "bad": bad_cases(out),
        "secrets": ["Secret", "PID-0042", "19010203", "20200102"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
