//! Overlays: a spotlight, a ring under a player, boxes and text, drawn on a
//! clip from a JSON spec ([`spec`]), with positions from keyframes or from
//! a detections JSON ([`track`]).
//!
//! A [`Scene`] is the spec resolved for one clip: a list of layers
//! ([`Scene::layers_at`]), each a shape that moves and a paint. Two
//! renderers draw the same layers: the `overlay` step has FFmpeg draw them
//! inside its filter graph from small per-frame masks ([`graph`], run by
//! [`video`]), so no decoded frame leaves FFmpeg; the `frame` step, which
//! already holds every frame in Rust, composites them itself on raw
//! yuv420p ([`Scene::draw`], [`render`]). `reelay bench overlay` measures
//! the step against the same FFmpeg decode and encode with no overlay.

pub mod dim;
pub mod graph;
pub mod render;
pub mod spec;
pub mod track;
pub mod video;

use std::path::PathBuf;

use render::{Ellipse, Planes, TextBitmap, YuvColor};
use spec::{EllipseKey, OverlaySpec, RectKey, SpecError, Track};
use track::TrackPath;

use crate::detect::{BBox, Detections};

/// Where an element is at time `t`.
#[derive(Debug, Clone)]
enum Position<K> {
    Keys(Vec<K>),
    /// A tracked box; clip time + `offset` = detections time.
    Track {
        path: TrackPath,
        offset: f64,
    },
}

trait Keyframe: Copy {
    fn t(&self) -> f64;
    fn values(&self) -> [f64; 4];
}

impl Keyframe for EllipseKey {
    fn t(&self) -> f64 {
        self.t
    }
    fn values(&self) -> [f64; 4] {
        [self.x, self.y, self.rx, self.ry]
    }
}

impl Keyframe for RectKey {
    fn t(&self) -> f64 {
        self.t
    }
    fn values(&self) -> [f64; 4] {
        [self.x, self.y, self.w, self.h]
    }
}

/// Linear interpolation between keyframes, held at both ends.
fn interpolate<K: Keyframe>(keys: &[K], t: f64) -> [f64; 4] {
    let first = keys[0];
    let last = keys[keys.len() - 1];
    if t <= first.t() {
        return first.values();
    }
    if t >= last.t() {
        return last.values();
    }
    let i = keys.partition_point(|k| k.t() <= t);
    let (a, b) = (keys[i - 1], keys[i]);
    let f = (t - a.t()) / (b.t() - a.t());
    let (va, vb) = (a.values(), b.values());
    std::array::from_fn(|j| va[j] + (vb[j] - va[j]) * f)
}

impl<K: Keyframe> Position<K> {
    /// Keyframe values, or the tracked box.
    fn at(&self, t: f64) -> Result<[f64; 4], BBox> {
        match self {
            Position::Keys(k) => Ok(interpolate(k, t)),
            Position::Track { path, offset } => Err(path.at(t + offset)),
        }
    }
}

#[derive(Debug, Clone)]
struct SpotlightElement {
    pos: Position<EllipseKey>,
    dim: f64,
    feather: Option<f64>,
    scale: f64,
}

#[derive(Debug, Clone)]
struct RingElement {
    pos: Position<EllipseKey>,
    color: YuvColor,
    thickness: f64,
    scale: f64,
}

#[derive(Debug, Clone)]
struct BoxElement {
    pos: Position<RectKey>,
    color: YuvColor,
    thickness: f64,
}

#[derive(Debug, Clone)]
struct TextElement {
    bitmap: TextBitmap,
    x: i64,
    y: i64,
    color: YuvColor,
    shadow: Option<(i64, YuvColor)>,
    start: f64,
    end: f64,
}

/// A spec resolved for one clip: tracks followed, text rasterised, colours
/// converted. Draws one frame at a time.
#[derive(Debug, Clone)]
pub struct Scene {
    width: usize,
    height: usize,
    spotlight: Option<SpotlightElement>,
    ring: Option<RingElement>,
    boxes: Vec<BoxElement>,
    text: Vec<TextElement>,
}

/// What a scene needs besides the spec.
pub struct SceneInputs<'a> {
    pub width: u32,
    pub height: u32,
    /// Clip duration, seconds.
    pub duration: f64,
    /// The detections of each of `spec.detections_sources()`, in order,
    /// with the name to quote in errors.
    pub detections: &'a [(String, Detections)],
    /// Clip time + `offset` = detections time. `None`: the detections were
    /// made on this very clip, and are checked to fit it.
    pub offset: Option<f64>,
    /// A TrueType font, needed when the spec has text.
    pub font: Option<PathBuf>,
}

/// Why a scene could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Detections(#[from] crate::detect::DetectionsError),
    #[error("{0}")]
    Font(String),
}

/// How a layer's coverage changes the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Paint {
    /// The spotlight: outside the coverage every sample moves towards
    /// black by `dim`; where the coverage is full the frame is kept.
    Keep { dim: f64 },
    /// A solid colour, blended by coverage × its alpha.
    Colour(YuvColor),
}

/// What one layer draws at one instant, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape<'a> {
    /// The spotlight's lit ellipse, with its soft edge outside it.
    Lit {
        e: Ellipse,
        feather: f64,
    },
    Ring {
        e: Ellipse,
        thickness: f64,
    },
    /// A filled rectangle `[x0, y0, x1, y1]`; a box's outline is four.
    Fill {
        r: [f64; 4],
    },
    Bitmap {
        bitmap: &'a TextBitmap,
        x: i64,
        y: i64,
    },
}

/// One element of a scene as both renderers see it: the Rust compositor
/// ([`Scene::draw`]) and FFmpeg's graph ([`graph`]). The paint and the
/// window are the same at every instant; only the shape moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layer<'a> {
    pub paint: Paint,
    pub shape: Shape<'a>,
    /// Shown while `start <= t < end`.
    pub start: f64,
    pub end: f64,
}

type Follow<'s> = dyn Fn(&str, &Track) -> Result<TrackPath, SceneError> + 's;

/// A keyframed or tracked position.
fn position<K: Clone>(
    keys: &Option<Vec<K>>,
    track: &Option<Track>,
    field: &str,
    offset: f64,
    follow: &Follow<'_>,
) -> Result<Position<K>, SceneError> {
    Ok(match (keys, track) {
        (Some(k), _) => Position::Keys(k.clone()),
        (None, Some(t)) => Position::Track {
            path: follow(field, t)?,
            offset,
        },
        (None, None) => unreachable!("validated"),
    })
}

/// Rasterises the spec's text with the font `inputs` names.
fn text_elements(
    spec: &OverlaySpec,
    inputs: &SceneInputs<'_>,
) -> Result<Vec<TextElement>, SceneError> {
    if spec.text.is_empty() {
        return Ok(Vec::new());
    }
    let h = inputs.height as usize;
    let path = inputs.font.as_ref().ok_or_else(|| {
        SceneError::Font("the spec has text but no font was found; run `make setup` or set REELAY_FONT to a .ttf file".into())
    })?;
    let bytes = std::fs::read(path)
        .map_err(|e| SceneError::Font(format!("cannot read the font {}: {e}", path.display())))?;
    let font = ab_glyph::FontVec::try_from_vec(bytes)
        .map_err(|e| SceneError::Font(format!("{} is not a usable font: {e}", path.display())))?;
    let black = YuvColor {
        alpha: 0.6,
        ..YuvColor::from_rgb(spec::Color::rgb(0, 0, 0), h)
    };
    Ok(spec
        .text
        .iter()
        .map(|t| TextElement {
            bitmap: TextBitmap::render(&font, &t.text, t.size as f32),
            x: t.x.round() as i64,
            y: t.y.round() as i64,
            color: YuvColor::from_rgb(t.color, h),
            shadow: t
                .shadow
                .then(|| ((t.size / 24.0).round().max(1.0) as i64, black)),
            start: t.start.unwrap_or(0.0),
            end: t.end.unwrap_or(f64::INFINITY),
        })
        .collect())
}

impl Scene {
    pub fn new(spec: &OverlaySpec, inputs: &SceneInputs<'_>) -> Result<Scene, SceneError> {
        spec.validate()?;
        let (w, h) = (inputs.width as usize, inputs.height as usize);
        let sources = spec.detections_sources();
        if sources.len() != inputs.detections.len() {
            return Err(SpecError::new(
                spec::SPEC_OBJECT,
                "track.detections",
                format!(
                    "the spec tracks through {} detections file(s), but {} were given",
                    sources.len(),
                    inputs.detections.len()
                ),
                "give one detections input per `track.detections` the spec names",
            )
            .into());
        }
        for (name, d) in inputs.detections {
            check_detections(name, d, inputs)?;
        }
        let offset = inputs.offset.unwrap_or(0.0);
        let follow = |field: &str, t: &Track| -> Result<TrackPath, SceneError> {
            let i = sources
                .iter()
                .position(|s| *s == t.detections)
                .expect("every track's source is listed");
            let (name, d) = &inputs.detections[i];
            TrackPath::follow(d, t, t.pick.t + offset).map_err(|e| {
                SceneError::Spec(SpecError::new(
                    spec::SPEC_OBJECT,
                    format!("{field}.pick"),
                    format!("tracking through {name}: {e}"),
                    "pick a time and point where the detections have the player",
                ))
            })
        };
        let spotlight = match &spec.spotlight {
            Some(s) => Some(SpotlightElement {
                pos: position(&s.keyframes, &s.track, "spotlight.track", offset, &follow)?,
                dim: s.dim,
                feather: s.feather,
                scale: s.scale,
            }),
            None => None,
        };
        let ring = match &spec.ring {
            Some(r) => Some(RingElement {
                pos: position(&r.keyframes, &r.track, "ring.track", offset, &follow)?,
                color: YuvColor::from_rgb(r.color, h),
                thickness: r.thickness,
                scale: r.scale,
            }),
            None => None,
        };
        let mut boxes = Vec::new();
        for (i, b) in spec.boxes.iter().enumerate() {
            let field = format!("boxes[{i}].track");
            boxes.push(BoxElement {
                pos: position(&b.keyframes, &b.track, &field, offset, &follow)?,
                color: YuvColor::from_rgb(b.color, h),
                thickness: b.thickness,
            });
        }
        Ok(Scene {
            width: w,
            height: h,
            spotlight,
            ring,
            boxes,
            text: text_elements(spec, inputs)?,
        })
    }

    /// Frame size, in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Whether the scene changes no pixel (an empty spec, or a spotlight
    /// that dims by nothing): the clip can then be re-encoded by FFmpeg
    /// alone.
    pub fn is_empty(&self) -> bool {
        self.layers_at(0.0).is_empty()
    }

    /// The spotlight ellipse at clip time `t`, if there is a spotlight.
    pub fn spotlight_at(&self, t: f64) -> Option<(Ellipse, f64, f64)> {
        let s = self.spotlight.as_ref()?;
        let e = match s.pos.at(t) {
            Ok([x, y, rx, ry]) => Ellipse {
                cx: x,
                cy: y,
                rx,
                ry,
            },
            Err(b) => {
                let (cx, cy) = b.center();
                Ellipse {
                    cx,
                    cy,
                    rx: (b.w / 2.0 * s.scale).max(1.0),
                    ry: (b.h / 2.0 * s.scale).max(1.0),
                }
            }
        };
        let feather = s
            .feather
            .unwrap_or_else(|| (0.15 * e.rx.min(e.ry)).max(2.0));
        Some((e, feather, s.dim))
    }

    fn ring_at(r: &RingElement, t: f64) -> Ellipse {
        match r.pos.at(t) {
            Ok([x, y, rx, ry]) => Ellipse {
                cx: x,
                cy: y,
                rx,
                ry,
            },
            Err(b) => {
                let rx = (b.w / 2.0 * r.scale).max(2.0);
                Ellipse {
                    cx: b.center().0,
                    cy: b.y2(),
                    rx,
                    ry: rx / 3.0,
                }
            }
        }
    }

    /// Every layer at clip time `t`, in drawing order: the spotlight, the
    /// ring, the boxes, then each text's shadow and text. The same layers
    /// in the same order at every `t`; a spotlight that dims by nothing
    /// is no layer.
    pub fn layers_at(&self, t: f64) -> Vec<Layer<'_>> {
        let always = |paint, shape| Layer {
            paint,
            shape,
            start: f64::NEG_INFINITY,
            end: f64::INFINITY,
        };
        let mut out = Vec::new();
        if let Some((e, feather, dim)) = self.spotlight_at(t)
            && dim < 1.0
        {
            out.push(always(Paint::Keep { dim }, Shape::Lit { e, feather }));
        }
        if let Some(r) = &self.ring {
            let shape = Shape::Ring {
                e: Self::ring_at(r, t),
                thickness: r.thickness,
            };
            out.push(always(Paint::Colour(r.color), shape));
        }
        for b in &self.boxes {
            let [x, y, w, h] = match b.pos.at(t) {
                Ok(v) => v,
                Err(bb) => [bb.x, bb.y, bb.w, bb.h],
            };
            // Four edges, as `render::rectangle` draws them: four small
            // masks for FFmpeg rather than one the size of the box.
            let d = b.thickness / 2.0;
            let (x0, y0, x1, y1) = (x - d, y - d, x + w + d, y + h + d);
            for r in [
                [x0, y0, x1, y + d],
                [x0, y + h - d, x1, y1],
                [x0, y + d, x + d, y + h - d],
                [x + w - d, y + d, x1, y + h - d],
            ] {
                out.push(always(Paint::Colour(b.color), Shape::Fill { r }));
            }
        }
        for t_el in &self.text {
            let at = |dx: i64, color| Layer {
                paint: Paint::Colour(color),
                shape: Shape::Bitmap {
                    bitmap: &t_el.bitmap,
                    x: t_el.x + dx,
                    y: t_el.y + dx,
                },
                start: t_el.start,
                end: t_el.end,
            };
            if let Some((d, shadow)) = t_el.shadow {
                out.push(at(d, shadow));
            }
            out.push(at(0, t_el.color));
        }
        out
    }

    /// Draws every element for clip time `t` onto one yuv420p frame.
    pub fn draw(&self, frame: &mut [u8], t: f64) {
        let mut p = Planes::split(frame, self.width, self.height);
        for layer in self.layers_at(t) {
            if t >= layer.start && t < layer.end {
                render::draw(&mut p, layer.paint, layer.shape);
            }
        }
    }
}

/// Checks that detections fit the clip: the frame size, boxes inside it,
/// and times. With no offset the detections must be of this very clip
/// (no time past its end); with one they are of a longer source and must
/// cover the clip's window.
fn check_detections(
    name: &str,
    d: &Detections,
    inputs: &SceneInputs<'_>,
) -> Result<(), crate::detect::DetectionsError> {
    let err = |field: &str, problem: String| crate::detect::DetectionsError {
        source_name: name.to_string(),
        field: field.into(),
        problem,
    };
    match inputs.offset {
        None => d.check_against(name, inputs.width, inputs.height, inputs.duration),
        Some(offset) => {
            d.check_against(name, inputs.width, inputs.height, f64::INFINITY)?;
            let (from, to) = (offset, offset + inputs.duration);
            let covered = d.frames.iter().any(|f| {
                f.t >= from - crate::detect::TIME_SLACK && f.t <= to + crate::detect::TIME_SLACK
            });
            if covered {
                Ok(())
            } else {
                let span = match (d.frames.first(), d.frames.last()) {
                    (Some(a), Some(b)) => format!("{:.2} to {:.2} s", a.t, b.t),
                    _ => "nothing".into(),
                };
                Err(err(
                    "frames",
                    format!(
                        "no sampled frame falls in this clip ({from:.2} to {to:.2} s of the source); the detections span {span}: run detect on the clip's source"
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_interpolate_and_hold() {
        let keys = [
            EllipseKey {
                t: 1.0,
                x: 0.0,
                y: 0.0,
                rx: 10.0,
                ry: 10.0,
            },
            EllipseKey {
                t: 3.0,
                x: 100.0,
                y: 50.0,
                rx: 20.0,
                ry: 10.0,
            },
        ];
        assert_eq!(interpolate(&keys, 0.0), [0.0, 0.0, 10.0, 10.0]);
        assert_eq!(interpolate(&keys, 2.0), [50.0, 25.0, 15.0, 10.0]);
        assert_eq!(interpolate(&keys, 9.0), [100.0, 50.0, 20.0, 10.0]);
    }
}
