//! The contact sheet of a series: every selected slice as a thumbnail in a grid, in prompt order, each labelled
//! "SLICE k" as the prompt labels it, so a person sees at a glance what the model will be shown.
//!
//! Owns: the grid layout and the labels. Must not: read or write files (the caller saves the image).

use image::{imageops::FilterType, Rgb, RgbImage};

use super::font;

/// The side of one thumbnail cell, in pixels.
pub const THUMB_SIDE: u32 = 128;

/// How many columns and rows a sheet of `n` thumbnails has: as square as possible, filled row by row.
pub fn grid(n: usize) -> (u32, u32) {
    if n == 0 {
        return (0, 0);
    }
    let columns = (n as f64).sqrt().ceil() as usize;
    (columns as u32, n.div_ceil(columns) as u32)
}

/// A grid of `slices` (label, image) as [`THUMB_SIDE`]-pixel thumbnails (resized with a triangle filter), with
/// "SLICE k" in white on a black box in each cell's top-left corner. An empty list gives a 1x1 black image.
pub fn contact_sheet(slices: &[(usize, &RgbImage)]) -> RgbImage {
    let (columns, rows) = grid(slices.len());
    let mut sheet = RgbImage::new((columns * THUMB_SIDE).max(1), (rows * THUMB_SIDE).max(1));
    for (i, (label, image)) in slices.iter().enumerate() {
        let (cx, cy) = (i as u32 % columns * THUMB_SIDE, i as u32 / columns * THUMB_SIDE);
        let thumb = image::imageops::resize(*image, THUMB_SIDE, THUMB_SIDE, FilterType::Triangle);
        image::imageops::replace(&mut sheet, &thumb, i64::from(cx), i64::from(cy));
        let text = format!("SLICE {label}");
        let scale = 2;
        let (w, h) = font::text_size(&text, scale);
        for y in cy..(cy + h + 4).min(cy + THUMB_SIDE) {
            for x in cx..(cx + w + 4).min(cx + THUMB_SIDE) {
                sheet.put_pixel(x, y, Rgb([0, 0, 0]));
            }
        }
        font::draw_text(&mut sheet, cx + 2, cy + 2, &text, scale, Rgb([255, 255, 255]));
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_as_square_as_possible() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (2, 1));
        assert_eq!(grid(10), (4, 3));
        assert_eq!(grid(85), (10, 9));
        assert_eq!(grid(0), (0, 0));
    }

    #[test]
    fn thumbnails_in_order_with_labels() {
        let grey = |v| RgbImage::from_pixel(24, 24, Rgb([v, v, v]));
        let (a, b, c) = (grey(50), grey(100), grey(150));
        let sheet = contact_sheet(&[(1, &a), (2, &b), (3, &c)]);
        assert_eq!(sheet.dimensions(), (2 * THUMB_SIDE, 2 * THUMB_SIDE));
        // Away from the label, each cell is its slice; the fourth cell is empty.
        assert_eq!(sheet.get_pixel(100, 100).0, [50; 3]);
        assert_eq!(sheet.get_pixel(THUMB_SIDE + 100, 100).0, [100; 3]);
        assert_eq!(sheet.get_pixel(100, THUMB_SIDE + 100).0, [150; 3]);
        assert_eq!(sheet.get_pixel(THUMB_SIDE + 100, THUMB_SIDE + 100).0, [0; 3]);
        // The label: white pixels on black in the corner of each cell.
        let white =
            |x0: u32, y0: u32| (y0..y0 + 20).any(|y| (x0..x0 + 100).any(|x| sheet.get_pixel(x, y).0 == [255; 3]));
        assert!(white(0, 0) && white(THUMB_SIDE, 0) && white(0, THUMB_SIDE));
        assert_eq!(sheet.get_pixel(0, 0).0, [0; 3]);
    }
}
