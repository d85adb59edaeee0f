//! Stage 4's work: the model's output (planar f32, not clamped) to the
//! output size as packed RGB24.
//!
//! Resampling is separable Catmull-Rom (bicubic, a = −0.5), widened when
//! shrinking so that it also filters (as Pillow and FFmpeg's `bicubic` do),
//! in f32, before the one clamp-and-round to u8: precision is lost once.
//! An axis whose size does not change is not resampled at all, so an output
//! of exactly crop × scale is the model's output, clamped and rounded.
//!
//! When the upscaled crop's aspect ratio differs from the output's by more
//! than 1%, the picture is fitted inside and centred on black (letterbox or
//! pillarbox), as `compile` does with clips of another shape; within 1%, it
//! is stretched to fill.

/// Per output position on one axis: the first input index and the weights.
#[derive(Debug, Clone)]
struct Taps {
    starts: Vec<usize>,
    /// `taps` weights per output position, zero-padded.
    weights: Vec<f32>,
    taps: usize,
}

fn catmull_rom(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

impl Taps {
    fn new(input: usize, output: usize) -> Taps {
        let ratio = input as f64 / output as f64;
        let filter_scale = ratio.max(1.0);
        let support = 2.0 * filter_scale;
        let taps = (support.ceil() as usize * 2 + 1).min(input.max(1));
        let mut starts = Vec::with_capacity(output);
        let mut weights = vec![0.0f32; output * taps];
        for i in 0..output {
            let center = (i as f64 + 0.5) * ratio;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(input);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| catmull_rom((j as f64 - center + 0.5) / filter_scale))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            // Keep `taps` weights from a start that stays inside the input.
            let start = lo.min(input - taps);
            let off = lo - start;
            for (k, v) in w.iter().enumerate() {
                if off + k < taps {
                    weights[i * taps + off + k] = *v as f32;
                }
            }
            starts.push(start);
        }
        Taps {
            starts,
            weights,
            taps,
        }
    }
}

/// Turns model outputs of one size into output frames of another.
#[derive(Debug, Clone)]
pub struct Resizer {
    src_w: usize,
    src_h: usize,
    out_w: usize,
    out_h: usize,
    /// Where the picture sits in the output, and its size.
    x0: usize,
    y0: usize,
    pic_w: usize,
    pic_h: usize,
    horizontal: Option<Taps>,
    vertical: Option<Taps>,
    /// Scratch: one plane after the horizontal pass, one after both.
    tmp: Vec<f32>,
    plane: Vec<f32>,
}

impl Resizer {
    pub fn new(src_w: u32, src_h: u32, out_w: u32, out_h: u32) -> Resizer {
        let (sw, sh, ow, oh) = (
            src_w as usize,
            src_h as usize,
            out_w as usize,
            out_h as usize,
        );
        let src_aspect = sw as f64 / sh as f64;
        let out_aspect = ow as f64 / oh as f64;
        let (pic_w, pic_h) = if (src_aspect / out_aspect - 1.0).abs() <= 0.01 {
            (ow, oh)
        } else if src_aspect > out_aspect {
            (ow, ((ow as f64 / src_aspect).round() as usize).clamp(1, oh))
        } else {
            (((oh as f64 * src_aspect).round() as usize).clamp(1, ow), oh)
        };
        Resizer {
            src_w: sw,
            src_h: sh,
            out_w: ow,
            out_h: oh,
            x0: (ow - pic_w) / 2,
            y0: (oh - pic_h) / 2,
            pic_w,
            pic_h,
            horizontal: (pic_w != sw).then(|| Taps::new(sw, pic_w)),
            vertical: (pic_h != sh).then(|| Taps::new(sh, pic_h)),
            tmp: Vec::new(),
            plane: Vec::new(),
        }
    }

    /// Whether the output is the input, clamped and rounded.
    pub fn is_identity(&self) -> bool {
        self.horizontal.is_none() && self.vertical.is_none() && self.x0 == 0 && self.y0 == 0
    }

    /// Bytes of one output frame.
    pub fn out_len(&self) -> usize {
        self.out_w * self.out_h * 3
    }

    /// `(x, y, w, h)` of the picture inside the output frame.
    pub fn placement(&self) -> (usize, usize, usize, usize) {
        (self.x0, self.y0, self.pic_w, self.pic_h)
    }

    /// Resizes one frame: `src` is planar `[3, src_h, src_w]`; `out` gets
    /// `out_h` rows of `out_w` RGB pixels.
    pub fn run(&mut self, src: &[f32], out: &mut [u8]) {
        let (sw, sh) = (self.src_w, self.src_h);
        debug_assert_eq!(src.len(), 3 * sw * sh);
        debug_assert_eq!(out.len(), self.out_len());
        if self.pic_w != self.out_w || self.pic_h != self.out_h {
            out.fill(0);
        }
        let (pw, ph) = (self.pic_w, self.pic_h);
        for c in 0..3 {
            let input = &src[c * sw * sh..(c + 1) * sw * sh];
            // Horizontal pass: sh rows of pw.
            let after_h: &[f32] = match &self.horizontal {
                None => input,
                Some(t) => {
                    self.tmp.resize(sh * pw, 0.0);
                    for (row, dst) in input.chunks_exact(sw).zip(self.tmp.chunks_exact_mut(pw)) {
                        for (x, d) in dst.iter_mut().enumerate() {
                            let s = t.starts[x];
                            let w = &t.weights[x * t.taps..(x + 1) * t.taps];
                            *d = row[s..s + t.taps].iter().zip(w).map(|(a, b)| a * b).sum();
                        }
                    }
                    &self.tmp
                }
            };
            // Vertical pass: ph rows of pw.
            let plane: &[f32] = match &self.vertical {
                None => after_h,
                Some(t) => {
                    self.plane.clear();
                    self.plane.resize(ph * pw, 0.0);
                    for (y, dst) in self.plane.chunks_exact_mut(pw).enumerate() {
                        let s = t.starts[y];
                        for k in 0..t.taps {
                            let w = t.weights[y * t.taps + k];
                            if w == 0.0 {
                                continue;
                            }
                            let row = &after_h[(s + k) * pw..(s + k + 1) * pw];
                            for (d, v) in dst.iter_mut().zip(row) {
                                *d += w * v;
                            }
                        }
                    }
                    &self.plane
                }
            };
            for (y, row) in plane.chunks_exact(pw).enumerate() {
                let o = ((self.y0 + y) * self.out_w + self.x0) * 3;
                let dst = &mut out[o..o + pw * 3];
                for (px, v) in dst.chunks_exact_mut(3).zip(row) {
                    px[c] = to_u8(*v);
                }
            }
        }
    }
}

/// Clamp to 0..1 and round to u8 (half up; NaN → 0). The same values as
/// the upscaler's own rounding, without a libm call per value.
#[inline]
pub fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_clamp_and_round() {
        let src: Vec<f32> = (0..3 * 4 * 2).map(|i| i as f32 / 20.0 - 0.1).collect();
        let mut r = Resizer::new(4, 2, 4, 2);
        assert!(r.is_identity());
        let mut out = vec![0u8; r.out_len()];
        r.run(&src, &mut out);
        // Pixel (x=1, y=1), green: plane 1, index 5.
        assert_eq!(out[(4 + 1) * 3 + 1], to_u8(src[8 + 5]));
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(2.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(0.5), 128);
    }

    #[test]
    fn flat_stays_flat_and_gradients_stay_monotonic() {
        let (sw, sh) = (16, 9);
        let mut src = vec![0.25f32; 3 * sw * sh];
        for y in 0..sh {
            for x in 0..sw {
                src[y * sw + x] = x as f32 / (sw - 1) as f32;
            }
        }
        for (ow, oh) in [(48, 27), (10, 6), (64, 36)] {
            let mut r = Resizer::new(sw as u32, sh as u32, ow, oh);
            let mut out = vec![0u8; r.out_len()];
            r.run(&src, &mut out);
            let (ow, oh) = (ow as usize, oh as usize);
            for y in 0..oh {
                for x in 0..ow {
                    assert_eq!(out[(y * ow + x) * 3 + 1], 64, "flat green at {x},{y}");
                    if x > 0 {
                        assert!(
                            i32::from(out[(y * ow + x) * 3]) + 2
                                >= i32::from(out[(y * ow + x - 1) * 3])
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn another_aspect_is_letterboxed() {
        let src = vec![1.0f32; 3 * 16 * 16];
        let mut r = Resizer::new(16, 16, 32, 16);
        assert_eq!(r.placement(), (8, 0, 16, 16));
        let mut out = vec![7u8; r.out_len()];
        r.run(&src, &mut out);
        assert_eq!(out[0], 0, "bar is black");
        assert_eq!(out[(8 * 32 + 16) * 3], 255, "picture is white");
    }
}
