//! Fuzz target `dicom`: the DICOM reader ([`crate::dicom`]): the header checks, the LUTs and functional groups,
//! the pixel pipeline of every photometric interpretation and bit depth it accepts, and `describe`.
//!
//! Owns: a corpus of small VALID DICOM files built here with dicom-object (16-bit CT with rescale and two windows,
//! 8-bit MONOCHROME1 with a VOI LUT Sequence, a Modality LUT Sequence, an enhanced two-frame file with functional
//! groups, planar RGB, uncompressed YBR_FULL_422, 1-bit, 32-bit, RLE), each carrying a patient name, mutated
//! with little-endian length fields. A mutant whose header claims more than 64 Ki pixels is mutated again, so
//! that no input decodes megapixels. Checks: no panic; the patient name never appears in an error, a notice or
//! `describe`; an accepted frame comes back at the header's columns x rows; `frame_modality_values` gives one
//! value per pixel for grey files.

use std::sync::OnceLock;

use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::{Bytes, Mutator, Rng};
use crate::dicom::{self, DicomOptions};

const PATIENT: &str = "Fuzz^Secret";

fn us(tag: Tag, v: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

fn text(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED))
}

fn lut_item(descriptor: [u16; 3], data: &[u16]) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(descriptor.into_iter().collect()),
        ),
        DataElement::new(
            tags::LUT_DATA,
            VR::OW,
            PrimitiveValue::U16(data.iter().copied().collect()),
        ),
    ])
}

/// One DICOM file: image attributes, `extra` elements and native pixel bytes (or `fragments`, encapsulated).
#[allow(clippy::too_many_arguments)]
fn file(
    ts: &str,
    photometric: &str,
    (rows, cols, frames): (u16, u16, u16),
    (samples, bits, stored): (u16, u16, u16),
    signed: bool,
    extra: Vec<DataElement<InMemDicomObject>>,
    pixels: Vec<u8>,
    encapsulated: bool,
) -> Vec<u8> {
    let mut obj = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::PATIENT_NAME, VR::PN, PATIENT),
        us(tags::SAMPLES_PER_PIXEL, samples),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        us(tags::ROWS, rows),
        us(tags::COLUMNS, cols),
        us(tags::BITS_ALLOCATED, bits),
        us(tags::BITS_STORED, stored),
        us(tags::HIGH_BIT, stored - 1),
        us(tags::PIXEL_REPRESENTATION, u16::from(signed)),
    ]);
    if samples == 3 {
        obj.put(us(tags::PLANAR_CONFIGURATION, u16::from(photometric == "RGB")));
    }
    for element in extra {
        obj.put(element);
    }
    obj.put(if encapsulated {
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PixelFragmentSequence::new(Vec::<u32>::new(), vec![pixels]),
        )
    } else {
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels))
    });
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3.4");
    let mut out = Vec::new();
    obj.with_meta(meta)
        .expect("a valid file meta group")
        .write_all(&mut out)
        .expect("a small DICOM file is written");
    out
}

const EXPLICIT: &str = "1.2.840.10008.1.2.1";
const RLE: &str = "1.2.840.10008.1.2.5";

/// Small valid DICOM files, made once.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let words = |n: usize, f: fn(usize) -> u16| (0..n).flat_map(|i| f(i).to_le_bytes()).collect::<Vec<u8>>();
        let ds = |tag, v: &str| text(tag, VR::DS, v);
        let windows = vec![
            ds(tags::RESCALE_INTERCEPT, "-1024"),
            ds(tags::RESCALE_SLOPE, "1"),
            ds(tags::WINDOW_CENTER, "40\\-600"),
            ds(tags::WINDOW_WIDTH, "400\\1500"),
        ];
        let group = |slope: &str, center: &str| {
            InMemDicomObject::from_element_iter([
                sequence(
                    tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        ds(tags::RESCALE_SLOPE, slope),
                        ds(tags::RESCALE_INTERCEPT, "-10"),
                    ])],
                ),
                sequence(
                    tags::FRAME_VOILUT_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        ds(tags::WINDOW_CENTER, center),
                        ds(tags::WINDOW_WIDTH, "30"),
                        text(tags::VOILUT_FUNCTION, VR::CS, "SIGMOID"),
                    ])],
                ),
            ])
        };
        // RLE: a 64-byte header naming one segment at offset 64, then a literal run of the 16 bytes.
        let mut rle = vec![0u8; 64];
        rle[0] = 1;
        rle[4] = 64;
        rle.push(15);
        rle.extend((0..16u8).map(|i| i * 16));
        vec![
            file(
                EXPLICIT,
                "MONOCHROME2",
                (4, 4, 1),
                (1, 16, 12),
                false,
                windows,
                words(16, |i| (i * 250) as u16),
                false,
            ),
            file(
                EXPLICIT,
                "MONOCHROME1",
                (3, 5, 1),
                (1, 8, 8),
                false,
                vec![sequence(
                    tags::VOILUT_SEQUENCE,
                    vec![lut_item([8, 2, 8], &[0, 9, 40, 80, 120, 160, 200, 255])],
                )],
                (0..16).map(|i| i * 15).collect(),
                false,
            ),
            file(
                EXPLICIT,
                "MONOCHROME2",
                (2, 4, 1),
                (1, 16, 16),
                true,
                vec![sequence(
                    tags::MODALITY_LUT_SEQUENCE,
                    vec![lut_item([4, 65534, 16], &[5, 500, 5000, 50000])],
                )],
                words(8, |i| (i as u16).wrapping_sub(3)),
                false,
            ),
            file(
                EXPLICIT,
                "MONOCHROME2",
                (2, 2, 2),
                (1, 16, 12),
                false,
                vec![
                    sequence(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![group("1", "20")]),
                    sequence(
                        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
                        vec![group("2", "5"), group("0.5", "9")],
                    ),
                ],
                words(8, |i| (i * 7) as u16),
                false,
            ),
            file(
                EXPLICIT,
                "RGB",
                (2, 2, 1),
                (3, 8, 8),
                false,
                vec![],
                (0..12).map(|i| i * 20).collect(),
                false,
            ),
            file(
                EXPLICIT,
                "YBR_FULL_422",
                (2, 4, 1),
                (3, 8, 8),
                false,
                vec![],
                (0..16).map(|i| i * 16).collect(),
                false,
            ),
            file(
                EXPLICIT,
                "MONOCHROME2",
                (8, 8, 1),
                (1, 1, 1),
                false,
                vec![],
                vec![0xa5; 8],
                false,
            ),
            file(
                EXPLICIT,
                "MONOCHROME2",
                (2, 2, 1),
                (1, 32, 32),
                true,
                vec![],
                (0..16).collect(),
                false,
            ),
            file(RLE, "MONOCHROME2", (4, 4, 1), (1, 8, 8), false, vec![], rle, true),
        ]
    })
}

const DICTIONARY: &[&[u8]] = &[
    b"DICM",
    b"\x28\x00\x10\x00", // Rows
    b"\x28\x00\x11\x00", // Columns
    b"\x28\x00\x02\x30", // LUT Descriptor
    b"\x28\x00\x06\x30", // LUT Data
    b"\x28\x00\x10\x30", // VOI LUT Sequence
    b"\x28\x00\x00\x30", // Modality LUT Sequence
    b"\x28\x00\x04\x00", // Photometric Interpretation
    b"\x00\x52\x30\x92", // Per-frame Functional Groups Sequence
    b"\xe0\x7f\x10\x00", // Pixel Data
    b"\xfe\xff\x00\xe0", // Item
    b"\xfe\xff\xdd\xe0", // Sequence Delimitation
    b"\xff\xff\xff\xff", // undefined length
    b"MONOCHROME1",
    b"YBR_FULL_422",
    b"PALETTE COLOR",
    b"1.2.840.10008.1.2.5\0",
    b"1.2.840.10008.1.2.4.50",
    b"SIGMOID ",
    b"-2147483648",
];

/// Whether the header claims an image a fuzz input should not decode (more than 64 Ki pixels per frame).
fn claims_a_large_image(bytes: &[u8]) -> bool {
    dicom::read_header(bytes).is_ok_and(|h| u64::from(h.rows) * u64::from(h.columns) * u64::from(h.samples) > 1 << 16)
}

#[derive(Debug)]
struct Input {
    bytes: Bytes,
    options: DicomOptions,
}

fn generate(rng: &mut Rng) -> Input {
    let corpus = corpus();
    let m = Mutator {
        dictionary: DICTIONARY,
        corpus,
        big_endian: false,
    };
    let mut bytes = rng.choose(corpus).clone();
    for _ in 0..16 {
        let mut mutant = rng.choose(corpus).clone();
        if !rng.one_in(20) {
            m.mutate(rng, &mut mutant);
        }
        if !claims_a_large_image(&mutant) {
            bytes = mutant;
            break;
        }
    }
    let options = DicomOptions {
        window: rng.one_in(4).then(|| dicom::Window {
            center: rng.range(0, 400) as f64 - 200.0,
            width: rng.range(1, 500) as f64,
        }),
        window_index: rng.one_in(4).then(|| rng.range(0, 3)),
        frame: rng.one_in(4).then(|| rng.range(0, 3) as u32),
        verbose: false,
    };
    Input {
        bytes: Bytes(bytes),
        options,
    }
}

fn check(input: &Input) -> String {
    let bytes = &input.bytes.0;
    let no_patient = |text: &str| assert!(!text.contains("Secret"), "a patient name was printed: {text}");
    let header = match dicom::read_header(bytes) {
        Ok(header) => header,
        Err(e) => {
            no_patient(&e.to_string());
            return format!("header refused: {}", super::variant(&e, "-"));
        }
    };
    no_patient(&dicom::describe(&header, &input.options));
    let mut notice = |text: String| no_patient(&text);
    let outcome = match dicom::decode(bytes, &header, &input.options, &mut notice) {
        Ok(image) => {
            assert_eq!((image.width(), image.height()), (header.columns, header.rows));
            "decoded".to_string()
        }
        Err(e) => {
            no_patient(&e.to_string());
            format!("refused: {}", super::variant(&e, "-"))
        }
    };
    if let Ok(values) = dicom::frame_modality_values(bytes, &header, input.options.frame.unwrap_or(1)) {
        assert_eq!(values.len(), header.rows as usize * header.columns as usize);
    }
    outcome
}

#[test]
fn dicom() {
    for bytes in corpus() {
        assert!(!claims_a_large_image(bytes));
        let header = dicom::read_header(bytes).expect("a corpus file is valid");
        dicom::decode(bytes, &header, &DicomOptions::default(), &mut |_| {}).expect("a corpus file decodes");
    }
    super::run("dicom", 10, generate, check);
}
