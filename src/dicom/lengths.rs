//! A walk over a DICOM file's element headers that refuses any length larger than what is left of the file,
//! before dicom-rs reads it: dicom-parser 0.10.1 reserves and zero-fills each element's declared length up front,
//! so a 500-byte file declaring a 4 GB element made it allocate and clear gigabytes (found by the `dicom` fuzz
//! target: up to a second per input).
//!
//! The walk follows the token stream: element headers (explicit VR with 2- or 4-byte lengths, or implicit VR),
//! items and delimiters; sequences and items are entered (their contents are more headers), every other value is
//! stepped over, and the fragments of encapsulated pixel data are stepped over too.
//!
//! Owns: that bound. Must not: judge the values (dicom-rs does), or refuse what it cannot read: an unknown VR, a
//! deflated or big-endian data set ends the walk and dicom-rs decides.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = u32::MAX;

/// Checks `body` (starting at "DICM", or at the first element of a file without one).
pub fn check(body: &[u8]) -> Result<(), String> {
    let mut at = if body.starts_with(b"DICM") { 4 } else { 0 };
    let mut explicit = true;
    let mut in_meta = true;
    let mut syntax = String::new();
    let mut in_pixel_data = false;
    while at + 8 <= body.len() {
        let group = u16::from_le_bytes([body[at], body[at + 1]]);
        let element = u16::from_le_bytes([body[at + 2], body[at + 3]]);
        if in_meta && group != 0x0002 {
            in_meta = false;
            match syntax.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.2" => return Ok(()),
                _ => {}
            }
        }
        let left = |start: usize| body.len() - start;
        let too_long = |len: u32, start: usize| {
            format!(
                "its element ({group:04X},{element:04X}) claims {len} bytes, more than the {} left in the file; the \
                 file is damaged or truncated",
                left(start)
            )
        };
        if group == 0xFFFE {
            let len = u32::from_le_bytes([body[at + 4], body[at + 5], body[at + 6], body[at + 7]]);
            at += 8;
            if len != UNDEFINED && len as usize > left(at) {
                return Err(too_long(len, at));
            }
            match element {
                0xE000 if in_pixel_data && len != UNDEFINED => at += len as usize,
                0xE000 | 0xE00D => {}
                0xE0DD => in_pixel_data = false,
                // Not an item or a delimiter: dicom-rs reads it as a value of that length.
                _ if len != UNDEFINED => at += len as usize,
                _ => {}
            }
            continue;
        }
        let vr_bytes = [body[at + 4], body[at + 5]];
        let (vr, len, header) = if explicit || in_meta {
            // An unknown VR is read as UN (a 4-byte length), as dicom-rs reads it.
            let vr = VR::from_binary(vr_bytes).unwrap_or(VR::UN);
            if matches!(
                vr,
                VR::OB
                    | VR::OD
                    | VR::OF
                    | VR::OL
                    | VR::OV
                    | VR::OW
                    | VR::SQ
                    | VR::UC
                    | VR::UN
                    | VR::UR
                    | VR::UT
                    | VR::SV
                    | VR::UV
            ) {
                if at + 12 > body.len() {
                    return Ok(());
                }
                let len = u32::from_le_bytes([body[at + 8], body[at + 9], body[at + 10], body[at + 11]]);
                (vr, len, 12)
            } else {
                (vr, u32::from(u16::from_le_bytes([body[at + 6], body[at + 7]])), 8)
            }
        } else {
            let vr = StandardDataDictionary
                .by_tag(Tag(group, element))
                .map_or(VR::UN, |entry| entry.vr().relaxed());
            (
                vr,
                u32::from_le_bytes([body[at + 4], body[at + 5], body[at + 6], body[at + 7]]),
                8,
            )
        };
        at += header;
        if len == UNDEFINED {
            in_pixel_data |= (group, element) == (0x7FE0, 0x0010);
            continue;
        }
        if len as usize > left(at) {
            return Err(too_long(len, at));
        }
        if (group, element) == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&body[at..at + len as usize]).into_owned();
        }
        if vr != VR::SQ {
            at += len as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8], long: bool) -> Vec<u8> {
        let mut out = [tag.0.to_le_bytes(), tag.1.to_le_bytes()].concat();
        out.extend(vr);
        if long {
            out.extend([0, 0]);
            out.extend((value.len() as u32).to_le_bytes());
        } else {
            out.extend((value.len() as u16).to_le_bytes());
        }
        out.extend(value);
        out
    }

    #[test]
    fn a_length_past_the_end_is_refused_anywhere() {
        let mut file = b"DICM".to_vec();
        file.extend(explicit((2, 0x10), b"UI", b"1.2.840.10008.1.2.1\0", false));
        file.extend(explicit((0x10, 0x10), b"PN", b"A^B ", false));
        assert_eq!(check(&file), Ok(()));
        let mut huge = file.clone();
        huge.extend([0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF]);
        let e = check(&huge).unwrap_err();
        assert!(
            e.contains("(7FE0,0010) claims 4294967280 bytes, more than the 0 left"),
            "{e}"
        );
        // Inside a sequence of undefined length, inside an item.
        let mut nested = file.clone();
        nested.extend([0x28, 0x00, 0x10, 0x30, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        nested.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        nested.extend([0x28, 0x00, 0x06, 0x30, b'O', b'W', 0, 0, 0x00, 0x00, 0x00, 0x40]);
        assert!(check(&nested)
            .unwrap_err()
            .contains("(0028,3006) claims 1073741824 bytes"));
    }

    #[test]
    fn implicit_vr_and_pixel_fragments() {
        let mut file = b"DICM".to_vec();
        file.extend(explicit((2, 0x10), b"UI", b"1.2.840.10008.1.2\0", false));
        file.extend([0x10, 0x00, 0x10, 0x00, 4, 0, 0, 0]);
        file.extend(b"A^B ");
        assert_eq!(check(&file), Ok(()));
        let mut fragments = file.clone();
        fragments.extend([0xE0, 0x7F, 0x10, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]);
        fragments.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        fragments.extend([0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        fragments.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check(&fragments), Ok(()));
        file.extend([0x10, 0x00, 0x20, 0x00, 0, 0, 0, 0x10]);
        assert!(check(&file).unwrap_err().contains("(0010,0020) claims 268435456 bytes"));
    }
}
