//! Small, dependency-free statistics for comparing runs across seeds.
//!
//! The Student-t distribution function is computed through the regularised incomplete beta
//! function (continued fraction, Numerical Recipes §6.4), which is accurate to ~1e-12 in the
//! ranges used here; tests compare it against SciPy.

use anyhow::{bail, Result};

/// Arithmetic mean; `NaN` for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (divides by n − 1, as papers report over seeds); `0` for one value,
/// `NaN` for none.
pub fn sample_std(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(xs);
            (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        }
    }
}

/// `(mean, sample std)` in one call.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    (mean(xs), sample_std(xs))
}

/// Natural log of the gamma function (Lanczos, g = 7, n = 9; relative error < 1e-14 for x > 0).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Modified Lentz's floor: `v`, or `TINY` where `|v| < TINY`.
fn lentz_floor(v: f64) -> f64 {
    const TINY: f64 = 1e-300;
    if v.abs() < TINY {
        TINY
    } else {
        v
    }
}

/// One modified-Lentz update of `(c, d)` with the coefficient `aa`; `h` is then multiplied by
/// `d·c` of the returned pair.
fn lentz_step(aa: f64, c: f64, d: f64) -> (f64, f64) {
    let d = lentz_floor(1.0 + aa * d);
    let c = lentz_floor(1.0 + aa / c);
    (c, 1.0 / d)
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const EPS: f64 = 1e-15;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / lentz_floor(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        (c, d) = lentz_step(aa, c, d);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        (c, d) = lentz_step(aa, c, d);
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1.
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a+1)/(a+b+2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Distribution function P(T ≤ t) of Student's t with `df` (> 0, may be fractional) degrees of
/// freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let x = df / (df + t * t);
    let tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, x);
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Result of Welch's unequal-variance t-test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WelchTest {
    /// t statistic for mean(a) − mean(b).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Welch's two-sample t-test (two-sided), as `scipy.stats.ttest_ind(a, b, equal_var=False)`.
///
/// Needs at least two values per sample. If both samples have zero variance the statistic is
/// ±∞ (p = 0) when the means differ and 0 (p = 1) when they are equal.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Result<WelchTest> {
    if a.len() < 2 || b.len() < 2 {
        bail!(
            "Welch's t-test needs at least 2 values per sample (got {} and {})",
            a.len(),
            b.len()
        );
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        bail!("Welch's t-test got a non-finite value");
    }
    let (ma, sa) = mean_std(a);
    let (mb, sb) = mean_std(b);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sa * sa / na, sb * sb / nb);
    let se2 = va + vb;
    let df_denominator = va * va / (na - 1.0) + vb * vb / (nb - 1.0);
    if se2 == 0.0 {
        let same = ma == mb;
        return Ok(WelchTest {
            t: if same {
                0.0
            } else {
                (ma - mb).signum() * f64::INFINITY
            },
            df: na + nb - 2.0,
            p_value: if same { 1.0 } else { 0.0 },
        });
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / df_denominator;
    let p_value = (2.0 * student_t_cdf(-t.abs(), df)).min(1.0);
    Ok(WelchTest { t, df, p_value })
}

/// Result of a paired t-test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedTest {
    /// Mean of the differences a − b.
    pub mean_diff: f64,
    /// t statistic of the mean difference.
    pub t: f64,
    /// Degrees of freedom (pairs − 1).
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// The significance level below which a difference counts as resolved (results/PROTOCOL.md).
pub const ALPHA: f64 = 0.05;

impl PairedTest {
    /// Whether the difference is resolved at [`ALPHA`] (p ≤ 0.05).
    pub fn resolved(&self) -> bool {
        self.p_value <= ALPHA
    }

    /// "paired t = 2.31, p = 0.048: resolved" or "…: not resolved (p > 0.05)", for claim checks
    /// and notes.
    pub fn verdict(&self) -> String {
        format!(
            "paired t = {:.2}, {}: {}",
            self.t,
            format_p(self.p_value),
            if self.resolved() {
                "resolved".to_string()
            } else {
                format!("not resolved (p > {ALPHA})")
            }
        )
    }
}

/// "p = 0.048", or "p < 0.001" for small ones.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {p:.3}")
    }
}

/// Paired t-test (two-sided) on `a[i] − b[i]`, as `scipy.stats.ttest_rel(a, b)`: the test for
/// methods run on the same seeds (same initialisation and data order), where the seed-to-seed
/// spread that Welch's test counts cancels.
///
/// Needs at least two pairs. Differences with zero spread give t = ±∞ (p = 0) when their mean is
/// non-zero and t = 0 (p = 1) when every pair is equal.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<PairedTest> {
    if a.len() != b.len() {
        bail!(
            "a paired t-test needs samples of equal length (got {} and {})",
            a.len(),
            b.len()
        );
    }
    if a.len() < 2 {
        bail!("a paired t-test needs at least 2 pairs (got {})", a.len());
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        bail!("a paired t-test got a non-finite value");
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (m, s) = mean_std(&d);
    let df = (d.len() - 1) as f64;
    if s == 0.0 {
        let zero = m == 0.0;
        return Ok(PairedTest {
            mean_diff: m,
            t: if zero {
                0.0
            } else {
                m.signum() * f64::INFINITY
            },
            df,
            p_value: if zero { 1.0 } else { 0.0 },
        });
    }
    let t = m / (s / (d.len() as f64).sqrt());
    let p_value = (2.0 * student_t_cdf(-t.abs(), df)).min(1.0);
    Ok(PairedTest {
        mean_diff: m,
        t,
        df,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
    }

    // Reference values: SciPy 1.17.1 (`stats.t.cdf`, `special.betainc`, `stats.ttest_ind`).
    #[test]
    fn incomplete_beta_matches_scipy() {
        close(
            regularized_incomplete_beta(2.5, 0.5, 0.3),
            0.018927124071945658,
            1e-13,
        );
        close(
            regularized_incomplete_beta(10.0, 3.0, 0.9),
            0.889130022255,
            1e-11,
        );
    }

    #[test]
    fn student_t_cdf_matches_scipy() {
        close(student_t_cdf(2.0, 5.0), 0.9490302605850708, 1e-12);
        close(student_t_cdf(-1.3, 2.5), 0.15024339463535416, 1e-12);
        close(student_t_cdf(0.7, 30.0), 0.7553397782501642, 1e-12);
        close(1.0 - student_t_cdf(4.0, 3.0), 0.014004228005073076, 1e-12);
        close(student_t_cdf(0.0, 7.0), 0.5, 1e-15);
    }

    #[test]
    fn welch_matches_scipy() {
        let r = welch_t_test(&[0.412, 0.398, 0.405], &[0.371, 0.380, 0.369, 0.375]).unwrap();
        close(r.t, 6.628090515377537, 1e-10);
        close(r.df, 3.4084013839311202, 1e-10);
        close(r.p_value, 0.004645346614549902, 1e-11);
        let r = welch_t_test(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 6.0]).unwrap();
        close(r.t, -0.7385489458759964, 1e-12);
        close(r.df, 3.532846715328467, 1e-12);
        close(r.p_value, 0.5062141716528481, 1e-11);
    }

    #[test]
    fn welch_edge_cases() {
        assert!(welch_t_test(&[1.0], &[1.0, 2.0]).is_err());
        assert!(welch_t_test(&[1.0, f64::NAN], &[1.0, 2.0]).is_err());
        let r = welch_t_test(&[1.0, 1.0], &[1.0, 1.0]).unwrap();
        assert_eq!((r.t, r.p_value), (0.0, 1.0));
        let r = welch_t_test(&[2.0, 2.0], &[1.0, 1.0]).unwrap();
        assert_eq!((r.t, r.p_value), (f64::INFINITY, 0.0));
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        close(m, 5.0, 1e-15);
        close(s, (32.0f64 / 7.0).sqrt(), 1e-15);
        assert_eq!(sample_std(&[3.0]), 0.0);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn paired_t_test_matches_hand_computed_values() {
        // d = a − b = [1, 2, 3, 4, 5] − [0.5, 1.0, 2.5, 3.0, 6.0] = [0.5, 1, 0.5, 1, −1]:
        // mean 0.4, sample std √0.675 = 0.821584, t = 0.4 / (0.821584 / √5) = 1.088662,
        // df 4, two-sided p = I_{4/(4+t²)}(2, 1/2) = 0.337502 (numerical integration).
        let r = paired_t_test(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.5, 1.0, 2.5, 3.0, 6.0]).unwrap();
        close(r.mean_diff, 0.4, 1e-12);
        close(r.t, 1.088662, 1e-5);
        close(r.df, 4.0, 0.0);
        close(r.p_value, 0.337502, 1e-5);
        // A constant shift is resolved exactly; equal samples are not.
        let r = paired_t_test(&[1.0, 2.0], &[0.0, 1.0]).unwrap();
        assert_eq!((r.t, r.p_value), (f64::INFINITY, 0.0));
        let r = paired_t_test(&[1.0, 2.0], &[1.0, 2.0]).unwrap();
        assert_eq!((r.t, r.p_value), (0.0, 1.0));
        assert!(paired_t_test(&[1.0], &[2.0]).is_err());
        let r = paired_t_test(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.5, 1.0, 2.5, 3.0, 6.0]).unwrap();
        assert_eq!(
            r.verdict(),
            "paired t = 1.09, p = 0.338: not resolved (p > 0.05)"
        );
        let r = paired_t_test(&[1.0, 2.0], &[0.0, 1.0]).unwrap();
        assert_eq!(r.verdict(), "paired t = inf, p < 0.001: resolved");
        assert!(paired_t_test(&[1.0, 2.0], &[2.0]).is_err());
    }
}
