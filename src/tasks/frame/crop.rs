//! Stage 2's work: the crop of each decoded frame, as the model's input.
//!
//! FFmpeg decodes only the region the crop ever touches ([`decode_region`]):
//! the union of its boxes and a margin, on even coordinates, so that colour
//! conversion near the crop sees the same neighbours as a whole-frame
//! decode and the pixels are the same; a 480x270 crop of a 1080p source
//! moves a sixteenth of the bytes.
//!
//! The model input has one size for the whole clip (batches need one shape):
//! the crop's size, or for keyframes the largest keyframe box. A box of that
//! size is copied exactly, its position rounded to whole pixels (a pan never
//! blurs). A smaller box (a keyframed zoom) is resampled bilinearly up to it.

use super::params::Crop;

/// Pixels around the crop's boxes that FFmpeg decodes too.
pub const DECODE_MARGIN: u32 = 8;

/// The part of a `width`×`height` frame to decode for `crop`: `(x, y, w,
/// h)`, the union of the crop's boxes widened by [`DECODE_MARGIN`], on even
/// coordinates and of even size (FFmpeg's RGB conversion of an odd-sized
/// 4:2:0 crop differs from the whole frame's), clamped to the frame; an axis
/// that cannot be made even inside the frame is decoded whole.
pub fn decode_region(crop: &Crop, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let boxes = crop.boxes("crop");
    let axis = |lo: u32, hi: u32, size: u32| -> (u32, u32) {
        let lo = lo.saturating_sub(DECODE_MARGIN) / 2 * 2;
        let mut hi = (hi + DECODE_MARGIN).min(size);
        if (hi - lo) % 2 == 1 {
            if hi < size {
                hi += 1;
            } else {
                return (0, size);
            }
        }
        (lo, hi - lo)
    };
    let (x, w) = axis(
        boxes.iter().map(|(_, r)| r.x).min().unwrap_or(0),
        boxes.iter().map(|(_, r)| r.x + r.w).max().unwrap_or(width),
        width,
    );
    let (y, h) = axis(
        boxes.iter().map(|(_, r)| r.y).min().unwrap_or(0),
        boxes.iter().map(|(_, r)| r.y + r.h).max().unwrap_or(height),
        height,
    );
    (x, y, w, h)
}

/// Where each frame's crop comes from, and the tensor it becomes.
#[derive(Debug, Clone)]
pub struct CropPlan {
    crop: Crop,
    fps: f64,
    /// The decoded region's corner in the source frame.
    pub off_x: f64,
    pub off_y: f64,
    /// Decoded frame size (the region's).
    pub src_w: usize,
    pub src_h: usize,
    /// Model input size.
    pub in_w: usize,
    pub in_h: usize,
}

impl CropPlan {
    /// `crop` must already be validated against the source frame;
    /// `region` is the decoded part of it, `(x, y, w, h)`, holding every box.
    pub fn new(crop: &Crop, fps: f64, region: (u32, u32, u32, u32)) -> CropPlan {
        let (in_w, in_h) = crop.input_size();
        let (rx, ry, src_w, src_h) = region;
        CropPlan {
            crop: crop.clone(),
            fps: if fps > 0.0 { fps } else { 30.0 },
            off_x: f64::from(rx),
            off_y: f64::from(ry),
            src_w: src_w as usize,
            src_h: src_h as usize,
            in_w: in_w as usize,
            in_h: in_h as usize,
        }
    }

    /// Floats in one frame's input tensor (`3 × in_h × in_w`).
    pub fn input_len(&self) -> usize {
        3 * self.in_h * self.in_w
    }

    /// Bytes in one decoded source frame (RGB24).
    pub fn frame_len(&self) -> usize {
        3 * self.src_h * self.src_w
    }

    /// The box of frame `index` (its time is `index / fps`), in source pixels.
    pub fn box_for(&self, index: u64) -> [f64; 4] {
        self.crop.at(index as f64 / self.fps)
    }

    /// [`box_for`](Self::box_for) in the decoded region's pixels.
    fn local_box(&self, index: u64) -> [f64; 4] {
        let [x, y, w, h] = self.box_for(index);
        [x - self.off_x, y - self.off_y, w, h]
    }

    /// Writes frame `index`'s crop of `frame` (RGB24, the source size) into
    /// `dst`: planar `[3, in_h, in_w]` f32 in 0..1.
    pub fn fill(&self, index: u64, frame: &[u8], dst: &mut [f32]) {
        debug_assert_eq!(frame.len(), self.frame_len());
        debug_assert_eq!(dst.len(), self.input_len());
        let [x, y, w, h] = self.local_box(index);
        let same_size = (w - self.in_w as f64).abs() < 1e-6 && (h - self.in_h as f64).abs() < 1e-6;
        if same_size {
            let x0 = (x.round().max(0.0) as usize).min(self.src_w - self.in_w);
            let y0 = (y.round().max(0.0) as usize).min(self.src_h - self.in_h);
            self.copy(frame, x0, y0, dst);
        } else {
            self.resample(frame, [x, y, w, h], dst);
        }
    }

    fn copy(&self, frame: &[u8], x0: usize, y0: usize, dst: &mut [f32]) {
        let (iw, ih) = (self.in_w, self.in_h);
        let plane = iw * ih;
        let (r, rest) = dst.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        const K: f32 = 1.0 / 255.0;
        for row in 0..ih {
            let start = ((y0 + row) * self.src_w + x0) * 3;
            let src = &frame[start..start + iw * 3];
            let o = row * iw;
            let (r, g, b) = (&mut r[o..o + iw], &mut g[o..o + iw], &mut b[o..o + iw]);
            for (i, px) in src.chunks_exact(3).enumerate() {
                r[i] = f32::from(px[0]) * K;
                g[i] = f32::from(px[1]) * K;
                b[i] = f32::from(px[2]) * K;
            }
        }
    }

    /// Bilinear sampling of the box `[x, y, w, h]` onto the input grid
    /// (pixel centres aligned), edges clamped to the frame.
    fn resample(&self, frame: &[u8], [x, y, w, h]: [f64; 4], dst: &mut [f32]) {
        let (iw, ih) = (self.in_w, self.in_h);
        let plane = iw * ih;
        let (sx, sy) = (w / iw as f64, h / ih as f64);
        let max_x = (self.src_w - 1) as f64;
        let max_y = (self.src_h - 1) as f64;
        // Horizontal taps are the same for every row.
        let cols: Vec<(usize, usize, f32)> = (0..iw)
            .map(|ox| {
                let fx = (x + (ox as f64 + 0.5) * sx - 0.5).clamp(0.0, max_x);
                let x0 = fx.floor() as usize;
                let x1 = (x0 + 1).min(self.src_w - 1);
                (x0, x1, (fx - x0 as f64) as f32)
            })
            .collect();
        for oy in 0..ih {
            let fy = (y + (oy as f64 + 0.5) * sy - 0.5).clamp(0.0, max_y);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(self.src_h - 1);
            let wy = (fy - y0 as f64) as f32;
            let row0 = &frame[y0 * self.src_w * 3..(y0 + 1) * self.src_w * 3];
            let row1 = &frame[y1 * self.src_w * 3..(y1 + 1) * self.src_w * 3];
            for (ox, &(x0, x1, wx)) in cols.iter().enumerate() {
                for c in 0..3 {
                    let p = |row: &[u8], xx: usize| f32::from(row[xx * 3 + c]);
                    let top = p(row0, x0) + (p(row0, x1) - p(row0, x0)) * wx;
                    let bottom = p(row1, x0) + (p(row1, x1) - p(row1, x0)) * wx;
                    dst[c * plane + oy * iw + ox] = (top + (bottom - top) * wy) / 255.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::{Keyframe, Rect};
    use super::*;

    fn frame(w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_static_box_is_copied_exactly() {
        let (w, h) = (20, 10);
        let f = frame(w, h);
        let plan = CropPlan::new(
            &Crop::Static(Rect {
                x: 3,
                y: 2,
                w: 4,
                h: 3,
            }),
            25.0,
            (0, 0, w as u32, h as u32),
        );
        let mut dst = vec![0.0; plan.input_len()];
        plan.fill(7, &f, &mut dst);
        for c in 0..3 {
            for yy in 0..3 {
                for xx in 0..4 {
                    let want = f32::from(f[((2 + yy) * w + 3 + xx) * 3 + c]) / 255.0;
                    let got = dst[c * 12 + yy * 4 + xx];
                    assert!((want - got).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn the_decoded_region_holds_every_box_on_even_corners() {
        let kf = |t: f64, x: u32, y: u32| Keyframe {
            t,
            x,
            y,
            w: 64,
            h: 36,
        };
        let crop = Crop::Keyframes(vec![kf(0.0, 101, 51), kf(1.0, 301, 21)]);
        assert_eq!(decode_region(&crop, 1920, 1080), (92, 12, 282, 84));
        let odd = Crop::Static(Rect {
            x: 300,
            y: 10,
            w: 20,
            h: 20,
        });
        assert_eq!(decode_region(&odd, 321, 181), (0, 2, 321, 36));
        let edge = Crop::Static(Rect {
            x: 3,
            y: 0,
            w: 317,
            h: 180,
        });
        assert_eq!(decode_region(&edge, 320, 180), (0, 0, 320, 180));
        // A region decode copies the same pixels as a whole-frame one.
        let (w, h) = (40usize, 20usize);
        let f = frame(w, h);
        let c = Crop::Static(Rect {
            x: 13,
            y: 9,
            w: 6,
            h: 4,
        });
        let (rx, ry, rw, rh) = decode_region(&c, w as u32, h as u32);
        let mut region = Vec::new();
        for y in ry..ry + rh {
            let s = ((y as usize * w) + rx as usize) * 3;
            region.extend_from_slice(&f[s..s + rw as usize * 3]);
        }
        let whole = CropPlan::new(&c, 10.0, (0, 0, w as u32, h as u32));
        let part = CropPlan::new(&c, 10.0, (rx, ry, rw, rh));
        let (mut a, mut b) = (vec![0.0; whole.input_len()], vec![0.0; part.input_len()]);
        whole.fill(0, &f, &mut a);
        part.fill(0, &region, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_pan_rounds_and_a_zoom_resamples() {
        let (w, h) = (40, 20);
        let f = frame(w, h);
        let crop = Crop::Keyframes(vec![
            Keyframe {
                t: 0.0,
                x: 0,
                y: 0,
                w: 8,
                h: 4,
            },
            Keyframe {
                t: 1.0,
                x: 10,
                y: 4,
                w: 8,
                h: 4,
            },
            Keyframe {
                t: 2.0,
                x: 10,
                y: 4,
                w: 4,
                h: 2,
            },
        ]);
        let plan = CropPlan::new(&crop, 10.0, (0, 0, w as u32, h as u32));
        assert_eq!((plan.in_w, plan.in_h), (8, 4));
        // t = 0.5: x = 5, y = 2, exact copy.
        let mut a = vec![0.0; plan.input_len()];
        plan.fill(5, &f, &mut a);
        assert!((a[0] - f32::from(f[(2 * w + 5) * 3]) / 255.0).abs() < 1e-6);
        // t = 2: a 4x2 box sampled up to 8x4; values stay within the box's range.
        let mut z = vec![0.0; plan.input_len()];
        plan.fill(20, &f, &mut z);
        assert!(z.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
