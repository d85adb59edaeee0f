//! The overlay spec: what to draw on a clip, and where. The same JSON is the
//! `overlay` step's `spec` parameter and a job manifest's per-clip `overlay`.
//!
//! ```json
//! {"spotlight": {"keyframes": [{"t": 0, "x": 600, "y": 500, "rx": 180, "ry": 260}], "dim": 0.5},
//!  "ring": {"track": {"detections": "detections/match.mp4.json", "pick": {"t": 1.0, "x": 610, "y": 480}}},
//!  "boxes": [{"keyframes": [{"t": 0, "x": 100, "y": 80, "w": 120, "h": 300}], "color": "#00ff00"}],
//!  "text": [{"text": "#10", "x": 40, "y": 40}]}
//! ```
//!
//! - Times are seconds from the start of the clip being drawn on. Pixels are
//!   the clip's. Positions between keyframes are interpolated linearly and
//!   held before the first and after the last.
//! - `track` in place of `keyframes` follows a player through a detections
//!   JSON: the box nearest to `pick` at time `pick.t`, then every box with
//!   that box's track id (or, in detections without ids, the nearest box
//!   over time), smoothed, with gaps between samples interpolated
//!   ([`super::track`]). `detections`
//!   is the detections object's key; in a job it may be left out, and the
//!   job then runs `detect` on its source.
//! - Unknown fields and wrong types are rejected, naming the field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An overlay spec problem, in the project's one field/problem/fix shape;
/// the field is a path such as `spotlight.keyframes[1].t`.
pub type SpecError = crate::invalid::Invalid;

/// The object a spec problem is reported against until a caller that
/// knows the spec's object (a manifest, a task) names it instead.
pub const SPEC_OBJECT: &str = "overlay spec";

fn err(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> SpecError {
    SpecError::new(SPEC_OBJECT, field, problem, fix)
}

/// Everything drawn on one clip. Drawn in this order: spotlight, ring,
/// boxes, text.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotlight: Option<Spotlight>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<Ring>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boxes: Vec<BoxElement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<TextElement>,
}

/// Darkens everything outside an ellipse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spotlight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframes: Option<Vec<EllipseKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Track>,
    /// Brightness factor outside the ellipse: 0 black, 1 unchanged.
    #[serde(default = "default_dim")]
    pub dim: f64,
    /// Width of the soft edge in pixels, outside the ellipse; default 15%
    /// of its smaller radius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feather: Option<f64>,
    /// With `track`: the ellipse's radii over the box's half width and half
    /// height (default 1.5, loose around the player).
    #[serde(default = "default_spot_scale")]
    pub scale: f64,
}

/// An ellipse outline, e.g. under a player's feet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ring {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframes: Option<Vec<EllipseKey>>,
    /// With `track`, the ring sits at the box's bottom centre, as wide as
    /// the box times `scale`, a third as tall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Track>,
    #[serde(default = "default_ring_color")]
    pub color: Color,
    /// Line width in pixels.
    #[serde(default = "default_ring_thickness")]
    pub thickness: f64,
    /// With `track`: ring width over box width (default 1.2).
    #[serde(default = "default_ring_scale")]
    pub scale: f64,
}

/// A rectangle outline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxElement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframes: Option<Vec<RectKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Track>,
    #[serde(default = "default_box_color")]
    pub color: Color,
    #[serde(default = "default_box_thickness")]
    pub thickness: f64,
}

/// A text label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextElement {
    pub text: String,
    /// Top-left corner of the text, in pixels.
    pub x: f64,
    pub y: f64,
    /// Font size in pixels (default 48).
    #[serde(default = "default_text_size")]
    pub size: f64,
    #[serde(default = "default_text_color")]
    pub color: Color,
    /// Shown from this time (default: the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    /// Shown until this time (default: the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<f64>,
    /// A dark drop shadow for legibility (default true).
    #[serde(default = "yes")]
    pub shadow: bool,
}

/// Ellipse centre and radii at time `t`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EllipseKey {
    pub t: f64,
    pub x: f64,
    pub y: f64,
    pub rx: f64,
    pub ry: f64,
}

/// Rectangle (top-left corner, size) at time `t`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RectKey {
    pub t: f64,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// Following a player through detections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// Key (in a job) or path (`reelay run`) of the detections JSON. In a
    /// job, leaving it out runs `detect` on the job's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detections: Option<String>,
    /// The player: the box nearest to (`x`, `y`) at time `t`.
    pub pick: Pick,
    /// Smoothing window (Gaussian sigma), seconds (default 0.2).
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
    /// Gaps up to this long (seconds) are bridged by interpolation, and the
    /// player may be found again after them (default 2).
    #[serde(default = "default_max_gap")]
    pub max_gap: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pick {
    pub t: f64,
    pub x: f64,
    pub y: f64,
}

/// An sRGB colour with opacity: `#rrggbb`, `#rrggbbaa`, or a name (white,
/// black, red, green, blue, yellow, orange, cyan, magenta).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    pub a: u8,
}

impl Color {
    pub const fn rgb(r: u8, g: u8, b: u8) -> Color {
        Color { r, g, b, a: 255 }
    }

    pub fn parse(s: &str) -> Result<Color, String> {
        let named = match s.to_ascii_lowercase().as_str() {
            "white" => Some(Color::rgb(255, 255, 255)),
            "black" => Some(Color::rgb(0, 0, 0)),
            "red" => Some(Color::rgb(230, 30, 30)),
            "green" => Some(Color::rgb(30, 200, 60)),
            "blue" => Some(Color::rgb(40, 90, 230)),
            "yellow" => Some(Color::rgb(255, 212, 0)),
            "orange" => Some(Color::rgb(255, 140, 0)),
            "cyan" => Some(Color::rgb(0, 220, 230)),
            "magenta" => Some(Color::rgb(230, 0, 200)),
            _ => None,
        };
        if let Some(c) = named {
            return Ok(c);
        }
        let hex = s.strip_prefix('#').unwrap_or("");
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        let parsed = match hex.len() {
            6 if hex.is_ascii() => (|| Some(Color::rgb(byte(0)?, byte(2)?, byte(4)?)))(),
            8 if hex.is_ascii() => (|| {
                Some(Color {
                    a: byte(6)?,
                    ..Color::rgb(byte(0)?, byte(2)?, byte(4)?)
                })
            })(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            format!(
                "`{s}` is not a colour: use #rrggbb, #rrggbbaa or a name such as white or yellow"
            )
        })
    }
}

impl Serialize for Color {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = format!("#{:02x}{:02x}{:02x}", self.r, self.g, self.b);
        if self.a != 255 {
            out.push_str(&format!("{:02x}", self.a));
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Color {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Color::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn default_dim() -> f64 {
    0.5
}
fn default_spot_scale() -> f64 {
    1.5
}
fn default_ring_color() -> Color {
    Color::rgb(255, 212, 0)
}
fn default_ring_thickness() -> f64 {
    6.0
}
fn default_ring_scale() -> f64 {
    1.2
}
fn default_box_color() -> Color {
    Color::rgb(30, 200, 60)
}
fn default_box_thickness() -> f64 {
    4.0
}
fn default_text_size() -> f64 {
    48.0
}
fn default_text_color() -> Color {
    Color::rgb(255, 255, 255)
}
fn default_smoothing() -> f64 {
    0.2
}
fn default_max_gap() -> f64 {
    2.0
}
fn yes() -> bool {
    true
}

/// Longest text label, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Largest coordinate accepted, in pixels.
const MAX_PX: f64 = 16384.0;

fn finite(field: &str, v: f64) -> Result<(), SpecError> {
    if v.is_finite() && v.abs() <= MAX_PX * 4.0 {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{v} is not a usable number"),
            "give a finite number of pixels",
        ))
    }
}

fn positive(field: &str, v: f64) -> Result<(), SpecError> {
    if v.is_finite() && v > 0.0 && v <= MAX_PX {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{v} is not a usable size"),
            format!("give a size above 0 and at most {MAX_PX} pixels"),
        ))
    }
}

fn check_times<'a>(field: &str, times: impl Iterator<Item = f64> + 'a) -> Result<(), SpecError> {
    let mut last = f64::NEG_INFINITY;
    let mut n = 0;
    for (i, t) in times.enumerate() {
        let f = format!("{field}[{i}].t");
        if !t.is_finite() || t < 0.0 {
            return Err(err(
                f,
                format!("{t} is not a time"),
                "use seconds from the clip's start, 0 or more",
            ));
        }
        if t <= last {
            return Err(err(
                f,
                format!("{t} is not after the previous keyframe's {last}"),
                "put keyframes in time order, each at a later t",
            ));
        }
        last = t;
        n += 1;
    }
    if n == 0 {
        return Err(err(
            field,
            "there are no keyframes",
            "give at least one {\"t\": 0, ...}",
        ));
    }
    Ok(())
}

fn check_source(field: &str, keyframes: bool, track: Option<&Track>) -> Result<(), SpecError> {
    match (keyframes, track) {
        (true, Some(_)) => Err(err(
            field,
            "it has both `keyframes` and `track`",
            "give either `keyframes` or `track`, not both",
        )),
        (false, None) => Err(err(
            field,
            "it has no position",
            "give `keyframes` (a list of {\"t\", ...}) or `track` (following a player through detections)",
        )),
        (false, Some(t)) => t.validate(&format!("{field}.track")),
        (true, None) => Ok(()),
    }
}

fn check_ellipses(field: &str, keys: &[EllipseKey]) -> Result<(), SpecError> {
    check_times(field, keys.iter().map(|k| k.t))?;
    for (i, k) in keys.iter().enumerate() {
        finite(&format!("{field}[{i}].x"), k.x)?;
        finite(&format!("{field}[{i}].y"), k.y)?;
        positive(&format!("{field}[{i}].rx"), k.rx)?;
        positive(&format!("{field}[{i}].ry"), k.ry)?;
    }
    Ok(())
}

impl Track {
    fn validate(&self, field: &str) -> Result<(), SpecError> {
        if let Some(key) = &self.detections
            && key.trim().is_empty()
        {
            return Err(err(
                format!("{field}.detections"),
                "the detections key is empty",
                "give the detections object's key, e.g. `detections/match.mp4.json`, or leave it out to detect on the source",
            ));
        }
        if !self.pick.t.is_finite() || self.pick.t < 0.0 {
            return Err(err(
                format!("{field}.pick.t"),
                format!("{} is not a time in the clip", self.pick.t),
                "give seconds from the clip's start, 0 or more",
            ));
        }
        finite(&format!("{field}.pick.x"), self.pick.x)?;
        finite(&format!("{field}.pick.y"), self.pick.y)?;
        if !(self.smoothing.is_finite() && (0.0..=10.0).contains(&self.smoothing)) {
            return Err(err(
                format!("{field}.smoothing"),
                format!("{} is out of range", self.smoothing),
                "give 0 to 10 seconds",
            ));
        }
        if !(self.max_gap.is_finite() && (0.0..=60.0).contains(&self.max_gap)) {
            return Err(err(
                format!("{field}.max_gap"),
                format!("{} is out of range", self.max_gap),
                "give 0 to 60 seconds",
            ));
        }
        Ok(())
    }
}

impl OverlaySpec {
    /// Parses a spec from JSON; the error names the field.
    pub fn from_value(value: serde_json::Value) -> Result<OverlaySpec, SpecError> {
        let spec: OverlaySpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            err(
                if path == "." || path.is_empty() {
                    "(top level)".to_string()
                } else {
                    path
                },
                e.into_inner().to_string(),
                "correct the field as the message says (overlay fields: spotlight, ring, boxes, text)",
            )
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks values serde cannot: ranges, keyframe order, one position
    /// source per element, something to draw.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.spotlight.is_none()
            && self.ring.is_none()
            && self.boxes.is_empty()
            && self.text.is_empty()
        {
            return Err(err(
                "(top level)",
                "the spec draws nothing",
                "give at least one of spotlight, ring, boxes, text",
            ));
        }
        if let Some(s) = &self.spotlight {
            check_source("spotlight", s.keyframes.is_some(), s.track.as_ref())?;
            if let Some(k) = &s.keyframes {
                check_ellipses("spotlight.keyframes", k)?;
            }
            if !(s.dim.is_finite() && (0.0..=1.0).contains(&s.dim)) {
                return Err(err(
                    "spotlight.dim",
                    format!("{} is not in 0..1", s.dim),
                    "give 0 (black outside the spotlight) to 1 (unchanged)",
                ));
            }
            if let Some(f) = s.feather
                && !(f.is_finite() && (0.0..=MAX_PX).contains(&f))
            {
                return Err(err(
                    "spotlight.feather",
                    format!("{f} is out of range"),
                    format!("give 0 to {MAX_PX} pixels"),
                ));
            }
            if !(s.scale.is_finite() && s.scale > 0.0 && s.scale <= 20.0) {
                return Err(err(
                    "spotlight.scale",
                    format!("{} is out of range", s.scale),
                    "give a scale above 0 and at most 20",
                ));
            }
        }
        if let Some(r) = &self.ring {
            check_source("ring", r.keyframes.is_some(), r.track.as_ref())?;
            if let Some(k) = &r.keyframes {
                check_ellipses("ring.keyframes", k)?;
            }
            positive("ring.thickness", r.thickness)?;
            if !(r.scale.is_finite() && r.scale > 0.0 && r.scale <= 20.0) {
                return Err(err(
                    "ring.scale",
                    format!("{} is out of range", r.scale),
                    "give a scale above 0 and at most 20",
                ));
            }
        }
        for (i, b) in self.boxes.iter().enumerate() {
            let field = format!("boxes[{i}]");
            check_source(&field, b.keyframes.is_some(), b.track.as_ref())?;
            if let Some(k) = &b.keyframes {
                check_times(&format!("{field}.keyframes"), k.iter().map(|k| k.t))?;
                for (j, k) in k.iter().enumerate() {
                    finite(&format!("{field}.keyframes[{j}].x"), k.x)?;
                    finite(&format!("{field}.keyframes[{j}].y"), k.y)?;
                    positive(&format!("{field}.keyframes[{j}].w"), k.w)?;
                    positive(&format!("{field}.keyframes[{j}].h"), k.h)?;
                }
            }
            positive(&format!("{field}.thickness"), b.thickness)?;
        }
        for (i, t) in self.text.iter().enumerate() {
            let field = format!("text[{i}]");
            if t.text.trim().is_empty() {
                return Err(err(
                    format!("{field}.text"),
                    "the text is empty",
                    "give the text to draw, or remove the item",
                ));
            }
            if t.text.chars().count() > MAX_TEXT_CHARS {
                return Err(err(
                    format!("{field}.text"),
                    format!("longer than {MAX_TEXT_CHARS} characters"),
                    format!("shorten it to {MAX_TEXT_CHARS} characters or split it into items"),
                ));
            }
            finite(&format!("{field}.x"), t.x)?;
            finite(&format!("{field}.y"), t.y)?;
            if !(t.size.is_finite() && (4.0..=1000.0).contains(&t.size)) {
                return Err(err(
                    format!("{field}.size"),
                    format!("{} is out of range", t.size),
                    "give 4 to 1000 pixels",
                ));
            }
            for (name, v) in [("start", t.start), ("end", t.end)] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(err(
                        format!("{field}.{name}"),
                        format!("{v} is not a time in the clip"),
                        "give seconds from the clip's start, 0 or more",
                    ));
                }
            }
            if let (Some(s), Some(e)) = (t.start, t.end)
                && e <= s
            {
                return Err(err(
                    format!("{field}.end"),
                    format!("end {e} is not after start {s}"),
                    "make end greater than start",
                ));
            }
        }
        Ok(())
    }

    /// Every track, with the field it sits in.
    pub fn tracks(&self) -> Vec<(String, &Track)> {
        let mut v = Vec::new();
        if let Some(t) = self.spotlight.as_ref().and_then(|s| s.track.as_ref()) {
            v.push(("spotlight.track".to_string(), t));
        }
        if let Some(t) = self.ring.as_ref().and_then(|s| s.track.as_ref()) {
            v.push(("ring.track".to_string(), t));
        }
        for (i, b) in self.boxes.iter().enumerate() {
            if let Some(t) = &b.track {
                v.push((format!("boxes[{i}].track"), t));
            }
        }
        v
    }

    /// The distinct detections sources the tracks name, in order of first
    /// appearance (`None`: the job's own detect step). The overlay step's
    /// inputs after the clip are these, in this order.
    pub fn detections_sources(&self) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = Vec::new();
        for (_, t) in self.tracks() {
            if !out.contains(&t.detections) {
                out.push(t.detections.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_example_parses() {
        let s = OverlaySpec::from_value(json!({
            "spotlight": {"keyframes": [{"t": 0, "x": 600, "y": 500, "rx": 180, "ry": 260}], "dim": 0.5},
            "text": [{"text": "#10", "x": 40, "y": 40}]
        }))
        .unwrap();
        assert_eq!(s.spotlight.as_ref().unwrap().dim, 0.5);
        assert_eq!(s.text[0].size, 48.0);
        assert_eq!(s.text[0].color, Color::rgb(255, 255, 255));
        let back = OverlaySpec::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    fn field_of(v: serde_json::Value) -> String {
        OverlaySpec::from_value(v).unwrap_err().field
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        assert_eq!(
            field_of(
                json!({"spotlight": {"keyframes": [{"t": 0, "x": "600", "y": 500, "rx": 180, "ry": 260}]}})
            ),
            "spotlight.keyframes[0].x"
        );
        assert_eq!(
            field_of(json!({"spotlight": {"keyframes": [], "dimm": 0.5}})),
            "spotlight.dimm"
        );
        assert_eq!(
            field_of(json!({"text": [{"text": 10, "x": 1, "y": 2}]})),
            "text[0].text"
        );
        assert_eq!(
            field_of(json!({"text": {"text": "a", "x": 1, "y": 2}})),
            "text"
        );
        assert_eq!(
            field_of(
                json!({"ring": {"keyframes": [{"t": 0, "x": 1, "y": 1, "rx": 1, "ry": 1}], "color": "#12"}})
            ),
            "ring.color"
        );
        assert_eq!(field_of(json!({"sptlight": {}})), "sptlight");
        assert_eq!(field_of(json!("spotlight")), "(top level)");
    }

    #[test]
    fn values_are_checked() {
        let key = json!([{"t": 0, "x": 1, "y": 1, "rx": 10, "ry": 10}]);
        assert_eq!(
            field_of(json!({"spotlight": {"keyframes": key, "dim": 1.5}})),
            "spotlight.dim"
        );
        assert_eq!(field_of(json!({"spotlight": {"dim": 0.5}})), "spotlight");
        assert_eq!(
            field_of(
                json!({"spotlight": {"keyframes": [{"t": 1, "x": 1, "y": 1, "rx": 10, "ry": 10}, {"t": 1, "x": 1, "y": 1, "rx": 10, "ry": 10}]}})
            ),
            "spotlight.keyframes[1].t"
        );
        assert_eq!(
            field_of(
                json!({"spotlight": {"keyframes": [{"t": 0, "x": 1, "y": 1, "rx": 0, "ry": 10}]}})
            ),
            "spotlight.keyframes[0].rx"
        );
        assert_eq!(field_of(json!({})), "(top level)");
        assert_eq!(
            field_of(json!({"ring": {"track": {"pick": {"t": -1, "x": 0, "y": 0}}}})),
            "ring.track.pick.t"
        );
    }

    #[test]
    fn detections_sources_are_distinct_and_ordered() {
        let s = OverlaySpec::from_value(json!({
            "spotlight": {"track": {"detections": "d/a.json", "pick": {"t": 0, "x": 1, "y": 1}}},
            "ring": {"track": {"pick": {"t": 0, "x": 1, "y": 1}}},
            "boxes": [{"track": {"detections": "d/a.json", "pick": {"t": 0, "x": 1, "y": 1}}}]
        }))
        .unwrap();
        assert_eq!(
            s.detections_sources(),
            vec![Some("d/a.json".to_string()), None]
        );
        assert_eq!(Color::parse("#ff000080").unwrap().a, 128);
    }
}
