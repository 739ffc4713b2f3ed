//! The two pictures of an eval report, drawn pixel by pixel with the `image` crate (deterministic: the same
//! metrics give the same bytes): the confusion matrix as a heatmap with the count in each cell, and the
//! reliability diagram (accuracy per confidence bin against the diagonal of perfect calibration, with the ECE).
//!
//! Owns: layout and colours. Must not: compute metrics or write files (the caller saves the PNG bytes).

use image::{Rgb, RgbImage};

use super::glyphs;
use super::metrics::{Calibration, ConfusionMatrix};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([200, 200, 200]);
const BLUE: Rgb<u8> = Rgb([31, 78, 160]);
const GREY: Rgb<u8> = Rgb([90, 90, 90]);
const RED: Rgb<u8> = Rgb([200, 40, 40]);

/// The side of one confusion-matrix cell, in pixels.
pub const CELL: u32 = 56;
const MARGIN: u32 = 8;
/// Class labels are cut to these many characters: on the rows (left) and above the columns.
const ROW_LABEL_CHARS: usize = 14;
const COLUMN_LABEL_CHARS: usize = 8;
const TITLE: &str = "CONFUSION MATRIX";
const SUBTITLE: &str = "ROWS: TRUE LABEL   COLUMNS: PREDICTED";
const GRID_TOP: u32 = 60;

/// The image size of a confusion matrix of `classes` classes, with or without the "no answer" column.
pub fn confusion_size(classes: usize, no_answer_column: bool) -> (u32, u32) {
    let columns = classes as u32 + u32::from(no_answer_column);
    let left = grid_left();
    let title = glyphs::width(TITLE, 2).max(glyphs::width(SUBTITLE, 1));
    (
        (left + columns * CELL + MARGIN).max(title + 2 * MARGIN),
        GRID_TOP + classes as u32 * CELL + MARGIN,
    )
}

fn grid_left() -> u32 {
    MARGIN + glyphs::width(&"W".repeat(ROW_LABEL_CHARS), 1) + MARGIN
}

/// The confusion matrix as a heatmap: each cell's shade is its share of the row (the true class), its count
/// written in it; a grey "NO ANSWER" column is added when some item has no answer.
pub fn confusion_png(c: &ConfusionMatrix) -> RgbImage {
    let k = c.labels.len();
    let with_none = c.no_answer.iter().any(|&n| n > 0);
    let (w, h) = confusion_size(k, with_none);
    let mut image = RgbImage::from_pixel(w, h, WHITE);
    glyphs::draw(&mut image, (MARGIN, MARGIN), TITLE, 2, BLACK);
    glyphs::draw(&mut image, (MARGIN, MARGIN + 20), SUBTITLE, 1, GREY);
    let left = grid_left();
    let mut column_labels: Vec<String> = c
        .labels
        .iter()
        .map(|l| glyphs::truncated(l, COLUMN_LABEL_CHARS))
        .collect();
    if with_none {
        column_labels.push("NO ANSWR".to_string());
    }
    for (j, label) in column_labels.iter().enumerate() {
        let x = left + j as u32 * CELL + (CELL - glyphs::width(label, 1).min(CELL)) / 2;
        glyphs::draw(&mut image, (x, GRID_TOP - 12), label, 1, BLACK);
    }
    for (i, row) in c.matrix.iter().enumerate() {
        let y = GRID_TOP + i as u32 * CELL;
        let label = glyphs::truncated(&c.labels[i], ROW_LABEL_CHARS);
        glyphs::draw(&mut image, (MARGIN, y + (CELL - 7) / 2), &label, 1, BLACK);
        let total = row.iter().sum::<u64>() + c.no_answer[i];
        let mut cells: Vec<(u64, Rgb<u8>)> = row.iter().map(|&n| (n, BLUE)).collect();
        if with_none {
            cells.push((c.no_answer[i], GREY));
        }
        for (j, (count, full)) in cells.into_iter().enumerate() {
            let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
            let x = left + j as u32 * CELL;
            fill(&mut image, (x, y), (CELL, CELL), GRID);
            fill(
                &mut image,
                (x + 1, y + 1),
                (CELL - 2, CELL - 2),
                blend(WHITE, full, share),
            );
            let text = count.to_string();
            let scale = if glyphs::width(&text, 2) + 6 <= CELL { 2 } else { 1 };
            let (tw, th) = (glyphs::width(&text, scale), 7 * scale);
            let ink = if share > 0.5 { WHITE } else { BLACK };
            glyphs::draw(
                &mut image,
                (x + CELL.saturating_sub(tw) / 2, y + (CELL - th) / 2),
                &text,
                scale,
                ink,
            );
        }
    }
    image
}

/// The side of the reliability diagram's plot area, and its margins.
pub const PLOT: u32 = 300;
const PLOT_LEFT: u32 = 40;
const PLOT_TOP: u32 = 48;
const PLOT_RIGHT: u32 = 16;
const PLOT_BOTTOM: u32 = 52;

/// The image size of the reliability diagram.
pub fn reliability_size() -> (u32, u32) {
    (PLOT_LEFT + PLOT + PLOT_RIGHT, PLOT_TOP + PLOT + PLOT_BOTTOM)
}

/// The reliability diagram: per confidence bin, a bar as tall as the accuracy of its items (with their count
/// above it), the diagonal of perfect calibration in red, and the ECE in the title.
pub fn reliability_png(c: &Calibration) -> RgbImage {
    let (w, h) = reliability_size();
    let mut image = RgbImage::from_pixel(w, h, WHITE);
    glyphs::draw(&mut image, (MARGIN, MARGIN), "RELIABILITY", 2, BLACK);
    let subtitle = format!("ECE {:.4}   N {}   BARS: ACCURACY, LINE: PERFECT", c.ece, c.n);
    glyphs::draw(&mut image, (MARGIN, MARGIN + 20), &subtitle, 1, GREY);
    let (x0, y0) = (PLOT_LEFT, PLOT_TOP);
    let bins = c.bins.len().max(1) as u32;
    let bar = PLOT / bins;
    for (i, b) in c.bins.iter().enumerate() {
        let Some(accuracy) = b.accuracy else { continue };
        let height = (accuracy * PLOT as f64).round() as u32;
        let x = x0 + i as u32 * bar;
        fill(&mut image, (x + 1, y0 + PLOT - height), (bar - 2, height), BLUE);
        let text = b.count.to_string();
        let ty = (y0 + PLOT - height).saturating_sub(10).max(y0 + 2);
        let tx = x + bar.saturating_sub(glyphs::width(&text, 1)) / 2;
        glyphs::draw(
            &mut image,
            (tx, ty),
            &text,
            1,
            if height + 12 > PLOT { WHITE } else { BLACK },
        );
    }
    // The frame, then the diagonal from (0, 0) to (1, 1), two pixels wide.
    fill(&mut image, (x0, y0), (PLOT, 1), BLACK);
    fill(&mut image, (x0, y0 + PLOT), (PLOT + 1, 1), BLACK);
    fill(&mut image, (x0, y0), (1, PLOT), BLACK);
    fill(&mut image, (x0 + PLOT, y0), (1, PLOT), BLACK);
    for t in 0..PLOT {
        fill(&mut image, (x0 + t, y0 + PLOT - t - 1), (2, 1), RED);
    }
    for (value, text) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
        let offset = (value * PLOT as f64) as u32;
        let tw = glyphs::width(text, 1);
        glyphs::draw(
            &mut image,
            ((x0 + offset).saturating_sub(tw / 2), y0 + PLOT + 6),
            text,
            1,
            BLACK,
        );
        glyphs::draw(
            &mut image,
            (x0.saturating_sub(tw + 6), y0 + PLOT - offset - 3),
            text,
            1,
            BLACK,
        );
    }
    let label = "CONFIDENCE (LARGEST PROBABILITY)";
    glyphs::draw(
        &mut image,
        (x0 + (PLOT - glyphs::width(label, 1)) / 2, y0 + PLOT + 22),
        label,
        1,
        BLACK,
    );
    glyphs::draw(&mut image, (MARGIN, y0 + PLOT + 36), "Y: ACCURACY", 1, BLACK);
    image
}

/// `image` as PNG bytes.
pub fn png_bytes(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encoding an RGB image as PNG into memory does not fail");
    bytes
}

fn fill(image: &mut RgbImage, (x, y): (u32, u32), (w, h): (u32, u32), colour: Rgb<u8>) {
    for py in y..(y + h).min(image.height()) {
        for px in x..(x + w).min(image.width()) {
            image.put_pixel(px, py, colour);
        }
    }
}

/// The colour `share` of the way from `from` to `to`.
fn blend(from: Rgb<u8>, to: Rgb<u8>, share: f64) -> Rgb<u8> {
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * share).round() as u8;
    Rgb([mix(from[0], to[0]), mix(from[1], to[1]), mix(from[2], to[2])])
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{self, Item};
    use super::*;

    fn metrics_of(items: &[Item]) -> metrics::Metrics {
        metrics::compute(&["normal".to_string(), "pleural effusion".to_string()], items).unwrap()
    }

    #[test]
    fn confusion_png_has_its_size_and_shades() {
        let items = [
            Item {
                label: 0,
                prediction: Some(0),
                probabilities: None,
            },
            Item {
                label: 0,
                prediction: Some(0),
                probabilities: None,
            },
            Item {
                label: 1,
                prediction: Some(0),
                probabilities: None,
            },
            Item {
                label: 1,
                prediction: None,
                probabilities: None,
            },
        ];
        let m = metrics_of(&items);
        let image = confusion_png(&m.confusion_matrix);
        assert_eq!(image.dimensions(), confusion_size(2, true));
        assert_eq!(image.height(), GRID_TOP + 2 * CELL + MARGIN);
        // Row 0, column 0 holds the whole row: full blue at the cell's corner (away from the count).
        let left = grid_left();
        assert_eq!(*image.get_pixel(left + 3, GRID_TOP + 3), BLUE);
        // Row 0, column 1 is empty: white; row 1's no-answer cell is half grey.
        assert_eq!(*image.get_pixel(left + CELL + 3, GRID_TOP + 3), WHITE);
        assert_eq!(
            *image.get_pixel(left + 2 * CELL + 3, GRID_TOP + CELL + 3),
            blend(WHITE, GREY, 0.5)
        );
        // Deterministic, and it encodes as a PNG of that size.
        let png = png_bytes(&image);
        assert_eq!(png, png_bytes(&confusion_png(&m.confusion_matrix)));
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), image.dimensions());
    }

    #[test]
    fn reliability_png_has_its_size_and_bars() {
        let scored = |label, p1: f64| Item {
            label,
            prediction: None,
            probabilities: Some(vec![1.0 - p1, p1]),
        };
        let m = metrics_of(&[scored(1, 0.95), scored(1, 0.92), scored(0, 0.55)]);
        let image = reliability_png(m.calibration.as_ref().unwrap());
        assert_eq!(image.dimensions(), reliability_size());
        // Bin 9 (0.9, 1] is all right: its bar reaches the top; bin 2 is empty: white above the axis.
        let bar = PLOT / 10;
        assert_eq!(*image.get_pixel(PLOT_LEFT + 9 * bar + 5, PLOT_TOP + 20), BLUE);
        assert_eq!(*image.get_pixel(PLOT_LEFT + 2 * bar + 15, PLOT_TOP + PLOT - 5), WHITE);
        let decoded = image::load_from_memory(&png_bytes(&image)).unwrap();
        assert_eq!((decoded.width(), decoded.height()), reliability_size());
    }
}
