//! Drawing on raw yuv420p frames, in place: no colour conversion, so a
//! frame goes from the decoder to the encoder with only the pixels an
//! element touches changed.
//!
//! - **Spotlight:** outside the ellipse every sample moves towards black by
//!   the factor `dim`: `Y' ≈ 16 + dim·(Y − 16)`, `C' ≈ 128 + dim·(C − 128)`
//!   (`RGB' = dim·RGB` for limited-range video), in the integer form of
//!   FFmpeg's `eq` filter ([`super::dim`]) so both renderers agree. Inside
//!   it nothing changes; a soft edge `feather` pixels wide blends the
//!   dimmed and the kept sample (smoothstep). Chroma samples use the
//!   ellipse at their own position.
//! - **Ring:** an anti-aliased ellipse outline.
//! - **Box:** a rectangle outline.
//! - **Text:** glyphs rasterised once (ab_glyph) and blended by coverage.
//!
//! Colours are sRGB, converted with BT.709 for frames 720 lines or taller
//! and BT.601 below (what players assume for untagged video).

use ab_glyph::{Font, PxScale, ScaleFont, point};

use super::dim::DimMap;
use super::spec::Color;
use super::{Paint, Shape};

/// The three planes of one yuv420p frame.
pub struct Planes<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a mut [u8],
    pub u: &'a mut [u8],
    pub v: &'a mut [u8],
}

impl<'a> Planes<'a> {
    /// Splits a rawvideo yuv420p buffer (`PixelFormat::Yuv420p.frame_bytes`).
    pub fn split(buf: &'a mut [u8], width: usize, height: usize) -> Planes<'a> {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let (y, rest) = buf.split_at_mut(width * height);
        let (u, v) = rest.split_at_mut(cw * ch);
        Planes {
            width,
            height,
            y,
            u,
            v: &mut v[..cw * ch],
        }
    }

    fn chroma_size(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }
}

/// An ellipse: centre and radii, in luma pixels (pixel centres at integers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipse {
    pub cx: f64,
    pub cy: f64,
    pub rx: f64,
    pub ry: f64,
}

impl Ellipse {
    /// The same ellipse in chroma sample coordinates (2× subsampled, chroma
    /// sample k centred on luma position 2k + 0.5).
    fn in_chroma(&self) -> Ellipse {
        Ellipse {
            cx: (self.cx - 0.5) / 2.0,
            cy: (self.cy - 0.5) / 2.0,
            rx: self.rx / 2.0,
            ry: self.ry / 2.0,
        }
    }

    /// Half the row's chord at vertical offset `dy`, if the row crosses.
    fn half_chord(&self, dy: f64) -> Option<f64> {
        let q = 1.0 - (dy / self.ry).powi(2);
        (q > 0.0 && self.rx > 0.0).then(|| self.rx * q.sqrt())
    }
}

/// A colour as limited-range Y, Cb, Cr, with its opacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvColor {
    pub y: f32,
    pub u: f32,
    pub v: f32,
    pub alpha: f32,
}

impl YuvColor {
    pub fn from_rgb(c: Color, frame_height: usize) -> YuvColor {
        let (kr, kb) = if frame_height >= 720 {
            (0.2126, 0.0722)
        } else {
            (0.299, 0.114)
        };
        let (r, g, b) = (
            f64::from(c.r) / 255.0,
            f64::from(c.g) / 255.0,
            f64::from(c.b) / 255.0,
        );
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        YuvColor {
            y: (16.0 + 219.0 * y) as f32,
            u: (128.0 + 224.0 * (b - y) / (2.0 * (1.0 - kb))) as f32,
            v: (128.0 + 224.0 * (r - y) / (2.0 * (1.0 - kr))) as f32,
            alpha: f32::from(c.a) / 255.0,
        }
    }
}

#[inline]
fn blend(dst: &mut u8, value: f32, alpha: f32) {
    let d = f32::from(*dst);
    *dst = (d + (value - d) * alpha + 0.5).clamp(0.0, 255.0) as u8;
}

/// Dims whole spans by `dim_sample` (vectorises).
#[inline]
fn dim_span(row: &mut [u8], dim_sample: impl Fn(u8) -> u8) {
    for px in row {
        *px = dim_sample(*px);
    }
}

fn smoothstep(s: f64) -> f64 {
    let s = s.clamp(0.0, 1.0);
    s * s * (3.0 - 2.0 * s)
}

/// Darkens one plane outside `e` (soft edge `feather` wide), towards `off`.
fn spotlight_plane(
    plane: &mut [u8],
    pw: usize,
    ph: usize,
    e: Ellipse,
    feather: f64,
    dim_sample: impl Fn(u8) -> u8 + Copy,
) {
    let outer = Ellipse {
        rx: e.rx + feather,
        ry: e.ry + feather,
        ..e
    };
    let band = |row: &mut [u8], x0: usize, x1: usize, dy: f64| {
        for (x, px) in row.iter_mut().enumerate().take(x1).skip(x0) {
            let dx = x as f64 - e.cx;
            let r_in = ((dx / e.rx).powi(2) + (dy / e.ry).powi(2)).sqrt();
            let r_out = ((dx / outer.rx).powi(2) + (dy / outer.ry).powi(2)).sqrt();
            let s = if r_in <= 1.0 {
                0.0
            } else if r_out >= 1.0 || r_in <= r_out {
                1.0
            } else {
                (r_in - 1.0) / (r_in - r_out)
            };
            let v = f64::from(*px);
            let dimmed = f64::from(dim_sample(*px));
            *px = (dimmed + (v - dimmed) * (1.0 - smoothstep(s)) + 0.5).clamp(0.0, 255.0) as u8;
        }
    };
    let clamp_x = |v: f64| v.clamp(0.0, pw as f64) as usize;
    for (j, row) in plane.chunks_exact_mut(pw).take(ph).enumerate() {
        let dy = j as f64 - e.cy;
        let Some(ho) = outer.half_chord(dy) else {
            dim_span(row, dim_sample);
            continue;
        };
        let o0 = clamp_x((e.cx - ho).ceil());
        let o1 = clamp_x((e.cx + ho).floor() + 1.0).max(o0);
        dim_span(&mut row[..o0], dim_sample);
        dim_span(&mut row[o1..], dim_sample);
        match e.half_chord(dy) {
            Some(hi) => {
                let i0 = clamp_x((e.cx - hi).ceil()).clamp(o0, o1);
                let i1 = clamp_x((e.cx + hi).floor() + 1.0).clamp(i0, o1);
                band(row, o0, i0, dy);
                band(row, i1, o1, dy);
            }
            None => band(row, o0, o1, dy),
        }
    }
}

/// Darkens everything outside `e` by `dim` (0 black .. 1 unchanged), with a
/// soft edge `feather` pixels wide outside the ellipse.
pub fn spotlight(p: &mut Planes<'_>, e: Ellipse, feather: f64, dim: f64) {
    if dim >= 1.0 {
        return;
    }
    let (w, h) = (p.width, p.height);
    let map = DimMap::new(dim);
    spotlight_plane(p.y, w, h, e, feather, |v| map.luma(v));
    let (cw, ch) = p.chroma_size();
    let ce = e.in_chroma();
    spotlight_plane(p.u, cw, ch, ce, feather / 2.0, |v| map.chroma(v));
    spotlight_plane(p.v, cw, ch, ce, feather / 2.0, |v| map.chroma(v));
}

/// Coverage of a `thickness`-wide outline of `e` at `(x, y)`, anti-aliased.
fn ring_alpha(e: &Ellipse, thickness: f64, x: f64, y: f64) -> f64 {
    let (dx, dy) = (x - e.cx, y - e.cy);
    let r = ((dx / e.rx).powi(2) + (dy / e.ry).powi(2)).sqrt();
    if r == 0.0 {
        return 0.0;
    }
    let grad = ((dx / (e.rx * e.rx)).powi(2) + (dy / (e.ry * e.ry)).powi(2)).sqrt() / r;
    let dist = (r - 1.0) / grad.max(1e-9);
    (thickness / 2.0 + 0.5 - dist.abs()).clamp(0.0, 1.0)
}

fn ring_plane(
    plane: &mut [u8],
    pw: usize,
    ph: usize,
    e: Ellipse,
    thickness: f64,
    value: f32,
    alpha: f32,
) {
    let m = thickness / 2.0 + 1.0;
    let x0 = (e.cx - e.rx - m).floor().max(0.0) as usize;
    let x1 = ((e.cx + e.rx + m).ceil().max(0.0) as usize).min(pw);
    let y0 = (e.cy - e.ry - m).floor().max(0.0) as usize;
    let y1 = ((e.cy + e.ry + m).ceil().max(0.0) as usize).min(ph);
    for y in y0..y1 {
        let row = &mut plane[y * pw..(y + 1) * pw];
        for (x, px) in row.iter_mut().enumerate().take(x1).skip(x0) {
            let a = ring_alpha(&e, thickness, x as f64, y as f64);
            if a > 0.0 {
                blend(px, value, alpha * a as f32);
            }
        }
    }
}

/// An anti-aliased ellipse outline.
pub fn ring(p: &mut Planes<'_>, e: Ellipse, thickness: f64, color: YuvColor) {
    if e.rx <= 0.0 || e.ry <= 0.0 {
        return;
    }
    let (w, h) = (p.width, p.height);
    ring_plane(p.y, w, h, e, thickness, color.y, color.alpha);
    let (cw, ch) = p.chroma_size();
    let ce = e.in_chroma();
    ring_plane(
        p.u,
        cw,
        ch,
        ce,
        (thickness / 2.0).max(1.0),
        color.u,
        color.alpha,
    );
    ring_plane(
        p.v,
        cw,
        ch,
        ce,
        (thickness / 2.0).max(1.0),
        color.v,
        color.alpha,
    );
}

fn fill_plane(
    plane: &mut [u8],
    pw: usize,
    ph: usize,
    r: (f64, f64, f64, f64),
    value: f32,
    alpha: f32,
) {
    let (x0, y0, x1, y1) = r;
    let cx = |v: f64| (v.round().max(0.0) as usize).min(pw);
    let cy = |v: f64| (v.round().max(0.0) as usize).min(ph);
    let (x0, x1, y0, y1) = (cx(x0), cx(x1), cy(y0), cy(y1));
    for y in y0..y1 {
        for px in &mut plane[y * pw + x0..y * pw + x1.max(x0)] {
            blend(px, value, alpha);
        }
    }
}

fn fill(p: &mut Planes<'_>, r: (f64, f64, f64, f64), color: YuvColor) {
    let (w, h) = (p.width, p.height);
    fill_plane(p.y, w, h, r, color.y, color.alpha);
    let (cw, ch) = p.chroma_size();
    let cr = (r.0 / 2.0, r.1 / 2.0, r.2 / 2.0, r.3 / 2.0);
    fill_plane(p.u, cw, ch, cr, color.u, color.alpha);
    fill_plane(p.v, cw, ch, cr, color.v, color.alpha);
}

/// A rectangle outline, `thickness` wide, centred on the box's edges.
pub fn rectangle(
    p: &mut Planes<'_>,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    thickness: f64,
    color: YuvColor,
) {
    let t = thickness / 2.0;
    let (x0, y0, x1, y1) = (x - t, y - t, x + w + t, y + h + t);
    fill(p, (x0, y0, x1, y + t), color);
    fill(p, (x0, y + h - t, x1, y1), color);
    fill(p, (x0, y + t, x + t, y + h - t), color);
    fill(p, (x + w - t, y + t, x1, y + h - t), color);
}

/// A text label rasterised once: an 8-bit coverage bitmap.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBitmap {
    pub width: usize,
    pub height: usize,
    pub coverage: Vec<u8>,
}

impl TextBitmap {
    /// Lays out `text` on one line, `size` pixels to the em.
    pub fn render(font: &impl Font, text: &str, size: f32) -> TextBitmap {
        let em = font.units_per_em().unwrap_or(1000.0);
        let scale = PxScale::from(size * font.height_unscaled() / em);
        let scaled = font.as_scaled(scale);
        let ascent = scaled.ascent();
        let height = (ascent - scaled.descent()).ceil().max(1.0) as usize;
        let mut glyphs = Vec::new();
        let mut pen = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            glyphs.push(id.with_scale_and_position(scale, point(pen, ascent)));
            pen += scaled.h_advance(id);
            prev = Some(id);
        }
        let width = pen.ceil().max(1.0) as usize + 2;
        let mut coverage = vec![0u8; width * height];
        for outline in glyphs.into_iter().filter_map(|g| font.outline_glyph(g)) {
            let min = outline.px_bounds().min;
            outline.draw(|col, row, c| {
                let (x, y) = (min.x as i64 + i64::from(col), min.y as i64 + i64::from(row));
                if x < 0 || y < 0 || x as usize >= width || y as usize >= height {
                    return;
                }
                let dst = &mut coverage[y as usize * width + x as usize];
                *dst = (*dst).max((c.clamp(0.0, 1.0) * 255.0).round() as u8);
            });
        }
        TextBitmap {
            width,
            height,
            coverage,
        }
    }

    /// Blends the text at top-left `(x, y)` in `color`.
    pub fn draw(&self, p: &mut Planes<'_>, x: i64, y: i64, color: YuvColor) {
        let (w, h) = (p.width as i64, p.height as i64);
        for row in 0..self.height as i64 {
            let py = y + row;
            if py < 0 || py >= h {
                continue;
            }
            for col in 0..self.width as i64 {
                let px = x + col;
                if px < 0 || px >= w {
                    continue;
                }
                let c = self.coverage[(row * self.width as i64 + col) as usize];
                if c != 0 {
                    let a = color.alpha * f32::from(c) / 255.0;
                    blend(&mut p.y[(py * w + px) as usize], color.y, a);
                }
            }
        }
        // Chroma: mean coverage of each 2×2 block.
        let (cw, ch) = p.chroma_size();
        let cx0 = (x.div_euclid(2)).max(0);
        let cy0 = (y.div_euclid(2)).max(0);
        let cx1 = ((x + self.width as i64 + 1) / 2).min(cw as i64);
        let cy1 = ((y + self.height as i64 + 1) / 2).min(ch as i64);
        for cy in cy0..cy1 {
            for cx in cx0..cx1 {
                let mut sum = 0u32;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let (col, row) = (2 * cx + dx - x, 2 * cy + dy - y);
                    if col >= 0
                        && row >= 0
                        && (col as usize) < self.width
                        && (row as usize) < self.height
                    {
                        sum += u32::from(self.coverage[row as usize * self.width + col as usize]);
                    }
                }
                if sum != 0 {
                    let a = color.alpha * sum as f32 / (4.0 * 255.0);
                    let i = cy as usize * cw + cx as usize;
                    blend(&mut p.u[i], color.u, a);
                    blend(&mut p.v[i], color.v, a);
                }
            }
        }
    }
}

/// Draws one layer on a frame: what [`super::Scene::draw`] does per layer.
pub fn draw(p: &mut Planes<'_>, paint: Paint, shape: Shape<'_>) {
    match (paint, shape) {
        (Paint::Keep { dim }, Shape::Lit { e, feather }) => spotlight(p, e, feather, dim),
        (Paint::Colour(c), Shape::Ring { e, thickness }) => ring(p, e, thickness, c),
        (Paint::Colour(c), Shape::Fill { r }) => fill(p, (r[0], r[1], r[2], r[3]), c),
        (Paint::Colour(c), Shape::Bitmap { bitmap, x, y }) => bitmap.draw(p, x, y, c),
        (paint, shape) => unreachable!("no scene pairs {paint:?} with {shape:?}"),
    }
}

/// A coverage mask: 8-bit alpha, `width`×`height` at `stride`, whose
/// pixel (0, 0) is frame pixel `(ox, oy)`. What FFmpeg's graph blends a
/// layer with ([`super::graph`]).
pub struct Mask<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
    pub ox: i64,
    pub oy: i64,
}

impl Mask<'_> {
    fn clear(&mut self) {
        for row in self.data.chunks_mut(self.stride).take(self.height) {
            row[..self.width].fill(0);
        }
    }

    fn row(&mut self, j: usize) -> &mut [u8] {
        &mut self.data[j * self.stride..j * self.stride + self.width]
    }
}

#[inline]
fn to_byte(a: f64) -> u8 {
    (a * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// The spotlight's "keep" coverage: 255 inside `e`, 0 beyond its soft
/// edge, `1 − smoothstep` across it, as [`spotlight`] weighs the dimming.
/// Writes every pixel of the mask, so it needs no clearing first.
fn lit_mask(m: &mut Mask<'_>, e: Ellipse, feather: f64) {
    let outer = Ellipse {
        rx: e.rx + feather,
        ry: e.ry + feather,
        ..e
    };
    let (w, ox) = (m.width, m.ox);
    let clamp_x = |v: f64| (v - ox as f64).clamp(0.0, w as f64) as usize;
    for j in 0..m.height {
        let dy = (m.oy + j as i64) as f64 - e.cy;
        let row = m.row(j);
        let Some(ho) = outer.half_chord(dy) else {
            row.fill(0);
            continue;
        };
        let o0 = clamp_x((e.cx - ho).ceil());
        let o1 = clamp_x((e.cx + ho).floor() + 1.0).max(o0);
        let (i0, i1) = match e.half_chord(dy) {
            Some(hi) => {
                let i0 = clamp_x((e.cx - hi).ceil()).clamp(o0, o1);
                (i0, clamp_x((e.cx + hi).floor() + 1.0).clamp(i0, o1))
            }
            None => (o1, o1),
        };
        row[..o0].fill(0);
        row[i0..i1].fill(255);
        row[o1..].fill(0);
        let soft = SoftEdge::new(e, outer, dy);
        let x0 = (ox + o0 as i64) as f32 - e.cx as f32;
        soft.fill(&mut row[o0..i0], x0);
        soft.fill(&mut row[i1..o1], x0 + (i1 - o0) as f32);
    }
}

/// One row of the spotlight's soft edge, in `f32` and without branches so
/// that the loop vectorises: this is most of the overlay's own CPU time.
struct SoftEdge {
    in_x: f32,
    in_y: f32,
    out_x: f32,
    out_y: f32,
}

impl SoftEdge {
    fn new(e: Ellipse, outer: Ellipse, dy: f64) -> SoftEdge {
        SoftEdge {
            in_x: (1.0 / (e.rx * e.rx)) as f32,
            in_y: (dy * dy / (e.ry * e.ry)) as f32,
            out_x: (1.0 / (outer.rx * outer.rx)) as f32,
            out_y: (dy * dy / (outer.ry * outer.ry)) as f32,
        }
    }

    /// Fills `row`, whose first pixel is `dx0` right of the centre.
    fn fill(&self, row: &mut [u8], dx0: f32) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.fill_avx2(row, dx0) };
        }
        self.fill_any(row, dx0)
    }

    /// The same loop compiled for AVX2: twice the lanes, the same IEEE
    /// operations (no FMA), so the same bytes as on any other CPU.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn fill_avx2(&self, row: &mut [u8], dx0: f32) {
        self.fill_any(row, dx0)
    }

    #[inline(always)]
    fn fill_any(&self, row: &mut [u8], dx0: f32) {
        // An `i32` index converts to `f32` in SIMD lanes (a `usize` one
        // is converted lane by lane); below 2^24 both are exact.
        for (px, i) in row.iter_mut().zip(0i32..) {
            let dx = dx0 + i as f32;
            let d2 = dx * dx;
            let r_in = (d2 * self.in_x + self.in_y).sqrt();
            let r_out = (d2 * self.out_x + self.out_y).sqrt();
            // Inside (r_in ≤ 1) gives s ≤ 0, past the edge (r_out ≥ 1) s ≥ 1.
            let s = ((r_in - 1.0) / (r_in - r_out).max(1e-6)).clamp(0.0, 1.0);
            let a = 1.0 - s * s * (3.0 - 2.0 * s);
            *px = (a * 255.0 + 0.5) as u8;
        }
    }
}

/// `ring_alpha` in `f32` without branches (it vectorises), for one row.
#[derive(Clone, Copy)]
struct RingRow {
    irx2: f32,
    irx4: f32,
    /// `dy²/ry²` and `dy²/ry⁴` of the row.
    ay: f32,
    gy: f32,
    half: f32,
    alpha: f32,
}

impl RingRow {
    /// Fills `row`, pixel `first + i` of a mask row whose pixel 0 is
    /// `dx0` right of the centre.
    fn fill(&self, row: &mut [u8], dx0: f32, first: usize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.fill_avx2(row, dx0, first) };
        }
        self.fill_any(row, dx0, first)
    }

    /// See [`SoftEdge::fill_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn fill_avx2(&self, row: &mut [u8], dx0: f32, first: usize) {
        self.fill_any(row, dx0, first)
    }

    #[inline(always)]
    fn fill_any(&self, row: &mut [u8], dx0: f32, first: usize) {
        // As in [`SoftEdge::fill_any`]: an `i32` index, exact below 2^24.
        for (px, i) in row.iter_mut().zip(first as i32..) {
            let dx = dx0 + i as f32;
            let r2 = dx * dx * self.irx2 + self.ay;
            let r = r2.sqrt().max(1e-9);
            let grad = (dx * dx * self.irx4 + self.gy).sqrt() / r;
            let dist = (r - 1.0) / grad.max(1e-9);
            let a = (self.half - dist.abs()).clamp(0.0, 1.0) * self.alpha;
            let a = if r2 > 1e-12 { a } else { 0.0 };
            *px = (a * 255.0 + 0.5) as u8;
        }
    }
}

/// Writes every pixel of the mask (no clearing needed), computing the
/// coverage only in the band where it can be non-zero.
fn ring_mask(m: &mut Mask<'_>, e: Ellipse, thickness: f64, alpha: f32) {
    if e.rx <= 0.0 || e.ry <= 0.0 {
        for j in 0..m.height {
            m.row(j).fill(0);
        }
        return;
    }
    let (irx2, iry2) = ((1.0 / (e.rx * e.rx)) as f32, (1.0 / (e.ry * e.ry)) as f32);
    let half = (thickness / 2.0 + 0.5) as f32;
    // `r` (the ellipse's radial coordinate) is homogeneous, so its gradient
    // is at most 1/min(rx, ry) and `|dist| ≥ |r − 1|·min(rx, ry)`: coverage
    // is zero outside the ellipse scaled by 1 + δ and inside 1 − δ (a
    // pixel's margin added).
    let delta = (f64::from(half) + 1.0) / e.rx.min(e.ry);
    let scaled = |s: f64| Ellipse {
        rx: e.rx * s,
        ry: e.ry * s,
        ..e
    };
    let (outer, inner) = (scaled(1.0 + delta), scaled((1.0 - delta).max(0.0)));
    let (w, ox) = (m.width, m.ox);
    let clamp_x = |v: f64| (v - ox as f64).clamp(0.0, w as f64) as usize;
    let dx0 = (ox as f64 - e.cx) as f32;
    for j in 0..m.height {
        let dy64 = (m.oy + j as i64) as f64 - e.cy;
        let row = m.row(j);
        let Some(ho) = outer.half_chord(dy64) else {
            row.fill(0);
            continue;
        };
        let o0 = clamp_x((e.cx - ho).floor() - 1.0);
        let o1 = clamp_x((e.cx + ho).ceil() + 2.0).max(o0);
        let (i0, i1) = match inner.half_chord(dy64) {
            Some(hi) => {
                let i0 = clamp_x((e.cx - hi).ceil() + 1.0).clamp(o0, o1);
                (i0, clamp_x((e.cx + hi).floor() - 1.0).clamp(i0, o1))
            }
            None => (o1, o1),
        };
        let dy = dy64 as f32;
        let ring = RingRow {
            irx2,
            irx4: irx2 * irx2,
            ay: dy * dy * iry2,
            gy: dy * dy * (iry2 * iry2),
            half,
            alpha,
        };
        row[..o0].fill(0);
        row[i0..i1].fill(0);
        row[o1..].fill(0);
        ring.fill(&mut row[o0..i0], dx0, o0);
        ring.fill(&mut row[i1..o1], dx0, i1);
    }
}

/// A filled rectangle, rounded as [`fill_plane`] rounds it.
fn fill_mask(m: &mut Mask<'_>, r: [f64; 4], alpha: f32) {
    let value = to_byte(f64::from(alpha));
    let cx = |v: f64| (v.round() as i64 - m.ox).clamp(0, m.width as i64) as usize;
    let cy = |v: f64| (v.round() as i64 - m.oy).clamp(0, m.height as i64) as usize;
    let (x0, x1) = (cx(r[0]), cx(r[2]));
    for j in cy(r[1])..cy(r[3]) {
        m.row(j)[x0..x1.max(x0)].fill(value);
    }
}

fn bitmap_mask(m: &mut Mask<'_>, b: &TextBitmap, x: i64, y: i64, alpha: f32) {
    for row in 0..b.height as i64 {
        let j = y + row - m.oy;
        if j < 0 || j >= m.height as i64 {
            continue;
        }
        let (stride, width) = (m.stride, m.width as i64);
        let dst = &mut m.data[j as usize * stride..];
        for col in 0..b.width as i64 {
            let i = x + col - m.ox;
            if i >= 0 && i < width {
                let c = b.coverage[(row * b.width as i64 + col) as usize];
                dst[i as usize] = to_byte(f64::from(alpha) * f64::from(c) / 255.0);
            }
        }
    }
}

/// Renders one layer's coverage into `m`, every pixel of it.
pub fn mask(m: &mut Mask<'_>, paint: Paint, shape: Shape<'_>) {
    let alpha = match paint {
        Paint::Keep { .. } => 1.0,
        Paint::Colour(c) => c.alpha,
    };
    // The ellipses write every pixel; the others draw on a cleared mask.
    match shape {
        Shape::Lit { e, feather } => lit_mask(m, e, feather),
        Shape::Ring { e, thickness } => ring_mask(m, e, thickness, alpha),
        Shape::Fill { r } => {
            m.clear();
            fill_mask(m, r, alpha)
        }
        Shape::Bitmap { bitmap, x, y } => {
            m.clear();
            bitmap_mask(m, bitmap, x, y, alpha)
        }
    }
}

/// `shape` moved by whole pixels.
pub fn shifted(shape: Shape<'_>, dx: i64, dy: i64) -> Shape<'_> {
    let (fx, fy) = (dx as f64, dy as f64);
    let move_e = |e: Ellipse| Ellipse {
        cx: e.cx + fx,
        cy: e.cy + fy,
        ..e
    };
    match shape {
        Shape::Lit { e, feather } => Shape::Lit {
            e: move_e(e),
            feather,
        },
        Shape::Ring { e, thickness } => Shape::Ring {
            e: move_e(e),
            thickness,
        },
        Shape::Fill { r } => Shape::Fill {
            r: [r[0] + fx, r[1] + fy, r[2] + fx, r[3] + fy],
        },
        Shape::Bitmap { bitmap, x, y } => Shape::Bitmap {
            bitmap,
            x: x + dx,
            y: y + dy,
        },
    }
}

/// Frame pixels a shape may touch: `(x0, y0, x1, y1)`, ends exclusive,
/// with a pixel of margin for rounding.
pub fn bounds(shape: Shape<'_>) -> (i64, i64, i64, i64) {
    let span = |lo: f64, hi: f64| (lo.floor() as i64 - 1, hi.ceil() as i64 + 2);
    let ((x0, x1), (y0, y1)) = match shape {
        Shape::Lit { e, feather } => (
            span(e.cx - e.rx - feather, e.cx + e.rx + feather),
            span(e.cy - e.ry - feather, e.cy + e.ry + feather),
        ),
        Shape::Ring { e, thickness } => {
            let m = thickness / 2.0 + 1.0;
            (
                span(e.cx - e.rx - m, e.cx + e.rx + m),
                span(e.cy - e.ry - m, e.cy + e.ry + m),
            )
        }
        Shape::Fill { r } => (span(r[0], r[2]), span(r[1], r[3])),
        Shape::Bitmap { bitmap, x, y } => {
            ((x, x + bitmap.width as i64), (y, y + bitmap.height as i64))
        }
    };
    (x0, y0, x1, y1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, y: u8, c: u8) -> Vec<u8> {
        let mut buf = vec![y; w * h];
        buf.extend(vec![c; 2 * w.div_ceil(2) * h.div_ceil(2)]);
        buf
    }

    #[test]
    fn spotlight_dims_outside_and_keeps_inside() {
        let (w, h) = (64, 48);
        let mut buf = frame(w, h, 216, 178);
        let mut p = Planes::split(&mut buf, w, h);
        let e = Ellipse {
            cx: 32.0,
            cy: 24.0,
            rx: 10.0,
            ry: 8.0,
        };
        spotlight(&mut p, e, 4.0, 0.5);
        // Inside: untouched. Far outside: eq's map, within a level of
        // 16 + 0.5·200 = 116 and 128 + 0.5·50 = 153.
        let map = DimMap::new(0.5);
        assert_eq!(p.y[24 * w + 32], 216);
        assert_eq!(p.y[0], map.luma(216));
        assert_eq!(p.y[24 * w + 2], map.luma(216));
        assert!(p.y[0].abs_diff(116) <= 1, "{}", p.y[0]);
        assert_eq!(p.u[0], map.chroma(178));
        assert!(p.u[0].abs_diff(153) <= 1, "{}", p.u[0]);
        assert_eq!(p.v[12 * 32 + 16], 178);
        // The soft edge is in between.
        let edge = p.y[24 * w + 32 + 12];
        assert!(edge > p.y[0] && edge < 216, "{edge}");
    }

    #[test]
    fn colours_convert() {
        let white = YuvColor::from_rgb(Color::rgb(255, 255, 255), 1080);
        assert!((white.y - 235.0).abs() < 0.01 && (white.u - 128.0).abs() < 0.01);
        let red = YuvColor::from_rgb(Color::rgb(255, 0, 0), 480);
        assert!(
            (red.y - 81.5).abs() < 0.1 && (red.v - 240.0).abs() < 0.1,
            "{red:?}"
        );
    }

    #[test]
    fn ring_and_box_touch_only_their_outline() {
        let (w, h) = (64, 64);
        let mut buf = frame(w, h, 16, 128);
        let mut p = Planes::split(&mut buf, w, h);
        let white = YuvColor::from_rgb(Color::rgb(255, 255, 255), h);
        ring(
            &mut p,
            Ellipse {
                cx: 32.0,
                cy: 32.0,
                rx: 20.0,
                ry: 10.0,
            },
            2.0,
            white,
        );
        assert_eq!(p.y[32 * w + 32], 16);
        assert!(p.y[32 * w + 52] > 200);
        assert!(p.y[22 * w + 32] > 200);
        rectangle(&mut p, 4.0, 4.0, 10.0, 10.0, 2.0, white);
        assert!(p.y[4 * w + 8] > 200);
        assert_eq!(p.y[9 * w + 9], 16);
    }

    /// The ring's mask computed only in its band, and the lit mask written
    /// without clearing, equal the per-pixel formula everywhere, however
    /// dirty the slot was.
    #[test]
    fn band_limited_masks_equal_the_full_formula() {
        let (w, h) = (140usize, 90usize);
        for (k, (rx, ry, thickness)) in [
            (40.3, 20.7, 3.0),
            (12.2, 30.9, 8.0),
            (3.0, 2.5, 6.0),
            (60.0, 41.0, 1.0),
        ]
        .into_iter()
        .enumerate()
        {
            let e = Ellipse {
                cx: 70.37 + k as f64,
                cy: 44.81,
                rx,
                ry,
            };
            let mut data = vec![77u8; w * h];
            let mut m = Mask {
                data: &mut data,
                stride: w,
                width: w,
                height: h,
                ox: -3,
                oy: 5,
            };
            ring_mask(&mut m, e, thickness, 0.8);
            let (irx2, iry2) = ((1.0 / (rx * rx)) as f32, (1.0 / (ry * ry)) as f32);
            let mut want = vec![0u8; w];
            for j in 0..h {
                let dy = ((5 + j as i64) as f64 - e.cy) as f32;
                RingRow {
                    irx2,
                    irx4: irx2 * irx2,
                    ay: dy * dy * iry2,
                    gy: dy * dy * (iry2 * iry2),
                    half: (thickness / 2.0 + 0.5) as f32,
                    alpha: 0.8,
                }
                .fill(&mut want, (-3.0 - e.cx) as f32, 0);
                assert_eq!(&data[j * w..(j + 1) * w], &want[..], "ellipse {k} row {j}");
            }
            assert!(data.iter().any(|&v| v > 150), "ellipse {k} drew its ring");

            // Unwritten pixels would keep their old value and differ.
            let mut dirty = vec![77u8; w * h];
            let mut clean = vec![0u8; w * h];
            for buf in [&mut dirty, &mut clean] {
                let mut m = Mask {
                    data: buf,
                    stride: w,
                    width: w,
                    height: h,
                    ox: -3,
                    oy: 5,
                };
                lit_mask(&mut m, e, 6.5);
            }
            assert!(clean.contains(&255) && clean.contains(&0), "ellipse {k}");
            assert_eq!(dirty, clean, "ellipse {k}");
        }
    }
}
