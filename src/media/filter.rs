//! Spelling values inside FFmpeg filtergraphs safely, and frame-rate helpers.

use std::path::Path;

/// Escapes `value` for use as one option value inside a `-filter_complex`
/// graph, e.g. a `fontfile=` or `textfile=` path.
///
/// FFmpeg unescapes twice: once when it splits the graph into filters
/// (`\` and `'` quoting, and `[ ] , ;` as separators), then once more when it
/// splits a filter's options (`:` separators, `\` and `'` quoting). So the
/// value is first single-quoted for the option level, then every
/// graph-level special character of the result is backslash-escaped.
pub fn escape_value(value: &str) -> String {
    // Level 1: quote, with `'` written as `'\''` (close, escaped quote, reopen).
    let quoted = format!("'{}'", value.replace('\'', "'\\''"));
    // Level 2: protect the graph separators and the quoting characters.
    let mut out = String::with_capacity(quoted.len() * 2);
    for c in quoted.chars() {
        if matches!(c, '\\' | '\'' | '[' | ']' | ',' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// [`escape_value`] for a path, made absolute. Fails on a path that is not
/// UTF-8, which a filtergraph cannot carry.
pub fn escape_path(path: &Path) -> Result<String, String> {
    let abs = super::absolute(path);
    abs.to_str()
        .map(escape_value)
        .ok_or_else(|| format!("path `{}` is not UTF-8", abs.display()))
}

/// A frame rate as the exact rational FFmpeg should use: the NTSC rates
/// (23.976, 29.97, 59.94) as `/1001` fractions, whole rates as integers,
/// anything else to a thousandth.
pub fn fps_rational(fps: f64) -> (u64, u64) {
    for base in [24u64, 30, 60, 48, 120] {
        let ntsc = (base * 1000) as f64 / 1001.0;
        if (fps - ntsc).abs() < 0.005 {
            return (base * 1000, 1001);
        }
    }
    if (fps - fps.round()).abs() < 0.001 {
        return (fps.round().max(1.0) as u64, 1);
    }
    let (n, d) = ((fps * 1000.0).round().max(1.0) as u64, 1000);
    let g = gcd(n, d);
    (n / g, d / g)
}

/// Greatest common divisor.
pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// [`fps_rational`] spelled for FFmpeg (`30`, `30000/1001`).
pub fn fps_string(fps: f64) -> String {
    match fps_rational(fps) {
        (n, 1) => n.to_string(),
        (n, d) => format!("{n}/{d}"),
    }
}

/// [`fps_rational`] as a number.
pub fn fps_exact(fps: f64) -> f64 {
    let (n, d) = fps_rational(fps);
    n as f64 / d as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_both_levels() {
        assert_eq!(escape_value("/a b/c.txt"), r"\'/a b/c.txt\'");
        assert_eq!(escape_value("a:b"), r"\'a:b\'");
        assert_eq!(escape_value("it's"), r"\'it\'\\\'\'s\'");
        assert_eq!(escape_value("x,[y];z"), r"\'x\,\[y\]\;z\'");
    }

    #[test]
    fn frame_rates() {
        assert_eq!(fps_string(30.0), "30");
        assert_eq!(fps_string(29.97), "30000/1001");
        assert_eq!(fps_string(23.976), "24000/1001");
        assert_eq!(fps_string(12.5), "25/2");
        assert!((fps_exact(29.97) - 29.97003).abs() < 1e-4);
    }
}
