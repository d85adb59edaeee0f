//! The upscaler: batches of RGB frames in, frames ×scale out.
//!
//! Frames are u8 RGB, `H×W×3`. They become `[N,3,H,W]` f32 in 0..1, run
//! through the model in batches of `batch_size`, and come back clamped to
//! 0..1 and rounded to u8.
//!
//! **Tiling.** A frame larger than `tile` (input pixels, either side) is cut
//! into a grid of core tiles of at most `tile`×`tile`. Each tile runs with
//! `overlap` pixels of real image context on every side (less at the image's
//! edge), and only its core is kept: every output pixel comes from exactly one
//! tile, the one it is deepest inside. When `overlap` is at least the model's
//! receptive-field radius (`context_px` in the manifest, the default), each
//! kept pixel sees exactly the inputs it sees untiled, so tiled output equals
//! untiled output up to float rounding and no seam can show.

use std::sync::Arc;

use ndarray::{Array4, ArrayView4, ArrayViewMut4, Axis, Ix4, s};
use ort::session::Session;
use ort::value::TensorRef;

use super::session::{LoadOptions, LoadedModel, load};
use super::{InferenceError, ort_err};
use crate::models::{Manifest, Task};

/// Frames larger than this (input pixels, either side) are tiled by default.
pub const DEFAULT_TILE: u32 = 1024;
/// Overlap when the manifest gives no `context_px`.
pub const DEFAULT_OVERLAP: u32 = 16;

/// One RGB frame: `height` rows of `width` pixels of 3 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Frame {
    /// Checks that `data` holds `width × height × 3` bytes.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Frame, InferenceError> {
        let want = width as usize * height as usize * 3;
        if width == 0 || height == 0 || data.len() != want {
            return Err(InferenceError::BadInput(format!(
                "a {width}x{height} RGB frame needs {want} bytes, got {}",
                data.len()
            )));
        }
        Ok(Frame {
            width,
            height,
            data,
        })
    }

    /// The frame as an `H×W×3` array view.
    pub fn view(&self) -> ndarray::ArrayView3<'_, u8> {
        ndarray::ArrayView3::from_shape((self.height as usize, self.width as usize, 3), &self.data)
            .expect("Frame invariant: data is width*height*3")
    }

    /// Copies an `H×W×3` array into a frame.
    pub fn from_array(a: ndarray::ArrayView3<'_, u8>) -> Result<Frame, InferenceError> {
        let (h, w, c) = a.dim();
        if c != 3 {
            return Err(InferenceError::BadInput(format!(
                "frames must be H×W×3 RGB, got {c} channels"
            )));
        }
        Frame::new(w as u32, h as u32, a.iter().copied().collect())
    }
}

/// Upscaler settings.
#[derive(Debug, Clone)]
pub struct UpscalerConfig {
    /// A model from the manifest whose task is `upscale`.
    pub model: String,
    pub load: LoadOptions,
    /// Frames per model run.
    pub batch_size: usize,
    /// Largest input side run in one piece; larger frames are tiled.
    /// `None` never tiles.
    pub tile: Option<u32>,
    /// Context around each tile; `None` takes the model's `context_px`.
    pub tile_overlap: Option<u32>,
}

impl UpscalerConfig {
    pub fn new(model: impl Into<String>) -> UpscalerConfig {
        UpscalerConfig {
            model: model.into(),
            load: LoadOptions::default(),
            batch_size: 1,
            tile: Some(DEFAULT_TILE),
            tile_overlap: None,
        }
    }
}

/// A warmed-up upscaling model with its batching and tiling settings.
/// Cheap to create once the model is loaded (sessions are shared).
#[derive(Debug, Clone)]
pub struct Upscaler {
    model: Arc<LoadedModel>,
    scale: usize,
    batch_size: usize,
    tile: Option<usize>,
    overlap: usize,
}

impl Upscaler {
    /// Loads (or reuses) the model's session and checks that it upscales.
    pub fn new(manifest: &Manifest, config: &UpscalerConfig) -> Result<Upscaler, InferenceError> {
        let entry = manifest.get(&config.model)?;
        if entry.task != Task::Upscale {
            return Err(InferenceError::BadInput(format!(
                "model `{}` is a {} model, not an upscaler",
                entry.name, entry.task
            )));
        }
        if config.batch_size == 0 {
            return Err(InferenceError::BadInput(
                "batch size must be at least 1".into(),
            ));
        }
        if config.tile == Some(0) {
            return Err(InferenceError::BadInput(
                "tile size must be at least 1".into(),
            ));
        }
        let model = load(manifest, &config.model, &config.load)?;
        let scale = model.entry.scale.unwrap_or(1) as usize;
        let overlap = config
            .tile_overlap
            .or(model.entry.context_px)
            .unwrap_or(DEFAULT_OVERLAP) as usize;
        Ok(Upscaler {
            model,
            scale,
            batch_size: config.batch_size,
            tile: config.tile.map(|t| t as usize),
            overlap,
        })
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Output size / input size (4 for the Real-ESRGAN x4 models).
    pub fn scale(&self) -> u32 {
        self.scale as u32
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Model runs per batch for `h`×`w` input: 1, or the number of tiles.
    pub fn tiles_for(&self, h: usize, w: usize) -> usize {
        match self.tile {
            Some(t) if h > t || w > t => tile_grid(h, w, t, self.overlap).len(),
            _ => 1,
        }
    }

    /// `cpu` or `cuda:<GPU name>`, for audit records.
    pub fn device_name(&self) -> String {
        self.model.device_name()
    }

    /// Upscales frames of one size; returns them in order.
    pub fn upscale(&self, frames: &[Frame]) -> Result<Vec<Frame>, InferenceError> {
        let Some(first) = frames.first() else {
            return Ok(Vec::new());
        };
        let (w, h) = (first.width as usize, first.height as usize);
        let mut input = Vec::with_capacity(frames.len() * w * h * 3);
        for (i, f) in frames.iter().enumerate() {
            if (f.width as usize, f.height as usize) != (w, h) || f.data.len() != w * h * 3 {
                return Err(InferenceError::BadInput(format!(
                    "frame {i} is {}x{} but frame 0 is {w}x{h}: one call takes frames of one size",
                    f.width, f.height
                )));
            }
            input.extend_from_slice(&f.data);
        }
        let input = ArrayView4::from_shape((frames.len(), h, w, 3), &input)
            .expect("shape matches the bytes gathered");
        let out = self.upscale_array(input)?;
        let (ow, oh) = (w * self.scale, h * self.scale);
        let data = out.into_raw_vec_and_offset().0;
        Ok(data
            .chunks_exact(ow * oh * 3)
            .map(|c| Frame {
                width: ow as u32,
                height: oh as u32,
                data: c.to_vec(),
            })
            .collect())
    }

    /// Upscales `[N,H,W,3]` u8 frames to `[N,H·s,W·s,3]` u8.
    pub fn upscale_array(&self, frames: ArrayView4<'_, u8>) -> Result<Array4<u8>, InferenceError> {
        let (n, h, w, c) = frames.dim();
        if c != 3 || h == 0 || w == 0 {
            return Err(InferenceError::BadInput(format!(
                "frames must be N×H×W×3 RGB with H, W ≥ 1; got {n}×{h}×{w}×{c}"
            )));
        }
        let s = self.scale;
        let mut out = Array4::<u8>::zeros((n, h * s, w * s, 3));
        let tiles = match self.tile {
            Some(t) if h > t || w > t => tile_grid(h, w, t, self.overlap),
            _ => vec![Tile::whole(h, w)],
        };
        for start in (0..n).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(n);
            let batch = frames.slice(s![start..end, .., .., ..]);
            let mut out_batch = out.slice_mut(s![start..end, .., .., ..]);
            for t in &tiles {
                let x = to_nchw(batch.slice(s![.., t.y0..t.y1, t.x0..t.x1, ..]));
                self.run(x.view(), |y| {
                    write_back(y, t, s, &mut out_batch);
                })?;
            }
        }
        Ok(out)
    }

    /// Upscales `[N,3,H,W]` f32 (0..1) to the model's raw `[N,3,H·s,W·s]`
    /// f32 output (not clamped), in batches of `batch_size`, tiled like
    /// [`upscale_array`](Self::upscale_array). For pipelines that convert
    /// to tensors and back to pixels in stages of their own.
    pub fn upscale_tensor(&self, x: ArrayView4<'_, f32>) -> Result<Array4<f32>, InferenceError> {
        let (n, c, h, w) = x.dim();
        if c != 3 || h == 0 || w == 0 {
            return Err(InferenceError::BadInput(format!(
                "input must be N×3×H×W with H, W ≥ 1; got {n}×{c}×{h}×{w}"
            )));
        }
        let s = self.scale;
        let tiles = match self.tile {
            Some(t) if h > t || w > t => tile_grid(h, w, t, self.overlap),
            _ => vec![Tile::whole(h, w)],
        };
        let mut out = Array4::<f32>::zeros((n, 3, h * s, w * s));
        for start in (0..n).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(n);
            for t in &tiles {
                let part = x.slice(s![start..end, .., t.y0..t.y1, t.x0..t.x1]);
                let part = part.as_standard_layout();
                let oy = (t.core_y0 - t.y0) * s;
                let ox = (t.core_x0 - t.x0) * s;
                let ch = (t.core_y1 - t.core_y0) * s;
                let cw = (t.core_x1 - t.core_x0) * s;
                let mut dst = out.slice_mut(s![
                    start..end,
                    ..,
                    t.core_y0 * s..t.core_y0 * s + ch,
                    t.core_x0 * s..t.core_x0 * s + cw
                ]);
                let want = (end - start, 3, (t.y1 - t.y0) * s, (t.x1 - t.x0) * s);
                self.run(part.view(), |y| {
                    if y.dim() != want {
                        return Err(InferenceError::Ort {
                            context: "read the output tensor".into(),
                            message: format!(
                                "the model gave {:?} for {want:?}; is `scale` in the manifest right?",
                                y.dim()
                            ),
                        });
                    }
                    dst.assign(&y.slice(s![.., .., oy..oy + ch, ox..ox + cw]));
                    Ok(())
                })??;
            }
        }
        Ok(out)
    }

    /// Runs the model on `[N,3,H,W]` f32 input (0..1) and hands the raw
    /// `[N,3,H·s,W·s]` output to `f`. This is the model-only path the
    /// benchmark times.
    pub fn run<R>(
        &self,
        input: ArrayView4<'_, f32>,
        f: impl FnOnce(ArrayView4<'_, f32>) -> R,
    ) -> Result<R, InferenceError> {
        let input_name = self.model.entry.inputs[0].as_str();
        let output_name = self.model.entry.outputs[0].as_str();
        let mut session = self.model.lock();
        #[cfg(feature = "cuda")]
        if self.model.device.is_cuda() {
            return cuda_io::run_bound(&mut session, input_name, output_name, input, self.scale, f);
        }
        run_plain(&mut session, input_name, output_name, input, f)
    }
}

fn run_plain<R>(
    session: &mut Session,
    input_name: &str,
    output_name: &str,
    input: ArrayView4<'_, f32>,
    f: impl FnOnce(ArrayView4<'_, f32>) -> R,
) -> Result<R, InferenceError> {
    let x = TensorRef::from_array_view(input).map_err(ort_err("wrap the input tensor"))?;
    let outputs = session
        .run(ort::inputs![input_name => x])
        .map_err(ort_err("run the model"))?;
    let y = outputs
        .get(output_name)
        .ok_or_else(|| InferenceError::Ort {
            context: "read the output".into(),
            message: format!("the model has no output `{output_name}`"),
        })?
        .try_extract_array::<f32>()
        .map_err(ort_err("read the output tensor"))?;
    let y = y
        .into_dimensionality::<Ix4>()
        .map_err(|e| InferenceError::Ort {
            context: "read the output tensor".into(),
            message: e.to_string(),
        })?;
    Ok(f(y))
}

/// IoBinding on CUDA: input and output live in pinned host memory that the
/// GPU reads and writes by DMA, and ONNX Runtime binds them directly instead
/// of staging through pageable copies. Compiled with `--features cuda`.
#[cfg(feature = "cuda")]
mod cuda_io {
    use ndarray::{ArrayView4, Ix4};
    use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
    use ort::session::Session;
    use ort::value::Tensor;

    use super::super::{InferenceError, ort_err};

    pub(super) fn run_bound<R>(
        session: &mut Session,
        input_name: &str,
        output_name: &str,
        input: ArrayView4<'_, f32>,
        scale: usize,
        f: impl FnOnce(ArrayView4<'_, f32>) -> R,
    ) -> Result<R, InferenceError> {
        let (n, c, h, w) = input.dim();
        let pinned = |mem| {
            MemoryInfo::new(AllocationDevice::CUDA_PINNED, 0, AllocatorType::Device, mem)
                .and_then(|info| Allocator::new(session, info))
                .map_err(ort_err("create a pinned-memory allocator"))
        };
        let in_alloc = pinned(MemoryType::CPUInput)?;
        let out_alloc = pinned(MemoryType::CPUOutput)?;
        let mut x =
            Tensor::<f32>::new(&in_alloc, [n, c, h, w]).map_err(ort_err("allocate the input"))?;
        {
            let (_, dst) = x.extract_tensor_mut();
            match input.as_slice() {
                Some(src) => dst.copy_from_slice(src),
                None => dst.iter_mut().zip(input.iter()).for_each(|(d, s)| *d = *s),
            }
        }
        let y = Tensor::<f32>::new(&out_alloc, [n, c, h * scale, w * scale])
            .map_err(ort_err("allocate the output"))?;
        let mut binding = session
            .create_binding()
            .map_err(ort_err("create an IoBinding"))?;
        binding
            .bind_input(input_name, &x)
            .map_err(ort_err("bind the input"))?;
        binding
            .bind_output(output_name, y)
            .map_err(ort_err("bind the output"))?;
        let outputs = session
            .run_binding(&binding)
            .map_err(ort_err("run the model"))?;
        let y = outputs[output_name]
            .try_extract_array::<f32>()
            .map_err(ort_err("read the output tensor"))?
            .into_dimensionality::<Ix4>()
            .map_err(|e| InferenceError::Ort {
                context: "read the output tensor".into(),
                message: e.to_string(),
            })?;
        Ok(f(y))
    }
}

/// A region of the input: the part run through the model (`y0..y1`,
/// `x0..x1`, core plus overlap) and the core kept from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tile {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
    core_y0: usize,
    core_y1: usize,
    core_x0: usize,
    core_x1: usize,
}

impl Tile {
    fn whole(h: usize, w: usize) -> Tile {
        Tile {
            y0: 0,
            y1: h,
            x0: 0,
            x1: w,
            core_y0: 0,
            core_y1: h,
            core_x0: 0,
            core_x1: w,
        }
    }
}

/// Splits `0..len` into `ceil(len/tile)` cores of near-equal size; each core
/// is padded by `overlap` on both sides, clamped to the image.
fn spans(len: usize, tile: usize, overlap: usize) -> Vec<(usize, usize, usize, usize)> {
    let n = len.div_ceil(tile);
    (0..n)
        .map(|i| {
            let c0 = i * len / n;
            let c1 = (i + 1) * len / n;
            (c0.saturating_sub(overlap), (c1 + overlap).min(len), c0, c1)
        })
        .collect()
}

pub(crate) fn tile_grid(h: usize, w: usize, tile: usize, overlap: usize) -> Vec<Tile> {
    let mut out = Vec::new();
    for &(y0, y1, core_y0, core_y1) in &spans(h, tile, overlap) {
        for &(x0, x1, core_x0, core_x1) in &spans(w, tile, overlap) {
            out.push(Tile {
                y0,
                y1,
                x0,
                x1,
                core_y0,
                core_y1,
                core_x0,
                core_x1,
            });
        }
    }
    out
}

/// `[N,H,W,3]` u8 → `[N,3,H,W]` f32 in 0..1.
fn to_nchw(frames: ArrayView4<'_, u8>) -> Array4<f32> {
    let (n, h, w, _) = frames.dim();
    let mut x = Array4::<f32>::zeros((n, 3, h, w));
    for (src, mut dst) in frames.outer_iter().zip(x.outer_iter_mut()) {
        for ((y, xx, c), v) in src.indexed_iter() {
            dst[[c, y, xx]] = f32::from(*v) * (1.0 / 255.0);
        }
    }
    x
}

/// Copies the tile's core from the model output `y` (`[b,3,th·s,tw·s]`)
/// into `out` (`[b,H·s,W·s,3]`), clamping to 0..1 and rounding to u8.
fn write_back(y: ArrayView4<'_, f32>, t: &Tile, s: usize, out: &mut ArrayViewMut4<'_, u8>) {
    let oy = (t.core_y0 - t.y0) * s;
    let ox = (t.core_x0 - t.x0) * s;
    let ch = (t.core_y1 - t.core_y0) * s;
    let cw = (t.core_x1 - t.core_x0) * s;
    for (yb, mut ob) in y.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
        let mut dst = ob.slice_mut(s![
            t.core_y0 * s..t.core_y0 * s + ch,
            t.core_x0 * s..t.core_x0 * s + cw,
            ..
        ]);
        for c in 0..3 {
            let plane = yb.slice(s![c, oy..oy + ch, ox..ox + cw]);
            for ((r, col), v) in plane.indexed_iter() {
                dst[[r, col, c]] = to_u8(*v);
            }
        }
    }
}

#[inline]
fn to_u8(v: f32) -> u8 {
    // NaN clamps to NaN and casts to 0.
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_pixel_once() {
        for (h, w, t, o) in [
            (100, 130, 32, 8),
            (64, 64, 64, 34),
            (7, 300, 50, 0),
            (360, 640, 96, 34),
        ] {
            let grid = tile_grid(h, w, t, o);
            let mut hits = vec![0u8; h * w];
            for tile in &grid {
                assert!(tile.core_y1 - tile.core_y0 <= t && tile.core_x1 - tile.core_x0 <= t);
                assert!(tile.y0 <= tile.core_y0 && tile.y1 >= tile.core_y1 && tile.y1 <= h);
                assert!(tile.core_y0 - tile.y0 == o.min(tile.core_y0));
                for y in tile.core_y0..tile.core_y1 {
                    for x in tile.core_x0..tile.core_x1 {
                        hits[y * w + x] += 1;
                    }
                }
            }
            assert!(hits.iter().all(|&c| c == 1), "{h}x{w} tile {t}");
        }
    }

    #[test]
    fn conversions_round_and_clamp() {
        assert_eq!(to_u8(-0.2), 0);
        assert_eq!(to_u8(1.7), 255);
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(0.5), 128);
        let f = ndarray::Array4::from_shape_fn((1, 2, 2, 3), |(_, y, x, c)| {
            (y * 6 + x * 3 + c) as u8 * 20
        });
        let x = to_nchw(f.view());
        assert_eq!(x[[0, 2, 1, 0]], f[[0, 1, 0, 2]] as f32 / 255.0);
    }
}
