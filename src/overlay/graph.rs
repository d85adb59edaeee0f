//! The overlay drawn inside FFmpeg's filter graph, so that no decoded frame
//! leaves FFmpeg: the decode → draw → encode pipes cost about a fifth of
//! the codec's speed on two cores (issue 17).
//!
//! Every layer of a [`Scene`] is a coverage mask that moves. Rust renders
//! each layer's mask at its own size (its largest extent over the clip)
//! into one small 8-bit "atlas" frame per video frame, its slots packed,
//! and writes the atlas to FFmpeg's stdin: one byte a mask pixel, as the
//! pipe's copies and wake-ups are most of what the overlay costs beyond
//! its blends. The graph cuts each layer's slot out of the atlas and
//! blends it where the layer is at that frame:
//!
//! - the spotlight: the frame dimmed by `eq` (its SIMD map, defined for
//!   both renderers in [`super::dim`]), with the undimmed frame put back
//!   through the mask (`crop`, `alphamerge`, `overlay`);
//! - a ring, a box edge, a text or its shadow: a picture of its colour's
//!   exact Y, Cb, Cr, made once per colour and repeated (`trim`, `loop`),
//!   the mask merged in as alpha, then overlaid; a text's time window is
//!   the overlay's `enable`.
//!
//! A layer that is the same mask at the same place in every frame (a
//! caption) is "fixed": its mask is read once and the finished layer is
//! repeated, so the graph blends it but builds it once. When the scene
//! also has moving layers, the fixed masks travel in a prologue frame
//! ahead of the others, so they are piped once, not with every frame.
//!
//! A layer's place at each frame is spelled as an expression of the frame
//! time `t`: a balanced tree of `if(lt(t, …))` over the runs of frames at
//! the same place, with boundaries half a frame from any frame time, so
//! no rounding can move a mask one frame off its picture. The video is
//! made constant-rate from 0 first (`setpts`, `fps`), as the atlas is;
//! `fps` is left out when the clip's header shows it is already.
//! The graph carries no caller text: a text's pixels come through the
//! atlas, and numbers are the only values spelled into it, each escaped
//! for both levels of FFmpeg's parsing all the same.

use std::fmt::Write as _;

use super::dim::DimMap;
use super::render::{self, Mask};
use super::{Layer, Paint, Scene};
use crate::media::filter::{escape_value, fps_exact, fps_string};

/// One layer's place in the atlas and in the frame.
#[derive(Debug, Clone)]
struct Slot {
    width: usize,
    height: usize,
    /// First atlas row of the slot.
    top: usize,
    /// First atlas column of the slot (even).
    left: usize,
    /// The slot's top-left in the frame at each planned frame (even, so
    /// chroma lines up); held after the last.
    origins: Vec<(i64, i64)>,
    /// Frames `[from, to)` the layer is shown in, when not all.
    window: Option<(u64, u64)>,
    /// The same mask at the same place in every frame (a caption): the
    /// graph takes its mask once and repeats the finished layer.
    fixed: bool,
}

/// The filter graph for one scene on one clip, and how to fill its atlas.
#[derive(Debug, Clone)]
pub struct GraphPlan {
    slots: Vec<Slot>,
    /// Atlas size: the widest slot by the slots stacked.
    pub atlas_width: usize,
    pub atlas_height: usize,
    /// The atlas starts with a prologue frame of the fixed layers' masks,
    /// and the moving layers' masks for frame `k` are atlas frame `k + 1`:
    /// a caption's rows are not piped again with every frame. Only when
    /// the scene has both kinds.
    prologue: bool,
    fps: f64,
    fps_spelled: String,
    /// The clip goes through `fps` to put its frames on the atlas's grid.
    /// Off for a clip whose header already puts them there
    /// ([`GraphPlan::for_constant_rate`]).
    resample: bool,
}

/// Frames a clip of `duration` seconds has at `fps`, at least one.
pub fn planned_frames(duration: f64, fps: f64) -> u64 {
    ((duration * fps - 1e-6).ceil().max(0.0) as u64).max(1)
}

fn even_floor(v: i64) -> i64 {
    v.div_euclid(2) * 2
}

/// The frames `[from, to)` of `0..frames` at which `start <= k/fps < end`.
fn window(layer: &Layer<'_>, frames: u64, fps: f64) -> Option<(u64, u64)> {
    if layer.start <= 0.0 && layer.end == f64::INFINITY {
        return None;
    }
    let shown = |k: u64| {
        let t = k as f64 / fps;
        t >= layer.start && t < layer.end
    };
    let from = (0..frames).find(|&k| shown(k)).unwrap_or(frames);
    let to = (from..frames).find(|&k| !shown(k)).unwrap_or(u64::MAX);
    Some((from, to))
}

/// Appends `INPUT` `chain` to `g`, split to `[{label}]` for each of
/// `outputs` (`null` where there is nothing to do).
fn fan_out(g: &mut String, input: &str, chain: &[&str], outputs: &[String]) {
    let mut filters: Vec<String> = chain.iter().map(|f| f.to_string()).collect();
    if outputs.len() > 1 {
        filters.push(format!("split={}", outputs.len()));
    }
    if filters.is_empty() {
        filters.push("null".into());
    }
    g.push_str(input);
    g.push_str(&filters.join(","));
    for label in outputs {
        let _ = write!(g, "[{label}]");
    }
    g.push(';');
}

/// `[{prefix}I]` for each slot index.
fn labels(prefix: &str, slots: &[usize]) -> Vec<String> {
    slots.iter().map(|i| format!("{prefix}{i}")).collect()
}

/// The slots' packing order: tallest first.
fn shelf_order(slots: &[Slot]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(slots[i].height), i));
    order
}

/// Packs the slots into shelves, tallest first, at the atlas width (among
/// those a shelf can end at) that gives the smallest atlas: the atlas is
/// written every frame, so its area is the pipe's cost. Returns the size.
fn pack(slots: &mut [Slot]) -> (usize, usize) {
    let widest = slots.iter().map(|s| s.width).max().unwrap_or(2);
    let total: usize = slots.iter().map(|s| s.width).sum();
    let order = shelf_order(slots);
    // Candidate widths: the widest slot, then every sum of a run of slots
    // in packing order that is wider (where a shelf could end).
    let mut widths = vec![widest];
    for start in 0..order.len() {
        let mut w = 0;
        for &i in &order[start..] {
            w += slots[i].width;
            if w > widest && w <= total {
                widths.push(w);
            }
        }
    }
    widths.sort_unstable();
    widths.dedup();
    let best = widths
        .into_iter()
        .min_by_key(|&w| (w * shelve(slots, &order, w, false), w))
        .unwrap_or(widest);
    (best, shelve(slots, &order, best, true))
}

/// Packs the moving layers' slots as [`pack`] does and the fixed layers'
/// apart, in the same frame size: only the prologue frame carries the
/// fixed masks, so the two sets may overlap.
fn pack_apart(slots: &mut [Slot]) -> (usize, usize) {
    let (mut fixed, mut moving): (Vec<Slot>, Vec<Slot>) =
        slots.iter().cloned().partition(|s| s.fixed);
    let (moving_width, moving_height) = pack(&mut moving);
    let width = fixed.iter().map(|s| s.width).fold(moving_width, usize::max);
    let order = shelf_order(&fixed);
    let fixed_height = shelve(&mut fixed, &order, width, true);
    let (mut fixed, mut moving) = (fixed.into_iter(), moving.into_iter());
    for s in slots.iter_mut() {
        let placed = if s.fixed { fixed.next() } else { moving.next() };
        *s = placed.expect("one placed slot per slot");
    }
    (width, moving_height.max(fixed_height))
}

/// Shelf-packs `slots` in `order` at `width`; returns the height, and
/// places the slots when `place`.
fn shelve(slots: &mut [Slot], order: &[usize], width: usize, place: bool) -> usize {
    let (mut top, mut x, mut shelf) = (0, 0, 0);
    for &i in order {
        let s = &mut slots[i];
        if x + s.width > width {
            top += shelf;
            (x, shelf) = (0, 0);
        }
        if place {
            s.left = x;
            s.top = top;
        }
        x += s.width;
        shelf = shelf.max(s.height);
    }
    top + shelf
}

impl GraphPlan {
    /// Plans `scene` for `frames` frames at `fps`. `None` when the scene
    /// draws nothing.
    pub fn new(scene: &Scene, fps: f64, frames: u64) -> Option<GraphPlan> {
        let fps_value = fps_exact(fps);
        let (fw, fh) = scene.size();
        let (fw, fh) = (fw as i64, fh as i64);
        let per_frame: Vec<Vec<Layer<'_>>> = (0..frames.max(1))
            .map(|k| scene.layers_at(k as f64 / fps_value))
            .collect();
        let first = per_frame.first()?;
        if first.is_empty() {
            return None;
        }
        let mut slots = Vec::with_capacity(first.len());
        for (i, layer) in first.iter().enumerate() {
            let bounds: Vec<_> = per_frame
                .iter()
                .map(|l| render::bounds(l[i].shape))
                .collect();
            let size = |lo: i64, hi: i64, frame: i64| ((hi - lo + 3) & !1).clamp(2, frame.max(2));
            let width = bounds.iter().map(|b| size(b.0, b.2, fw)).max().unwrap_or(2);
            let height = bounds.iter().map(|b| size(b.1, b.3, fh)).max().unwrap_or(2);
            let place = |lo: i64, hi: i64, slot: i64, frame: i64| {
                even_floor(lo - (slot - (hi - lo)) / 2).clamp(0, even_floor((frame - slot).max(0)))
            };
            let origins: Vec<(i64, i64)> = bounds
                .iter()
                .map(|b| (place(b.0, b.2, width, fw), place(b.1, b.3, height, fh)))
                .collect();
            let at_origin = |k: usize| {
                let (l, (ox, oy)) = (&per_frame[k][i], origins[k]);
                (l.paint, render::shifted(l.shape, -ox, -oy))
            };
            let first_at_origin = at_origin(0);
            let fixed = origins.iter().all(|&o| o == origins[0])
                && (1..origins.len()).all(|k| at_origin(k) == first_at_origin);
            slots.push(Slot {
                width: width as usize,
                height: height as usize,
                top: 0,
                left: 0,
                origins,
                window: window(layer, frames, fps_value),
                fixed,
            });
        }
        let prologue = slots.iter().any(|s| s.fixed) && slots.iter().any(|s| !s.fixed);
        let (atlas_width, atlas_height) = if prologue {
            pack_apart(&mut slots)
        } else {
            pack(&mut slots)
        };
        Some(GraphPlan {
            atlas_width,
            atlas_height,
            prologue,
            slots,
            fps: fps_value,
            fps_spelled: fps_string(fps),
            resample: true,
        })
    }

    /// For a clip whose frames already fall exactly on the planned grid
    /// ([`crate::media::VideoInfo::constant_rate`]): no `fps` filter. It
    /// would hold a reference to each frame it passes on, so the first
    /// overlay must copy every frame, where the decoder's own frame is often
    /// writable. For the bench's box this saves about 0.07 ms of a 1080p frame.
    pub fn for_constant_rate(mut self) -> GraphPlan {
        self.resample = false;
        self
    }

    /// Clip time of frame `k`.
    pub fn time(&self, k: u64) -> f64 {
        k as f64 / self.fps
    }

    /// How many video frames `atlas_frames` atlas frames cover.
    pub fn frames_covered(&self, atlas_frames: u64) -> u64 {
        atlas_frames.saturating_sub(u64::from(self.prologue))
    }

    /// Bytes of one atlas frame (8-bit gray: the masks).
    pub fn atlas_bytes(&self) -> usize {
        self.atlas_width * self.atlas_height
    }

    /// Renders atlas frame `n` into `buf` (one [`GraphPlan::atlas_bytes`]
    /// frame): video frame `n`'s masks, or with a prologue the fixed masks
    /// (`n` = 0) then video frame `n - 1`'s moving ones. After the planned
    /// frames the last is held. `last` caches what each slot holds, so an
    /// unchanged layer is not drawn again.
    pub fn render_atlas<'s>(
        &self,
        scene: &'s Scene,
        n: u64,
        buf: &mut [u8],
        last: &mut Vec<Option<(Layer<'s>, (i64, i64))>>,
    ) {
        let planned = self.slots[0].origins.len() as u64;
        // Which slots this atlas frame carries: `None` for all.
        let (k, fixed_only) = match (self.prologue, n) {
            (false, _) => (n, None),
            (true, 0) => (0, Some(true)),
            (true, _) => (n - 1, Some(false)),
        };
        let k = k.min(planned - 1);
        let layers = scene.layers_at(k as f64 / self.fps);
        last.resize(self.slots.len(), None);
        for ((slot, layer), cached) in self.slots.iter().zip(layers).zip(last.iter_mut()) {
            if fixed_only.is_some_and(|f| f != slot.fixed) {
                continue;
            }
            let (ox, oy) = slot.origins[k as usize];
            // The same picture at the same place in the slot needs no new mask.
            let unchanged = cached.as_ref().is_some_and(|(c, (px, py))| {
                c.paint == layer.paint
                    && render::shifted(c.shape, -px, -py) == render::shifted(layer.shape, -ox, -oy)
            });
            if unchanged {
                continue;
            }
            let mut m = Mask {
                data: &mut buf[slot.top * self.atlas_width + slot.left..],
                stride: self.atlas_width,
                width: slot.width,
                height: slot.height,
                ox,
                oy,
            };
            render::mask(&mut m, layer.paint, layer.shape);
            *cached = Some((layer, (ox, oy)));
        }
    }

    /// The whole `-filter_complex` graph: the clip is input 0, the atlas
    /// input 1; the picture comes out at `[v]`.
    pub fn filter(&self, scene: &Scene) -> String {
        let layers = scene.layers_at(0.0);
        let n = self.slots.len();
        let resample = if self.resample {
            format!("fps={},", self.fps_spelled)
        } else {
            String::new()
        };
        let mut g = format!("[0:v]setpts=PTS-STARTPTS,{resample}format=yuv420p[b0];");
        if self.prologue {
            let (fixed, moving): (Vec<usize>, Vec<usize>) =
                (0..n).partition(|&i| self.slots[i].fixed);
            g.push_str("[1:v]split=2[ap][am];");
            fan_out(&mut g, "[ap]", &["trim=end_frame=1"], &labels("a", &fixed));
            let skip = ["trim=start_frame=1", "setpts=PTS-STARTPTS"];
            fan_out(&mut g, "[am]", &skip, &labels("a", &moving));
        } else {
            let all: Vec<usize> = (0..n).collect();
            fan_out(&mut g, "[1:v]", &[], &labels("a", &all));
        }
        self.colours(&mut g, &layers);
        for (i, (slot, layer)) in self.slots.iter().zip(&layers).enumerate() {
            let out = if i + 1 == n {
                "v".to_string()
            } else {
                format!("b{}", i + 1)
            };
            g.push_str(&self.layer_filter(i, slot, layer.paint, &out));
        }
        g
    }

    /// One source per distinct colour, made once at the largest of its
    /// layers' sizes and repeated, each smaller layer's `[cI]` cut from it. The
    /// exact Y, Cb, Cr are set on a 2×2 picture (`geq`) and scaled up by
    /// nearest neighbour without a range change: `lutyuv` would evaluate
    /// its expression for all 65 536 values of each plane while the graph
    /// starts, about 17 ms for the seven colours of the bench's busiest
    /// case.
    fn colours(&self, g: &mut String, layers: &[Layer<'_>]) {
        let mut groups: Vec<([u8; 3], Vec<usize>)> = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let Paint::Colour(c) = layer.paint else {
                continue;
            };
            let v = |x: f32| x.round().clamp(0.0, 255.0) as u8;
            let key = [v(c.y), v(c.u), v(c.v)];
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        for ([y, u, v], members) in groups {
            let w = members.iter().map(|&i| self.slots[i].width).max();
            let h = members.iter().map(|&i| self.slots[i].height).max();
            let (w, h) = (w.unwrap_or(2), h.unwrap_or(2));
            let source = format!(
                "color=c=black:s=2x2:r={},format=yuva420p,geq=lum={y}:cb={u}:cr={v}:a=255",
                self.fps_spelled
            );
            let scale = format!("scale={w}:{h}:flags=neighbor:in_range=tv:out_range=tv");
            let once = [
                source.as_str(),
                &scale,
                "trim=end_frame=1",
                "loop=loop=-1:size=1",
            ];
            // A layer of the picture's own size takes it as it is.
            let whole = |i: usize| (self.slots[i].width, self.slots[i].height) == (w, h);
            let outputs: Vec<String> = members
                .iter()
                .map(|&i| format!("{}{i}", if whole(i) { "c" } else { "cs" }))
                .collect();
            fan_out(g, "", &once, &outputs);
            for i in members.into_iter().filter(|&i| !whole(i)) {
                let slot = &self.slots[i];
                let _ = write!(g, "[cs{i}]crop={}:{}:0:0[c{i}];", slot.width, slot.height);
            }
        }
    }

    fn layer_filter(&self, i: usize, slot: &Slot, paint: Paint, out: &str) -> String {
        let (w, h) = (slot.width, slot.height);
        let x = escape_value(&self.tree(slot, |o| o.0));
        let y = escape_value(&self.tree(slot, |o| o.1));
        let enable = slot.window.map_or(String::new(), |(from, to)| {
            let at = |k: u64| (k as f64 - 0.5) / self.fps;
            let cond = if to == u64::MAX {
                format!("gte(t,{:.6})", at(from))
            } else {
                format!("between(t,{:.6},{:.6})", at(from), at(to))
            };
            format!(":enable={}", escape_value(&cond))
        });
        // Repeats one finished frame: clones, no drawing.
        let repeat = "loop=loop=-1:size=1";
        // A fixed layer's mask is read from the first atlas only; the
        // spotlight repeats it, a colour layer its merged picture.
        let first = match (slot.fixed, paint) {
            (false, _) => String::new(),
            (true, Paint::Keep { .. }) => format!(",trim=end_frame=1,{repeat}"),
            (true, Paint::Colour(_)) => ",trim=end_frame=1".to_string(),
        };
        let mask = format!(
            "[a{i}]crop={w}:{h}:{}:{}{first}[m{i}];",
            slot.left, slot.top
        );
        // `repeatlast=0`: no input holds a frame for later, so the main frame
        // stays writable and is blended in place, not copied.
        let place =
            format!("overlay=x={x}:y={y}:format=yuv420:shortest=1:repeatlast=0{enable}[{out}];");
        let merge = "alphamerge=shortest=1:repeatlast=0";
        match paint {
            Paint::Keep { dim } => format!(
                "[b{i}]split[d{i}][k{i}];[d{i}]{}[dd{i}];[k{i}]crop=w={w}:h={h}:x={x}:y={y}[kc{i}];\
                 {mask}[kc{i}][m{i}]{merge}[s{i}];[dd{i}][s{i}]{place}",
                DimMap::new(dim).eq_filter()
            ),
            // The colour comes from [`GraphPlan::colours`]; a fixed layer is
            // merged with its mask once.
            Paint::Colour(_) => {
                let then = if slot.fixed {
                    format!(",{repeat}")
                } else {
                    String::new()
                };
                format!("{mask}[c{i}][m{i}]{merge}{then}[s{i}];[b{i}][s{i}]{place}")
            }
        }
    }

    /// The slot's coordinate `pick` as an expression of `t`: a balanced
    /// `if` tree over the runs of frames where it holds one value.
    fn tree(&self, slot: &Slot, pick: impl Fn((i64, i64)) -> i64) -> String {
        let mut runs: Vec<(u64, i64)> = Vec::new();
        for (k, o) in slot.origins.iter().enumerate() {
            let v = pick(*o);
            if runs.last().is_none_or(|r| r.1 != v) {
                runs.push((k as u64, v));
            }
        }
        let mut out = String::new();
        self.subtree(&runs, &mut out);
        out
    }

    fn subtree(&self, runs: &[(u64, i64)], out: &mut String) {
        if runs.len() == 1 {
            let _ = write!(out, "{}", runs[0].1);
            return;
        }
        let mid = runs.len() / 2;
        let at = (runs[mid].0 as f64 - 0.5) / self.fps;
        let _ = write!(out, "if(lt(t,{at:.6}),");
        self.subtree(&runs[..mid], out);
        out.push(',');
        self.subtree(&runs[mid..], out);
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::render::Planes;
    use crate::overlay::spec::OverlaySpec;
    use crate::overlay::{SceneInputs, Shape};

    fn scene(spec: serde_json::Value, w: u32, h: u32) -> Scene {
        Scene::new(
            &OverlaySpec::from_value(spec).unwrap(),
            &SceneInputs {
                width: w,
                height: h,
                duration: 2.0,
                detections: &[],
                offset: None,
                font: None,
            },
        )
        .unwrap()
    }

    fn moving() -> Scene {
        scene(
            serde_json::json!({
                "spotlight": {"keyframes": [{"t": 0, "x": 10, "y": 60, "rx": 30, "ry": 40},
                                            {"t": 2, "x": 300, "y": 100, "rx": 50, "ry": 30}], "dim": 0.4},
                "ring": {"keyframes": [{"t": 0, "x": 160, "y": 200, "rx": 40, "ry": 12}], "color": "#ff0000"},
                "boxes": [{"keyframes": [{"t": 0, "x": 100, "y": 20, "w": 60, "h": 30},
                                         {"t": 1, "x": 250, "y": 190, "w": 80, "h": 60}], "thickness": 3}]
            }),
            320,
            240,
        )
    }

    #[test]
    fn positions_are_a_balanced_tree_with_boundaries_between_frames() {
        let plan = GraphPlan {
            slots: vec![],
            atlas_width: 2,
            atlas_height: 2,
            prologue: false,
            fps: 10.0,
            fps_spelled: "10".into(),
            resample: true,
        };
        let slot = Slot {
            width: 2,
            height: 2,
            top: 0,
            left: 0,
            origins: vec![(0, 6), (0, 6), (2, 6), (4, 6)],
            window: None,
            fixed: false,
        };
        assert_eq!(
            plan.tree(&slot, |o| o.0),
            "if(lt(t,0.150000),0,if(lt(t,0.250000),2,4))"
        );
        assert_eq!(plan.tree(&slot, |o| o.1), "6");
    }

    #[test]
    fn every_layer_fits_its_slot_at_every_frame_even_at_the_edges() {
        let s = moving();
        let plan = GraphPlan::new(&s, 25.0, 50).unwrap();
        // The spotlight, the ring, and the box's four edges.
        assert_eq!(plan.slots.len(), 6);
        for (i, slot) in plan.slots.iter().enumerate() {
            assert!(slot.width % 2 == 0 && slot.height % 2 == 0);
            for (k, &(ox, oy)) in slot.origins.iter().enumerate() {
                assert!(ox % 2 == 0 && oy % 2 == 0 && ox >= 0 && oy >= 0);
                assert!(ox + slot.width as i64 <= 320 && oy + slot.height as i64 <= 240);
                let (x0, y0, x1, y1) = render::bounds(s.layers_at(k as f64 / 25.0)[i].shape);
                // What of the shape is in the frame is in the slot.
                assert!(
                    x0.max(0) >= ox && x1.min(320) <= ox + slot.width as i64,
                    "{i} {k}"
                );
                assert!(
                    y0.max(0) >= oy && y1.min(240) <= oy + slot.height as i64,
                    "{i} {k}"
                );
            }
        }
        let g = plan.filter(&s);
        // The ring stands still: its mask comes from the prologue frame, the
        // others' from the frames after it.
        assert!(
            g.starts_with(
                "[0:v]setpts=PTS-STARTPTS,fps=25,format=yuv420p[b0];[1:v]split=2[ap][am];\
                 [ap]trim=end_frame=1[a1];\
                 [am]trim=start_frame=1,setpts=PTS-STARTPTS,split=5[a0][a2][a3][a4][a5];"
            ),
            "{g}"
        );
        assert!(g.ends_with("[v];"), "{g}");
        assert_eq!(g.matches("overlay=").count(), 6);
    }

    #[test]
    fn a_clip_already_at_the_planned_rate_is_not_resampled() {
        let s = moving();
        let plan = GraphPlan::new(&s, 25.0, 50).unwrap();
        let resampled = plan.filter(&s);
        let direct = plan.for_constant_rate().filter(&s);
        assert!(resampled.starts_with("[0:v]setpts=PTS-STARTPTS,fps=25,format=yuv420p[b0];"));
        assert!(direct.starts_with("[0:v]setpts=PTS-STARTPTS,format=yuv420p[b0];"));
        assert_eq!(resampled.replacen("fps=25,", "", 1), direct);
    }

    #[test]
    fn a_layer_that_never_changes_is_built_once_and_repeated() {
        let s = moving();
        let plan = GraphPlan::new(&s, 25.0, 50).unwrap();
        // Only the ring (one keyframe) stays put.
        let fixed: Vec<bool> = plan.slots.iter().map(|s| s.fixed).collect();
        assert_eq!(fixed, [false, true, false, false, false, false]);
        let g = plan.filter(&s);
        let ring = &plan.slots[1];
        assert!(
            g.contains(&format!(
                "[a1]crop={}:{}:{}:{},trim=end_frame=1[m1];",
                ring.width, ring.height, ring.left, ring.top
            )),
            "{g}"
        );
        assert!(g.contains("[m1]alphamerge=shortest=1:repeatlast=0,loop=loop=-1:size=1[s1];"));
        // The prologue, the ring's mask, and one picture of each colour:
        // the ring's and the one all four box edges share.
        assert_eq!(g.matches("trim=end_frame=1").count(), 4, "{g}");
        assert_eq!(g.matches("color=").count(), 2, "{g}");
        assert!(g.contains("split=4[cs2][cs3][cs4][cs5];"), "{g}");

        let still = scene(
            serde_json::json!({"spotlight": {"keyframes": [{"t": 0, "x": 90, "y": 60, "rx": 30, "ry": 40}]}}),
            320,
            240,
        );
        let plan = GraphPlan::new(&still, 25.0, 50).unwrap();
        assert!(plan.slots[0].fixed);
        let g = plan.filter(&still);
        assert!(
            g.contains(",trim=end_frame=1,loop=loop=-1:size=1[m0];"),
            "{g}"
        );
    }

    #[test]
    fn slots_are_packed_apart_in_an_atlas_near_their_total_area() {
        let s = moving();
        let plan = GraphPlan::new(&s, 25.0, 50).unwrap();
        let slots = &plan.slots;
        assert!(plan.prologue);
        for (i, a) in slots.iter().enumerate() {
            assert!(a.left + a.width <= plan.atlas_width);
            assert!(a.top + a.height <= plan.atlas_height);
            assert!(a.left % 2 == 0 && a.top % 2 == 0);
            // A fixed mask is only in the prologue frame, a moving one only
            // after it: only slots of one kind must not overlap.
            for b in slots[i + 1..].iter().filter(|b| b.fixed == a.fixed) {
                let apart = a.left + a.width <= b.left
                    || b.left + b.width <= a.left
                    || a.top + a.height <= b.top
                    || b.top + b.height <= a.top;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
        let area: usize = slots
            .iter()
            .filter(|s| !s.fixed)
            .map(|s| s.width * s.height)
            .sum();
        let widest = slots.iter().map(|s| s.width).max().unwrap();
        let stacked = widest * slots.iter().map(|s| s.height).sum::<usize>();
        eprintln!(
            "atlas {}x{} = {} bytes; slots {area}; stacked {stacked}",
            plan.atlas_width,
            plan.atlas_height,
            plan.atlas_bytes()
        );
        assert!(plan.atlas_bytes() * 10 <= area * 13, "at most 30 % spare");
    }

    /// FFmpeg's blend, done here: the graph's semantics on one frame.
    fn blend_like_the_graph(s: &Scene, plan: &GraphPlan, k: u64, frame: &mut [u8]) {
        let (w, h) = s.size();
        let mut atlas = vec![0u8; plan.atlas_bytes()];
        let mut prologue = vec![0u8; plan.atlas_bytes()];
        if plan.prologue {
            plan.render_atlas(s, 0, &mut prologue, &mut Vec::new());
            plan.render_atlas(s, k + 1, &mut atlas, &mut Vec::new());
        } else {
            plan.render_atlas(s, k, &mut atlas, &mut Vec::new());
        }
        let layers = s.layers_at(k as f64 / plan.fps);
        let original = frame.to_vec();
        for (slot, layer) in plan.slots.iter().zip(&layers) {
            let atlas = if slot.fixed && plan.prologue {
                &prologue
            } else {
                &atlas
            };
            let (ox, oy) = slot.origins[k as usize];
            let p = Planes::split(frame, w, h);
            let a = |x: usize, y: usize| -> f64 {
                let (i, j) = (x as i64 - ox, y as i64 - oy);
                if i < 0 || j < 0 || i >= slot.width as i64 || j >= slot.height as i64 {
                    0.0
                } else {
                    let at = (slot.top + j as usize) * plan.atlas_width + slot.left;
                    f64::from(atlas[at + i as usize]) / 255.0
                }
            };
            for y in 0..h {
                for x in 0..w {
                    let v = f64::from(p.y[y * w + x]);
                    let al = a(x, y);
                    p.y[y * w + x] = match layer.paint {
                        Paint::Keep { dim } => {
                            let o = original[y * w + x];
                            let d = f64::from(DimMap::new(dim).luma(o));
                            (d * (1.0 - al) + f64::from(o) * al).round() as u8
                        }
                        Paint::Colour(c) => {
                            (v * (1.0 - al) + c.y.round() as f64 * al).round() as u8
                        }
                    };
                }
            }
        }
    }

    #[test]
    fn the_masks_blended_as_ffmpeg_does_match_the_rust_compositor() {
        let s = moving();
        let plan = GraphPlan::new(&s, 25.0, 50).unwrap();
        let (w, h) = s.size();
        for k in [0u64, 13, 49] {
            let grey: Vec<u8> = (0..w * h).map(|i| (40 + (i * 7) % 180) as u8).collect();
            let mut frame = grey.clone();
            frame.extend(vec![128u8; 2 * (w / 2) * (h / 2)]);
            let mut ours = frame.clone();
            s.draw(&mut ours, k as f64 / 25.0);
            blend_like_the_graph(&s, &plan, k, &mut frame);
            let diffs: Vec<i32> = (0..w * h)
                .map(|i| (i32::from(frame[i]) - i32::from(ours[i])).abs())
                .collect();
            let max = diffs.iter().max().unwrap();
            let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
            assert!(
                *max <= 2 && mean < 0.5,
                "frame {k}: luma off by up to {max}, mean {mean:.3}"
            );
        }
    }

    #[test]
    fn a_text_window_becomes_an_enable_over_frame_boundaries() {
        let layer = Layer {
            paint: Paint::Keep { dim: 0.5 },
            shape: Shape::Lit {
                e: render::Ellipse {
                    cx: 0.0,
                    cy: 0.0,
                    rx: 1.0,
                    ry: 1.0,
                },
                feather: 1.0,
            },
            start: 0.5,
            end: 1.0,
        };
        assert_eq!(window(&layer, 50, 10.0), Some((5, 10)));
        assert_eq!(
            window(
                &Layer {
                    end: f64::INFINITY,
                    ..layer
                },
                50,
                10.0
            ),
            Some((5, u64::MAX))
        );
        assert_eq!(
            window(
                &Layer {
                    start: 0.0,
                    end: f64::INFINITY,
                    ..layer
                },
                50,
                10.0
            ),
            None
        );
    }

    #[test]
    fn a_scene_that_changes_nothing_has_no_plan() {
        let s = scene(
            serde_json::json!({"spotlight": {"keyframes": [{"t": 0, "x": 10, "y": 60, "rx": 30, "ry": 40}], "dim": 1.0}}),
            320,
            240,
        );
        assert!(s.is_empty());
        assert!(GraphPlan::new(&s, 25.0, 50).is_none());
    }
}
