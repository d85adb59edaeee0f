//! RGB24 → yuv420p for the fused overlay: the overlay draws on yuv420p, so
//! a framed frame is converted once, in Rust, where FFmpeg would otherwise
//! convert it in the encoder.
//!
//! The conversion is the one FFmpeg applies to untagged RGB going into a
//! yuv420p encoder: BT.601, limited range, each chroma sample the mean of
//! its 2×2 block. Fused and unfused outputs therefore differ by rounding
//! and chroma filtering only.

/// Bytes of one yuv420p frame of `width` × `height`.
pub fn yuv420p_len(width: usize, height: usize) -> usize {
    width * height + 2 * width.div_ceil(2) * height.div_ceil(2)
}

/// Converts packed RGB24 `rgb` into the planar yuv420p buffer `out`
/// (resized to [`yuv420p_len`]).
pub fn rgb_to_yuv420p(rgb: &[u8], width: usize, height: usize, out: &mut Vec<u8>) {
    assert_eq!(rgb.len(), width * height * 3, "an RGB24 frame");
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    out.resize(yuv420p_len(width, height), 0);
    let (y_plane, chroma) = out.split_at_mut(width * height);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    for (row, y_row) in rgb
        .chunks_exact(width * 3)
        .zip(y_plane.chunks_exact_mut(width))
    {
        for (px, y) in row.chunks_exact(3).zip(y_row.iter_mut()) {
            let (r, g, b) = (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]));
            *y = to_u8(16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0);
        }
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut r, mut g, mut b, mut n) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for y in (2 * cy)..(2 * cy + 2).min(height) {
                for x in (2 * cx)..(2 * cx + 2).min(width) {
                    let i = (y * width + x) * 3;
                    r += f32::from(rgb[i]);
                    g += f32::from(rgb[i + 1]);
                    b += f32::from(rgb[i + 2]);
                    n += 1.0;
                }
            }
            let (r, g, b) = (r / n, g / n, b / n);
            u_plane[cy * cw + cx] = to_u8(128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0);
            v_plane[cy * cw + cx] = to_u8(128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0);
        }
    }
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_land_on_their_bt601_limited_range_codes() {
        // 2×2 frames of one colour: Y, then one U, then one V.
        let cases = [
            ([0u8, 0, 0], [16u8, 128, 128]),
            ([255, 255, 255], [235, 128, 128]),
            ([255, 0, 0], [81, 90, 240]),
            ([0, 255, 0], [145, 54, 34]),
            ([0, 0, 255], [41, 240, 110]),
        ];
        for (rgb, [y, u, v]) in cases {
            let frame: Vec<u8> = rgb.repeat(4);
            let mut out = Vec::new();
            rgb_to_yuv420p(&frame, 2, 2, &mut out);
            assert_eq!(out, [y, y, y, y, u, v], "{rgb:?}");
        }
    }

    #[test]
    fn odd_sizes_average_the_partial_chroma_blocks() {
        // 3×1: chroma block 0 holds pixels 0 and 1, block 1 only pixel 2.
        let frame = [0u8, 0, 0, 255, 255, 255, 255, 255, 255];
        let mut out = Vec::new();
        rgb_to_yuv420p(&frame, 3, 1, &mut out);
        assert_eq!(out.len(), yuv420p_len(3, 1));
        assert_eq!(&out[..3], &[16, 235, 235]);
        assert_eq!(&out[3..], &[128, 128, 128, 128]);
    }
}
