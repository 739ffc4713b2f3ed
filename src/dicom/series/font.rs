//! A tiny 5x7 bitmap font for the labels of a contact sheet ("SLICE 12"): the letters of "SLICE", the digits
//! and the space. No font crate is in the dependency tree, and these few glyphs need none.
//!
//! Owns: the glyphs and drawing a line of text onto an RGB image. Must not: draw outside the image (pixels
//! past its edge are skipped).

use image::{Rgb, RgbImage};

/// Glyph width and height in font pixels; one blank column separates characters.
pub const GLYPH_W: u32 = 5;
pub const GLYPH_H: u32 = 7;

/// Each glyph is 7 rows of 5 bits, the most significant of the 5 on the left.
fn glyph(c: char) -> Option<[u8; 7]> {
    Some(match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        ' ' => [0; 7],
        _ => return None,
    })
}

/// The size in image pixels of `text` drawn at `scale`.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let n = text.chars().count() as u32;
    ((n * (GLYPH_W + 1)).saturating_sub(1) * scale, GLYPH_H * scale)
}

/// Draws `text` with its top-left corner at (x, y), each font pixel a `scale` x `scale` square of `colour`.
/// A character without a glyph is drawn as a filled box, so a missing glyph shows instead of vanishing.
pub fn draw_text(image: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, colour: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c).unwrap_or([0x1F; 7]);
        let left = x + i as u32 * (GLYPH_W + 1) * scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (left + col * scale + dx, y + row as u32 * scale + dy);
                        if px < image.width() && py < image.height() {
                            image.put_pixel(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}

/// Draws `text` as [`draw_text`] does, taking each glyph from `more` first: for pictures that need characters
/// this font lacks (the eval plots' letters, `src/eval/glyphs.rs`).
pub(crate) fn draw_text_with(
    image: &mut RgbImage,
    (x, y): (u32, u32),
    text: &str,
    scale: u32,
    colour: Rgb<u8>,
    more: fn(char) -> Option<[u8; 7]>,
) {
    for (i, c) in text.chars().enumerate() {
        let rows = more(c).or_else(|| glyph(c)).unwrap_or([0x1F; 7]);
        let left = x + i as u32 * (GLYPH_W + 1) * scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in (0..GLYPH_W).filter(|col| bits & (0x10 >> col) != 0) {
                for (dx, dy) in (0..scale).flat_map(|dy| (0..scale).map(move |dx| (dx, dy))) {
                    let (px, py) = (left + col * scale + dx, y + row as u32 * scale + dy);
                    if px < image.width() && py < image.height() {
                        image.put_pixel(px, py, colour);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_character_has_a_glyph() {
        assert!("SLICE 0123456789".chars().all(|c| glyph(c).is_some()));
        assert!(glyph('x').is_none());
    }

    #[test]
    fn draws_the_glyph_bits_at_scale() {
        let mut img = RgbImage::new(20, 20);
        draw_text(&mut img, 1, 2, "I", 2, Rgb([255, 255, 255]));
        // 'I' row 0 is 0x0E: columns 1..=3 lit, 0 and 4 dark; each font pixel is 2x2.
        let lit = |x, y| img.get_pixel(x, y).0 == [255, 255, 255];
        assert!(!lit(1, 2) && lit(3, 2) && lit(4, 3) && lit(8, 2) && !lit(9, 2));
        // Row 1 is 0x04: only the middle column.
        assert!(lit(5, 4) && !lit(3, 4));
        assert_eq!(text_size("SLICE 12", 2), ((8 * 6 - 1) * 2, 14));
        // Nothing is drawn past the edge, and nothing panics.
        draw_text(&mut img, 18, 18, "SLICE", 3, Rgb([1, 2, 3]));
    }
}
