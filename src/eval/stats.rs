//! The two distribution functions McNemar's test needs, written here because no statistics crate is in the
//! dependency tree: the complementary error function (for the chi-square survival function with one degree of
//! freedom) and the lower tail of the Binomial(n, ½) distribution.
//!
//! Owns: their numerics. Must not: know about eval runs.

/// erfc(x) = 1 − erf(x), to about 1e-15 relative error.
///
/// For |x| < 1, erf from the series erf(x) = (2/√π)·e^(−x²)·Σₙ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)), whose terms are
/// all positive (no cancellation); erfc = 1 − erf there is above 0.157, so the subtraction loses less than one
/// digit. For x ≥ 1, the continued fraction erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))
/// by the modified Lentz method (a few hundred terms at x = 1, fewer beyond), which keeps the relative accuracy
/// of the tiny values far out. erfc(−x) = 2 − erfc(x).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 1.0 {
        1.0 - erf_series(x)
    } else {
        erfc_continued_fraction(x)
    }
}

const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3; // 1/√π

fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    // Terms grow while 2x² > 2n+3 and then fall faster than geometrically; stop when one no longer changes the sum.
    loop {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
    }
    2.0 * FRAC_1_SQRT_PI * (-x2).exp() * sum
}

fn erfc_continued_fraction(x: f64) -> f64 {
    // f = b0 + a1/(b1 + a2/(b2 + …)) with b = x, a_k = k/2; erfc = e^(−x²)/√π / f.
    let tiny = 1e-300;
    let mut f = x;
    let (mut c, mut d) = (f, 0.0);
    for k in 1..10_000 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        if d == 0.0 {
            d = tiny;
        }
        c = x + a / c;
        if c == 0.0 {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    (-x * x).exp() * FRAC_1_SQRT_PI / f
}

/// The survival function P(X² > x) of the chi-square distribution with one degree of freedom: erfc(√(x/2)).
pub fn chi_square_1_survival(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    erfc((x / 2.0).sqrt())
}

/// P(X ≤ k) for X ~ Binomial(n, ½), computed without overflow for any n: the terms C(n, i)/2ⁿ for i ≤ k are
/// summed relative to the largest of them, C(n, k)/2ⁿ (going down, C(n, i−1) = C(n, i) · i/(n−i+1)), and the sum
/// is scaled once by exp(ln C(n, k) − n ln 2). Only that logarithm's rounding (about k ulps of the ln terms) and
/// the summation's reach the result: relative error below (k + n)·2⁻⁵²·ln n.
pub fn binomial_half_cdf(k: u64, n: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    // Past the middle, the terms grow going down from k; use the complement, which sums the smaller tail.
    if 2 * k >= n {
        return 1.0 - binomial_half_cdf(n - k - 1, n);
    }
    let mut ln_choose = 0.0; // ln C(n, k) = Σ_{j<k} ln((n − j)/(j + 1))
    for j in 0..k {
        ln_choose += ((n - j) as f64 / (j + 1) as f64).ln();
    }
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in (1..=k).rev() {
        term *= i as f64 / (n - i + 1) as f64;
        sum += term;
        if term < sum * f64::EPSILON * 0.5 {
            break;
        }
    }
    (ln_choose - n as f64 * std::f64::consts::LN_2).exp() * sum
}

/// The exact two-sided p-value of a count `k` out of `n` under Binomial(n, ½): min(1, 2·P(X ≤ min(k, n−k))),
/// which is scipy's `binomtest(k, n, 0.5).pvalue` (the distribution is symmetric). 1 when n is 0.
pub fn binomial_half_two_sided(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let low = k.min(n - k);
    (2.0 * binomial_half_cdf(low, n)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn erfc_against_known_values() {
        // Reference values: scipy.special.erfc (double precision, correctly rounded or within an ulp).
        let known = [
            (0.0, 1.0),
            (0.1, 0.887_537_083_981_715_2),
            (0.5, 0.479_500_122_186_953_5),
            (0.9999, 0.157_340_721_951_240_6),
            (1.0, 0.157_299_207_050_285_16),
            (1.5, 0.033_894_853_524_689_27),
            (2.0, 0.004_677_734_981_047_266),
            (2.4999, 4.071_699_003_334_512e-4),
            (2.5, 4.069_520_174_449_588_6e-4),
            (3.0, 2.209_049_699_858_544_5e-5),
            (5.0, 1.537_459_794_428_034_7e-12),
            (10.0, 2.088_487_583_762_544_6e-45),
            (26.0, 5.663_192_408_856_145e-296),
        ];
        for (x, want) in known {
            assert!(rel(erfc(x), want) < 1e-13, "erfc({x}) = {} want {want}", erfc(x));
        }
        assert!(rel(erfc(-1.0), 2.0 - 0.157_299_207_050_285_16) < 1e-15);
        assert_eq!(erfc(40.0), 0.0);
        // The chi-square survival at its 95% point, 3.841458820694124, is 0.05.
        assert!(rel(chi_square_1_survival(3.841_458_820_694_124), 0.05) < 1e-12);
        assert_eq!(chi_square_1_survival(0.0), 1.0);
    }

    #[test]
    fn binomial_tail_against_known_values() {
        assert_eq!(binomial_half_cdf(0, 1), 0.5);
        assert_eq!(binomial_half_cdf(0, 10), 1.0 / 1024.0);
        // P(X ≤ 2 | n = 10) = (1 + 10 + 45)/1024.
        assert!(rel(binomial_half_cdf(2, 10), 56.0 / 1024.0) < 1e-15);
        // Past the middle: P(X ≤ 7 | 10) = 1 − P(X ≤ 2).
        assert!(rel(binomial_half_cdf(7, 10), 1.0 - 56.0 / 1024.0) < 1e-15);
        assert_eq!(binomial_half_cdf(10, 10), 1.0);
        // Large n without overflow: P(X ≤ 400 | n = 1000), from scipy.stats.binom.cdf(400, 1000, 0.5).
        assert!(rel(binomial_half_cdf(400, 1000), 1.364_232_078_032_973_5e-10) < 1e-11);
        // 2⁻²⁰⁰⁰ is below the smallest double: the tail underflows to 0 instead of overflowing to NaN.
        assert_eq!(binomial_half_cdf(0, 2000), 0.0);
        // Two-sided: b = 1, c = 9: 2 · 11/1024; b = c: 1; nothing discordant: 1.
        assert!(rel(binomial_half_two_sided(1, 10), 22.0 / 1024.0) < 1e-15);
        assert_eq!(binomial_half_two_sided(9, 10), binomial_half_two_sided(1, 10));
        assert_eq!(binomial_half_two_sided(5, 10), 1.0);
        assert_eq!(binomial_half_two_sided(0, 0), 1.0);
    }
}
