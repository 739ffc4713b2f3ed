//! The letters and punctuation the eval plots write (titles, class labels, axis ticks) in the 5x7 style of
//! `src/dicom/series/font.rs`, which holds the digits and "SLICE". Text is drawn upper-case; a character with no
//! glyph here or there is drawn as '?'.
//!
//! Owns: the extra glyphs and making text drawable. Must not: draw (font.rs does).

use image::{Rgb, RgbImage};

use crate::dicom::series::font;

/// Each glyph is 7 rows of 5 bits, the most significant of the 5 on the left (as in font.rs).
fn glyph(c: char) -> Option<[u8; 7]> {
    Some(match c {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
        _ => return None,
    })
}

/// `text` as the plots draw it: upper-case, each character without a glyph (here or in font.rs) replaced by '?'.
pub fn drawable(text: &str) -> String {
    const IN_FONT: &str = "0123456789SLICE ";
    text.chars()
        .flat_map(char::to_uppercase)
        .map(|c| {
            if glyph(c).is_some() || IN_FONT.contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `text` made drawable and cut to `max` characters, the last one '.' when it was cut.
pub fn truncated(text: &str, max: usize) -> String {
    let text = drawable(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('.');
    cut
}

/// The width in pixels of `text` (already drawable) at `scale`.
pub fn width(text: &str, scale: u32) -> u32 {
    font::text_size(text, scale).0
}

/// Draws `text` (made drawable) with its top-left corner at (x, y).
pub fn draw(image: &mut RgbImage, (x, y): (u32, u32), text: &str, scale: u32, colour: Rgb<u8>) {
    font::draw_text_with(image, (x, y), &drawable(text), scale, colour, glyph);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_letters_from_here_and_digits_from_the_series_font() {
        let mut image = RgbImage::new(12, 7);
        draw(&mut image, (0, 0), "a1", 1, Rgb([255, 255, 255]));
        let lit = |x, y| image.get_pixel(x, y).0 == [255, 255, 255];
        // 'A' row 0 is 0x0E (columns 1..=3), row 3 is 0x1F; '1' (font.rs) row 0 is 0x04: its column 2, at x = 6 + 2.
        assert!(!lit(0, 0) && lit(1, 0) && lit(3, 0) && !lit(4, 0) && (0..5).all(|x| lit(x, 3)));
        assert!(lit(8, 0) && !lit(7, 0) && !lit(9, 0));
    }

    #[test]
    fn every_letter_is_drawable_and_others_become_question_marks() {
        assert_eq!(drawable("Pneumonia (left)"), "PNEUMONIA (LEFT)");
        assert!(('A'..='Z').all(|c| glyph(c).is_some() || "SLICE".contains(c)));
        assert_eq!(drawable("ä*"), "??");
        assert_eq!(truncated("pleural effusion", 8), "PLEURAL.");
        assert_eq!(truncated("normal", 8), "NORMAL");
    }
}
