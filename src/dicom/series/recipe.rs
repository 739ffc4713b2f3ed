//! Google's MedGemma 1.5 recipe for a CT or MR volume, as pure arithmetic: which slices are kept, how a CT slice
//! in Hounsfield units becomes three windows in R, G and B, how an MR volume is scaled to 8 bits, and whether
//! the InstanceNumber order agrees with the slice positions.
//!
//! Owns: numbers only, each written to give the same bytes as the Python of Google's CT notebook (Python's
//! `round`, half to even; numpy float32 for the CT windows). Must not: read files, print, or know about flags.

/// How many slices Google's CT notebook keeps at most.
pub const GOOGLE_MAX_SLICES: usize = 85;

/// The CT windows of Google's notebook as (low, high) in Hounsfield units, for R, G and B: wide (air to bone),
/// soft tissue, brain.
pub const CT_WINDOWS: [(f64, f64); 3] = [(-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0)];

/// The indices (0-based, into the instances sorted by InstanceNumber) that Google's notebook keeps: all when
/// `n <= max`, else `round(i / max * (n - 1))` for `i = 1..=max`, with Python's `round` (half to even) on the
/// same float64 arithmetic. Index 0 is never taken when `n > max`; the last always is.
pub fn select_indices(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    (1..=max)
        .map(|i| ((i as f64 / max as f64) * (n - 1) as f64).round_ties_even() as usize)
        .collect()
}

/// One CT channel as the notebook's `norm` computes it: clip to the window, then in float32 subtract its low
/// end, divide by its width, times 255; then `np.round` (half to even) and `astype(np.uint8)`.
pub fn ct_channel(hu: f64, (low, high): (f64, f64)) -> u8 {
    let clipped = hu.clamp(low, high) as f32;
    let scaled = (clipped - low as f32) / (high - low) as f32 * 255.0f32;
    scaled.round_ties_even().clamp(0.0, 255.0) as u8
}

/// A CT slice in Hounsfield units as interleaved RGB: R, G and B through [`CT_WINDOWS`].
pub fn ct_rgb(hu: &[f64]) -> Vec<u8> {
    hu.iter()
        .flat_map(|&v| CT_WINDOWS.map(|window| ct_channel(v, window)))
        .collect()
}

/// An MR value scaled by the volume's lowest and highest value to 0..255 (float64, rounded half to even);
/// a flat volume is black.
pub fn mr_grey(value: f64, (low, high): (f64, f64)) -> u8 {
    if high <= low {
        return 0;
    }
    ((value - low) / (high - low) * 255.0)
        .round_ties_even()
        .clamp(0.0, 255.0) as u8
}

/// Whether slice positions, in InstanceNumber order, move steadily one way along the slice normal (the cross
/// product of the row and column directions of ImageOrientationPatient). `None` when there is nothing to
/// compare (fewer than two positions, or a degenerate orientation).
pub fn positions_agree(positions: &[[f64; 3]], orientation: [f64; 6]) -> Option<bool> {
    let [rx, ry, rz, cx, cy, cz] = orientation;
    let normal = [ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx];
    let length = normal.iter().map(|v| v * v).sum::<f64>().sqrt();
    if positions.len() < 2 || length.is_nan() || length <= 1e-6 {
        return None;
    }
    let along: Vec<f64> = positions
        .iter()
        .map(|p| p.iter().zip(&normal).map(|(a, b)| a * b).sum::<f64>() / length)
        .collect();
    const SAME: f64 = 1e-4; // mm: two slices closer than this are at the same place
    let steps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    Some(steps.iter().all(|&d| d > SAME) || steps.iter().all(|&d| d < -SAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of Python's `[round(i / m * (n - 1)) for i in range(1, m + 1)]`, computed with CPython 3.
    #[test]
    fn selection_matches_python() {
        assert_eq!(select_indices(10, 85), (0..10).collect::<Vec<_>>());
        assert_eq!(select_indices(85, 85), (0..85).collect::<Vec<_>>());
        assert_eq!(select_indices(0, 85), Vec::<usize>::new());
        let s86 = select_indices(86, 85);
        assert_eq!(s86, (1..=85).collect::<Vec<_>>());
        let s100 = select_indices(100, 85);
        assert_eq!(s100.len(), 85);
        assert_eq!(&s100[..12], &[1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 13, 14]);
        assert_eq!(s100[84], 99);
        let s1000 = select_indices(1000, 85);
        assert_eq!(&s1000[..6], &[12, 24, 35, 47, 59, 71]);
        assert_eq!(s1000[84], 999);
        // Half to even: i = 1, m = 2, n = 4 gives 1.5 -> 2; i = 1, m = 4, n = 3 gives 0.5 -> 0.
        assert_eq!(select_indices(4, 2), vec![2, 3]);
        assert_eq!(select_indices(3, 2), vec![1, 2]);
        assert_eq!(select_indices(5, 4), vec![1, 2, 3, 4]);
        assert_eq!(select_indices(6, 4), vec![1, 2, 4, 5]); // 1.25, 2.5 -> 2, 3.75, 5
        for n in 86..3000 {
            let s = select_indices(n, 85);
            assert!(s.windows(2).all(|w| w[0] < w[1]) && s[0] >= 1 && s[84] == n - 1, "{n}");
        }
    }

    #[test]
    fn ct_windows_match_the_notebook() {
        // R: -1024..1024, G: -135..215, B: 0..80.
        assert_eq!(ct_rgb(&[-2000.0]), vec![0, 0, 0]);
        assert_eq!(ct_rgb(&[3000.0]), vec![255, 255, 255]);
        assert_eq!(ct_rgb(&[0.0]), vec![128, 98, 0]); // 127.5 -> 128 (even); 135/350*255 = 98.36
        assert_eq!(ct_rgb(&[40.0]), vec![132, 128, 128]); // 132.5 -> 132; 127.5 -> 128; 127.5 -> 128
        assert_eq!(ct_channel(-100.0, CT_WINDOWS[1]), 26); // 35/350*255 = 25.5 -> 26 (even)
        assert_eq!(ct_channel(-30.0, CT_WINDOWS[1]), 76); // 105/350*255 = 76.5 -> 76 (even), not 77
        assert_eq!(ct_channel(80.0, CT_WINDOWS[2]), 255);
        assert_eq!(ct_channel(1.0, CT_WINDOWS[2]), 3); // 3.1875
    }

    #[test]
    fn mr_is_min_max_over_the_volume() {
        assert_eq!(mr_grey(10.0, (10.0, 20.0)), 0);
        assert_eq!(mr_grey(20.0, (10.0, 20.0)), 255);
        assert_eq!(mr_grey(15.0, (10.0, 20.0)), 128); // 127.5 -> 128
        assert_eq!(mr_grey(1.0, (0.0, 2.0)), 128);
        assert_eq!(mr_grey(1.0, (0.0, 6.0)), 42); // 42.5 -> 42 (even)
        assert_eq!(mr_grey(5.0, (5.0, 5.0)), 0);
    }

    #[test]
    fn positions_along_the_normal() {
        let axial = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let z = |zs: &[f64]| zs.iter().map(|&z| [3.0, -7.0, z]).collect::<Vec<_>>();
        assert_eq!(positions_agree(&z(&[0.0, 2.5, 5.0]), axial), Some(true));
        assert_eq!(positions_agree(&z(&[5.0, 2.5, 0.0]), axial), Some(true));
        assert_eq!(positions_agree(&z(&[0.0, 5.0, 2.5]), axial), Some(false));
        assert_eq!(positions_agree(&z(&[0.0, 0.0, 2.5]), axial), Some(false));
        assert_eq!(positions_agree(&z(&[0.0]), axial), None);
        assert_eq!(positions_agree(&z(&[0.0, 1.0]), [0.0; 6]), None);
        // Sagittal: the normal is x; z moving does not count.
        let sagittal = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0];
        let x = [[0.0, 0.0, 9.0], [1.0, 0.0, 3.0], [2.0, 0.0, 7.0]];
        assert_eq!(positions_agree(&x, sagittal), Some(true));
    }
}
