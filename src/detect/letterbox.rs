//! Letterbox preprocessing, as Ultralytics does it (`LetterBox(auto=False,
//! center=True)`): scale the frame to fit the model input keeping its aspect
//! ratio (bilinear, half-pixel centres, like OpenCV's `INTER_LINEAR`), pad
//! the rest with grey 114 evenly on both sides, and map boxes back with the
//! same gain and padding (`scale_boxes`).

use crate::inference::Frame;

/// Grey used for the padding, as in Ultralytics.
pub const PAD_VALUE: u8 = 114;

/// Where a `src_w`×`src_h` frame lands in a `dst_w`×`dst_h` model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub src_w: u32,
    pub src_h: u32,
    pub dst_w: u32,
    pub dst_h: u32,
    /// Size of the scaled frame inside the input.
    pub inner_w: u32,
    pub inner_h: u32,
    /// Padding on the left and at the top.
    pub left: u32,
    pub top: u32,
    /// Model pixels per source pixel.
    pub gain: f64,
}

impl Letterbox {
    pub fn plan(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        let gain = (f64::from(dst_h) / f64::from(src_h)).min(f64::from(dst_w) / f64::from(src_w));
        let inner_w = ((f64::from(src_w) * gain).round_ties_even() as u32).clamp(1, dst_w);
        let inner_h = ((f64::from(src_h) * gain).round_ties_even() as u32).clamp(1, dst_h);
        let dw = f64::from(dst_w - inner_w) / 2.0;
        let dh = f64::from(dst_h - inner_h) / 2.0;
        Letterbox {
            src_w,
            src_h,
            dst_w,
            dst_h,
            inner_w,
            inner_h,
            left: (dw - 0.1).round_ties_even().max(0.0) as u32,
            top: (dh - 0.1).round_ties_even().max(0.0) as u32,
            gain,
        }
    }

    /// The model input `[1, 3, dst_h, dst_w]` as f32 RGB in 0..1, padded with
    /// grey `pad`. `frame`
    /// is either the source (`src_w`×`src_h`, resized here) or already
    /// scaled to `inner_w`×`inner_h` (padded only).
    pub fn apply(&self, frame: &Frame, pad: u8) -> Vec<f32> {
        let inner = if (frame.width, frame.height) == (self.inner_w, self.inner_h) {
            std::borrow::Cow::Borrowed(&frame.data)
        } else {
            std::borrow::Cow::Owned(resize_bilinear(
                &frame.data,
                frame.width,
                frame.height,
                self.inner_w,
                self.inner_h,
            ))
        };
        let (w, h) = (self.dst_w as usize, self.dst_h as usize);
        let (iw, ih) = (self.inner_w as usize, self.inner_h as usize);
        let (left, top) = (self.left as usize, self.top as usize);
        let pad = f32::from(pad) / 255.0;
        let mut out = vec![pad; 3 * w * h];
        let lut: Vec<f32> = (0..256).map(|v| v as f32 / 255.0).collect();
        let plane = w * h;
        for y in 0..ih {
            let row = &inner[y * iw * 3..(y + 1) * iw * 3];
            let base = (y + top) * w + left;
            for (x, px) in row.chunks_exact(3).enumerate() {
                out[base + x] = lut[px[0] as usize];
                out[plane + base + x] = lut[px[1] as usize];
                out[2 * plane + base + x] = lut[px[2] as usize];
            }
        }
        out
    }

    /// A point in model input pixels → source pixels (not clipped).
    pub fn unmap(&self, x: f64, y: f64) -> (f64, f64) {
        (
            (x - f64::from(self.left)) / self.gain,
            (y - f64::from(self.top)) / self.gain,
        )
    }
}

/// Bilinear resize of packed RGB with half-pixel centres (OpenCV's
/// `INTER_LINEAR` arithmetic in floating point), rounded to the nearest byte.
pub fn resize_bilinear(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let taps = |dst: usize, src: usize| -> Vec<(usize, usize, f32)> {
        let scale = src as f64 / dst as f64;
        (0..dst)
            .map(|d| {
                let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(src - 1);
                let i1 = (i0 + 1).min(src - 1);
                (i0, i1, (s - i0 as f64).min(1.0) as f32)
            })
            .collect()
    };
    let xs = taps(dw, sw);
    let ys = taps(dh, sh);
    let mut out = vec![0u8; dw * dh * 3];
    for (dy, &(y0, y1, fy)) in ys.iter().enumerate() {
        let r0 = &src[y0 * sw * 3..(y0 + 1) * sw * 3];
        let r1 = &src[y1 * sw * 3..(y1 + 1) * sw * 3];
        let o = &mut out[dy * dw * 3..(dy + 1) * dw * 3];
        for (dx, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let a = f32::from(r0[x0 * 3 + c]) * (1.0 - fx) + f32::from(r0[x1 * 3 + c]) * fx;
                let b = f32::from(r1[x0 * 3 + c]) * (1.0 - fx) + f32::from(r1[x1 * 3 + c]) * fx;
                o[dx * 3 + c] = (a * (1.0 - fy) + b * fy + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_like_ultralytics() {
        // 1920x1080 into 640x640: gain 1/3, 640x360 inside, 140 px bars.
        let l = Letterbox::plan(1920, 1080, 640, 640);
        assert_eq!((l.inner_w, l.inner_h, l.left, l.top), (640, 360, 0, 140));
        assert!((l.gain - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(l.unmap(320.0, 320.0), (960.0, 540.0));
        // 320x240 into 320x320: no resize, 40 px bars.
        let l = Letterbox::plan(320, 240, 320, 320);
        assert_eq!(
            (l.inner_w, l.inner_h, l.left, l.top, l.gain),
            (320, 240, 0, 40, 1.0)
        );
        // Odd padding: 1 px more at the bottom (round(dh - 0.1)).
        let l = Letterbox::plan(320, 239, 320, 320);
        assert_eq!((l.top, l.inner_h), (40, 239));
    }

    #[test]
    fn pads_with_grey_and_keeps_pixels() {
        let frame = Frame::new(2, 1, vec![255, 0, 0, 0, 0, 255]).unwrap();
        let l = Letterbox::plan(2, 1, 2, 2);
        let x = l.apply(&frame, PAD_VALUE);
        assert_eq!(x.len(), 12);
        // Channel R, row 0 (pad on top: round(0.5 - 0.1) = 0, so padding is at the bottom).
        assert_eq!(l.top, 0);
        assert_eq!(&x[0..2], &[1.0, 0.0]);
        assert!((x[2] - 114.0 / 255.0).abs() < 1e-6);
        assert_eq!(&x[8..10], &[0.0, 1.0]);
    }

    #[test]
    fn resize_keeps_constant_images_and_halves_sensibly() {
        let src = vec![77u8; 4 * 4 * 3];
        assert!(resize_bilinear(&src, 4, 4, 3, 5).iter().all(|&v| v == 77));
        // 2x1 → 1x1 averages the two pixels (half-pixel centres).
        let src = vec![0, 0, 0, 100, 100, 100];
        assert_eq!(resize_bilinear(&src, 2, 1, 1, 1), vec![50, 50, 50]);
    }
}
