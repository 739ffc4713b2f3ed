//! Lookup tables of a DICOM file: one item of a Modality LUT Sequence (0028,3000) or a VOI LUT Sequence
//! (0028,3010), read from its LUT Descriptor and LUT Data, and applied as pydicom's `apply_modality_lut` /
//! `apply_voi` do.
//!
//! The LUT Descriptor (0028,3002) holds three numbers: how many entries (0 means 65536), the first value mapped
//! (signed when the pixels are), and the bits of each entry. A value below the first mapped one gets the first
//! entry, one past the last entry gets the last; a value between two integers (after a rescale) is truncated, as
//! numpy's cast to an unsigned index does. The output runs from 0 to 2^bits - 1.
//!
//! Owns: reading and checking one LUT item, and the lookup. Must not: read files, print, or decide which LUT
//! wins (the pipeline in `mod.rs` does).

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// One lookup table: `data[i]` is the output for input `first_mapped + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lut {
    pub first_mapped: i64,
    pub bits: u16,
    pub data: Vec<u16>,
}

impl Lut {
    /// Reads one sequence item. `signed`: the pixels are signed (Pixel Representation 1), so the first mapped
    /// value is a signed 16-bit number even when the file stores the descriptor as US. `what` names the sequence
    /// in errors.
    pub fn from_item(item: &InMemDicomObject, signed: bool, what: &str) -> Result<Lut, String> {
        let descriptor: Vec<i64> = item
            .element_opt(tags::LUT_DESCRIPTOR)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .ok_or_else(|| format!("its {what} has an item without a readable LUT Descriptor"))?;
        let [entries, first, bits] = descriptor[..] else {
            return Err(format!(
                "its {what} has a LUT Descriptor of {} values; it needs 3 (entries, first mapped value, bits)",
                descriptor.len()
            ));
        };
        let entries = match entries {
            0 => 65536,
            1..=65535 => entries as usize,
            _ => {
                return Err(format!(
                    "its {what} claims {entries} LUT entries; at most 65536 are defined"
                ))
            }
        };
        let first_mapped = if signed && first > 32767 { first - 65536 } else { first };
        if !(1..=16).contains(&bits) {
            return Err(format!("its {what} has {bits} bits per LUT entry; 1 to 16 are defined"));
        }
        let values: Vec<i64> = item
            .element_opt(tags::LUT_DATA)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .ok_or_else(|| format!("its {what} has an item without readable LUT Data"))?;
        if values.len() < entries {
            return Err(format!(
                "its {what} has {} LUT Data values where its LUT Descriptor says {entries}; the table is truncated",
                values.len()
            ));
        }
        let top = (1i64 << bits) - 1;
        let data = values[..entries].iter().map(|&v| v.clamp(0, top) as u16).collect();
        Ok(Lut {
            first_mapped,
            bits: bits as u16,
            data,
        })
    }

    /// The table's output for `value`: the first entry below the mapped range, the last above it.
    pub fn lookup(&self, value: f64) -> f64 {
        let offset = value - self.first_mapped as f64;
        let index = if offset.is_nan() || offset <= 0.0 {
            0
        } else {
            (offset as usize).min(self.data.len() - 1)
        };
        f64::from(self.data[index])
    }

    /// The largest output the entry size allows: 2^bits - 1.
    pub fn max_output(&self) -> f64 {
        f64::from((1u32 << self.bits) - 1)
    }
}

/// Every item of sequence `tag` in `obj` as a [`Lut`]; empty when the sequence is absent or has no items.
pub fn sequence(obj: &InMemDicomObject, tag: dicom_object::Tag, signed: bool, what: &str) -> Result<Vec<Lut>, String> {
    let Some(items) = obj.element_opt(tag).ok().flatten().and_then(|e| e.items()) else {
        return Ok(Vec::new());
    };
    items.iter().map(|item| Lut::from_item(item, signed, what)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn item(descriptor: [u16; 3], data: &[u16]) -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::LUT_DESCRIPTOR,
                VR::US,
                PrimitiveValue::U16(descriptor.iter().copied().collect()),
            ),
            DataElement::new(
                tags::LUT_DATA,
                VR::OW,
                PrimitiveValue::U16(data.iter().copied().collect()),
            ),
        ])
    }

    #[test]
    fn below_the_first_is_the_first_entry_and_above_the_last_the_last() {
        let lut = Lut::from_item(&item([4, 10, 8], &[5, 6, 7, 200]), false, "VOI LUT Sequence").unwrap();
        assert_eq!(lut.lookup(-3.0), 5.0);
        assert_eq!(lut.lookup(10.0), 5.0);
        assert_eq!(lut.lookup(11.9), 6.0);
        assert_eq!(lut.lookup(13.0), 200.0);
        assert_eq!(lut.lookup(1e9), 200.0);
        assert_eq!(lut.max_output(), 255.0);
    }

    /// An 8-bit table of more than 256 entries: input 300 reads entry 300 (PS3.3 C.11.2.1.1). pydicom 3.0.2's
    /// `apply_voi` computes the index in the table's dtype and reads entry 44 (300 mod 256) instead.
    #[test]
    fn an_8_bit_table_of_4096_entries_is_indexed_without_wrapping() {
        let data: Vec<u16> = (0..4096u16).map(|i| i.min(255)).collect();
        let lut = Lut::from_item(&item([4096, 0, 8], &data), false, "VOI LUT Sequence").unwrap();
        assert_eq!(lut.lookup(300.0), 255.0);
        assert_eq!(lut.lookup(256.0), 255.0);
        assert_eq!(lut.lookup(44.0), 44.0);
    }

    #[test]
    fn signed_first_value_and_zero_entries_meaning_65536() {
        let data: Vec<u16> = (0..=u16::MAX).collect();
        let lut = Lut::from_item(&item([0, 65535, 16], &data), true, "Modality LUT Sequence").unwrap();
        assert_eq!(lut.first_mapped, -1);
        assert_eq!(lut.data.len(), 65536);
        assert_eq!(lut.lookup(-1.0), 0.0);
        assert_eq!(lut.lookup(0.0), 1.0);
        let unsigned = Lut::from_item(&item([2, 65535, 16], &[1, 2]), false, "x").unwrap();
        assert_eq!(unsigned.first_mapped, 65535);
    }

    #[test]
    fn a_short_table_or_bad_descriptor_is_refused() {
        let e = Lut::from_item(&item([4, 0, 8], &[1, 2]), false, "VOI LUT Sequence").unwrap_err();
        assert!(e.contains("VOI LUT Sequence") && e.contains("truncated"), "{e}");
        let e = Lut::from_item(&item([4, 0, 17], &[1, 2, 3, 4]), false, "VOI LUT Sequence").unwrap_err();
        assert!(e.contains("17 bits"), "{e}");
        let only = InMemDicomObject::from_element_iter([DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16([4u16, 0].into_iter().collect()),
        )]);
        let e = Lut::from_item(&only, false, "x").unwrap_err();
        assert!(e.contains("2 values") && e.contains("needs 3"), "{e}");
    }
}
