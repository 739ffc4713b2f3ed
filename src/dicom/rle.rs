//! A check of RLE Lossless pixel data (PS3.5 Annex G) before dicom-rs decodes it: dicom-transfer-syntax-registry
//! 0.10.1 panics on a fragment shorter than its 64-byte header, allocates whatever segment count the header
//! claims, and indexes past a segment that decodes to fewer bytes than the frame needs (found by the `dicom`
//! fuzz target). After this check none of that can happen.
//!
//! Owns: reading the RLE header and counting what each PackBits segment decodes to. Must not: decode pixels
//! (dicom-rs does) or print.

/// Checks the fragment of one frame: a 64-byte header of at most 15 segments, `segments` of them as the
/// image needs (samples x bytes per sample), in order inside the fragment, each decoding to at least `pixels`
/// bytes without running past its end.
pub fn check_fragment(fragment: &[u8], segments: usize, pixels: usize) -> Result<(), String> {
    if fragment.len() < 64 {
        return Err(format!(
            "its RLE frame is {} bytes, shorter than the 64-byte RLE header",
            fragment.len()
        ));
    }
    let word = |i: usize| u32::from_le_bytes([fragment[i], fragment[i + 1], fragment[i + 2], fragment[i + 3]]);
    let count = word(0) as usize;
    if count != segments {
        return Err(format!(
            "its RLE header names {count} segments where the image needs {segments} (samples x bytes per sample)"
        ));
    }
    let mut offsets: Vec<usize> = (1..=count).map(|k| word(4 * k) as usize).collect();
    offsets.push(fragment.len());
    for k in 0..count {
        let (start, end) = (offsets[k], offsets[k + 1]);
        if start < 64 || start > end || end > fragment.len() {
            return Err(format!("its RLE segment {} lies outside its frame", k + 1));
        }
        let decoded = packbits_len(&fragment[start..end], pixels);
        if decoded < pixels {
            return Err(format!(
                "its RLE segment {} decodes to {decoded} bytes where the frame needs {pixels}; the data is truncated",
                k + 1
            ));
        }
    }
    Ok(())
}

/// How many bytes a PackBits segment decodes to (stopping once `enough`), counting only runs whose bytes are
/// all there.
fn packbits_len(segment: &[u8], enough: usize) -> usize {
    let (mut at, mut out) = (0, 0);
    while at < segment.len() && out < enough {
        let n = segment[at] as i8;
        at += 1;
        match n {
            0..=127 => {
                let run = n as usize + 1;
                if at + run > segment.len() {
                    return out;
                }
                at += run;
                out += run;
            }
            -127..=-1 => {
                if at >= segment.len() {
                    return out;
                }
                at += 1;
                out += 1 + n.unsigned_abs() as usize;
            }
            -128 => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(segments: &[&[u8]]) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut body = Vec::new();
        for (k, s) in segments.iter().enumerate() {
            let at = (64 + body.len()) as u32;
            header[4 + 4 * k..8 + 4 * k].copy_from_slice(&at.to_le_bytes());
            body.extend_from_slice(s);
        }
        header.extend(body);
        header
    }

    #[test]
    fn a_whole_frame_passes() {
        // A literal run of 3, then 5 copies of 9: 8 bytes.
        let f = fragment(&[&[2, 1, 2, 3, 0xfc, 9]]);
        assert_eq!(check_fragment(&f, 1, 8), Ok(()));
        assert_eq!(packbits_len(&[2, 1, 2, 3, 0xfc, 9], 100), 8);
        assert_eq!(packbits_len(&[0x80, 0, 7], 100), 1);
    }

    #[test]
    fn short_headers_segments_and_runs_are_refused() {
        assert!(check_fragment(&[1, 0, 0, 0, 64], 1, 4).unwrap_err().contains("64-byte"));
        let f = fragment(&[&[2, 1, 2, 3]]);
        assert!(check_fragment(&f, 2, 3).unwrap_err().contains("needs 2"));
        assert!(check_fragment(&f, 1, 4).unwrap_err().contains("decodes to 3 bytes"));
        let cut = fragment(&[&[5, 1, 2]]);
        assert!(check_fragment(&cut, 1, 1).unwrap_err().contains("decodes to 0 bytes"));
        let mut wild = fragment(&[&[0, 1]]);
        wild[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(check_fragment(&wild, 1, 1).unwrap_err().contains("outside"));
        let mut many = fragment(&[&[0, 1]]);
        many[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_fragment(&many, 1, 1).unwrap_err().contains("4294967295 segments"));
    }
}
