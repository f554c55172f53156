//! Numbers as people read them in tables, tick labels and formulas: four significant digits at
//! most, trailing zeros dropped, and for large values a prefix (1.5M rather than 1500000.0).
//! The one formatter of the lab and the CLI.

/// `v` with a prefix (k, M, B, T: thousand, million, billion, trillion, as parameter and token
/// counts are spoken, "MiniCPM-2.4B") from a thousand up, four significant digits at most and no
/// trailing zeros: 1.5M, 200k, 4.25, 0.001; from 1e15 up in e-notation (3.0e18).
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e15 {
        return format!("{v:.1e}");
    }
    let prefix = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(scale, _)| a >= *scale);
    match prefix {
        Some((scale, unit)) => format!("{}{unit}", significant(v / scale)),
        None => significant(v),
    }
}

/// A coefficient as it reads in a formula: four significant digits and no prefix within
/// [1e-3, 1e5) (482, 1.82), e-notation with four significant digits outside it (2.500e-6).
pub fn coefficient(v: f64) -> String {
    if (1e-3..1e5).contains(&v.abs()) {
        significant(v)
    } else {
        format!("{v:.3e}")
    }
}

/// Four significant digits (no more than six decimals), trailing zeros and point dropped.
fn significant(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{x:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_significant_digits() {
        let cases = [
            (1_500_000.0, "1.5M"),
            (200_000.0, "200k"),
            (1_234_567.0, "1.235M"),
            (-2_500.0, "-2.5k"),
            (2.4e9, "2.4B"),
            (7e12, "7T"),
            (999.0, "999"),
            (4.25, "4.25"),
            (0.001, "0.001"),
            (0.000_012_34, "0.000012"),
            (0.0, "0"),
            (3e18, "3.0e18"),
        ];
        for (v, want) in cases {
            assert_eq!(compact(v), want, "{v}");
        }
    }

    #[test]
    fn coefficients_switch_to_e_notation_outside_the_readable_range() {
        assert_eq!(coefficient(482.01), "482");
        assert_eq!(coefficient(1.82), "1.82");
        assert_eq!(coefficient(-0.5), "-0.5");
        assert_eq!(coefficient(2.5e-6), "2.500e-6");
        assert_eq!(coefficient(123_456.0), "1.235e5");
    }
}
