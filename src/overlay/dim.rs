//! The spotlight's dimming, defined as FFmpeg's `eq` filter computes it, so
//! that the filter graph ([`super::graph`]) and the Rust compositor
//! ([`super::render`]) give the same samples. `eq` is the cheapest
//! whole-frame map FFmpeg has (SIMD, about a tenth of `lutyuv`'s time on a
//! 1080p frame), and the dimming is the one filter that touches every pixel.
//!
//! `eq` maps a sample `v` to `clamp(⌊v·c / 4096⌋ + o)`, with `c` the
//! contrast (luma) or saturation (chroma) in 12-bit fixed point and `o`
//! `⌊⌊100·b + 100⌋·511 / 200⌋ − 128 − ⌊c / 32⌋`, `b` the brightness (luma
//! only; 0 for chroma). The brightness moves in steps of 511/200 levels,
//! so the luma offset is the step nearest to `16 + dim·(Y − 16)` and black
//! may land one level off; neutral chroma lands on 127, not 128 (eq's own
//! rounding, invisible at one level in 224).

/// The dimming by one factor: `eq`'s arguments and its per-sample map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimMap {
    /// `dim` in 12-bit fixed point, below 4096 (at 4096 `eq` copies chroma).
    contrast: i32,
    /// `⌊100·b + 100⌋`, 0..=200: the brightness step.
    brightness_step: i32,
}

impl DimMap {
    /// The map for `dim` (0 black .. 1 unchanged).
    pub fn new(dim: f64) -> DimMap {
        let contrast = (dim.clamp(0.0, 1.0) * 4096.0).round().min(4095.0) as i32;
        // The shift floors, so aim half a level above 16·(1 − dim).
        let want = 16.0 * (1.0 - f64::from(contrast) / 4096.0) + 0.5;
        let brightness_step = (0..=200)
            .min_by(|&a, &b| {
                let off = |k: i32| (f64::from(Self::offset(contrast, k)) - want).abs();
                off(a).total_cmp(&off(b))
            })
            .unwrap_or(100);
        DimMap {
            contrast,
            brightness_step,
        }
    }

    fn offset(contrast: i32, step: i32) -> i32 {
        step * 511 / 200 - 128 - contrast / 32
    }

    fn apply(&self, v: u8, offset: i32) -> u8 {
        (((i32::from(v) * self.contrast) >> 12) + offset).clamp(0, 255) as u8
    }

    /// A luma sample dimmed.
    pub fn luma(&self, v: u8) -> u8 {
        self.apply(v, Self::offset(self.contrast, self.brightness_step))
    }

    /// A chroma sample dimmed (`eq` gives chroma no brightness).
    pub fn chroma(&self, v: u8) -> u8 {
        self.apply(v, Self::offset(self.contrast, 100))
    }

    /// The `eq` filter that dims a frame by this map. The brightness is
    /// spelled half a step above `step − 100` hundredths so that `eq`'s
    /// truncation of `100·b + 100` lands on `step` whatever the rounding.
    pub fn eq_filter(&self) -> String {
        let contrast = f64::from(self.contrast) / 4096.0;
        let brightness = (f64::from(self.brightness_step) - 99.5) / 100.0;
        format!("eq=contrast={contrast:.12}:brightness={brightness:.4}:saturation={contrast:.12}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_close_to_scaling_rgb_towards_black() {
        for dim in [0.0, 0.25, 0.45, 0.8, 0.999] {
            let m = DimMap::new(dim);
            for v in [16u8, 60, 128, 200, 235] {
                let ideal = 16.0 + dim * (f64::from(v) - 16.0);
                let got = f64::from(m.luma(v));
                assert!(
                    (got - ideal).abs() <= 2.0,
                    "dim {dim} Y {v}: {got} vs {ideal}"
                );
                let ideal = 128.0 + dim * (f64::from(v) - 128.0);
                let got = f64::from(m.chroma(v));
                assert!(
                    (got - ideal).abs() <= 2.0,
                    "dim {dim} C {v}: {got} vs {ideal}"
                );
            }
        }
    }

    #[test]
    fn the_filter_spells_the_contrast_exactly_and_the_step_safely() {
        let m = DimMap::new(0.45);
        assert_eq!(m.contrast, 1843);
        let f = m.eq_filter();
        assert!(
            f.starts_with("eq=contrast=0.449951171875:brightness="),
            "{f}"
        );
        let b: f64 = f
            .split("brightness=")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!((100.0 * b + 100.0) as i32, m.brightness_step);
        // Never the identity that would make eq copy chroma untouched.
        assert_eq!(DimMap::new(1.0).contrast, 4095);
    }
}
