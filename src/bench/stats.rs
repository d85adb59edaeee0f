//! The small statistics the benchmarks share.

/// The middle value (the mean of the two middle ones for an even count):
/// on a shared machine a few runs land on a busy moment, and the median
/// ignores them where a mean would not. 0 for no values.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The order statistics `x(k)` and `x(n + 1 - k)` that bracket the median
/// of `xs` with at least 95 % confidence whatever the distribution: `k`
/// is the largest with `P(Binomial(n, 1/2) < k) <= 0.025`. With fewer than
/// six values no pair reaches 95 %, and the whole range is returned.
pub fn median_interval(xs: &[f64]) -> (f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    // P(B <= i) for B ~ Binomial(n, 1/2), summed term by term.
    let (mut term, mut below) = (0.5f64.powi(n as i32), 0.0);
    let mut k = 1;
    for i in 0..n {
        below += term;
        if below > 0.025 {
            break;
        }
        k = i + 1;
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    let k = k.min(n.div_ceil(2));
    (v[k - 1], v[n - k])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn the_median_interval_takes_the_order_statistics_a_binomial_allows() {
        let nine: Vec<f64> = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0].to_vec();
        // n = 9: P(B <= 1) = 10/512 <= 0.025 < P(B <= 2) = 46/512, so k = 2.
        assert_eq!(median_interval(&nine), (2.0, 8.0));
        // n = 20: P(B <= 5) = 0.0207, P(B <= 6) = 0.0577, so k = 6.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_interval(&twenty), (6.0, 15.0));
        // n = 6 is the first to reach 95 % (1/64 each side): the extremes.
        let six: Vec<f64> = (1..=6).map(f64::from).collect();
        assert_eq!(median_interval(&six), (1.0, 6.0));
        // Fewer: no pair reaches 95 %, the range is all there is.
        assert_eq!(median_interval(&[3.0, 1.0, 2.0]), (1.0, 3.0));
        assert_eq!(median_interval(&[0.9]), (0.9, 0.9));
        assert_eq!(median_interval(&[]), (0.0, 0.0));
    }
}
