//! Synthetic match footage with small players whose boxes are known: the
//! people in scikit-image's public-domain photos (`astronaut.png`,
//! `camera.png`), cropped to the person, scaled to a given height and moved
//! in straight lines over a pitch-green frame by FFmpeg's `overlay`, with
//! optional boards drawn on top to hide a player for a while.
//!
//! The demo's sample match and the detection and tracking tests are made
//! with it; the tests check the detector against [`Player::box_at`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::detect::BBox;
use crate::media::path_arg;

/// A photo with the person's box in it (x1, y1, x2, y2), read off the
/// 512×512 photo by hand: the astronaut from her left sleeve to the right
/// shoulder of her suit, hair to the photo's bottom edge.
pub const ASTRONAUT: (&str, [u32; 4]) = ("astronaut.png", [18, 14, 362, 512]);
/// The cameraman from the photo's left edge to his hand on the camera,
/// hair to the photo's bottom edge.
pub const CAMERAMAN: (&str, [u32; 4]) = ("camera.png", [0, 64, 332, 512]);

/// One player: a person photo moving at constant velocity.
#[derive(Debug, Clone, PartialEq)]
pub struct Player {
    pub photo: PathBuf,
    /// The person's box in the photo: x1, y1, x2, y2.
    pub crop: [u32; 4],
    /// Height in the frame, pixels (even).
    pub height: u32,
    /// Top-left corner at t = 0, and velocity in pixels per second.
    pub x0: f64,
    pub y0: f64,
    pub vx: f64,
    pub vy: f64,
    /// Drawn above the players listed before it.
    pub from: f64,
    pub to: f64,
}

impl Player {
    /// A player cut from `photo` (one of [`ASTRONAUT`], [`CAMERAMAN`]) in
    /// `dir`, `height` pixels tall, starting at (`x0`, `y0`) with velocity
    /// (`vx`, `vy`), on screen for the whole clip.
    pub fn new(
        dir: &Path,
        photo: (&str, [u32; 4]),
        height: u32,
        at: (f64, f64),
        v: (f64, f64),
    ) -> Player {
        Player {
            photo: dir.join(photo.0),
            crop: photo.1,
            height: height.max(2) & !1,
            x0: at.0,
            y0: at.1,
            vx: v.0,
            vy: v.1,
            from: 0.0,
            to: f64::INFINITY,
        }
    }

    /// Width and height in the frame (even, aspect kept).
    pub fn size(&self) -> (u32, u32) {
        let [x1, y1, x2, y2] = self.crop;
        let w = f64::from(x2 - x1) * f64::from(self.height) / f64::from(y2 - y1);
        (((w / 2.0).round() as u32 * 2).max(2), self.height)
    }

    /// The player's box at time `t`, clipped to a `width`×`height` frame;
    /// `None` when off screen or outside `from..to`.
    pub fn box_at(&self, t: f64, width: u32, height: u32) -> Option<BBox> {
        if t < self.from || t >= self.to {
            return None;
        }
        let (w, h) = self.size();
        // FFmpeg's overlay places at whole pixels, rounded down to even for
        // 4:2:0 chroma.
        let x = ((self.x0 + self.vx * t).floor() as i64 & !1) as f64;
        let y = ((self.y0 + self.vy * t).floor() as i64 & !1) as f64;
        let x1 = x.max(0.0);
        let y1 = y.max(0.0);
        let x2 = (x + f64::from(w)).min(f64::from(width));
        let y2 = (y + f64::from(h)).min(f64::from(height));
        (x2 > x1 && y2 > y1).then(|| BBox::from_corners(x1, y1, x2, y2))
    }
}

/// A footage recipe: frame size, rate and length, the players in drawing
/// order, and boards (filled rectangles) drawn over everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Footage {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: f64,
    pub players: Vec<Player>,
    /// x, y, w, h of each board.
    pub boards: Vec<[u32; 4]>,
}

impl Footage {
    /// FFmpeg arguments writing the footage (H.264, yuv420p, no audio) to
    /// `out`.
    pub fn args(&self, out: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["-y".into(), "-hide_banner".into()];
        a.extend(self.inputs());
        a.push("-filter_complex".into());
        a.push(self.graph().into());
        a.extend(["-map".into(), "[v]".into()]);
        a.extend(
            [
                "-t",
                &self.seconds.to_string(),
                "-r",
                &self.fps.to_string(),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "18",
                "-pix_fmt",
                "yuv420p",
            ]
            .iter()
            .map(OsString::from),
        );
        a.push(path_arg(out));
        a
    }

    /// The photo inputs, one per player, in order (input `i` is player `i`).
    pub fn inputs(&self) -> Vec<OsString> {
        let mut a = Vec::new();
        for p in &self.players {
            a.extend(
                ["-loop", "1", "-framerate", &self.fps.to_string(), "-i"]
                    .iter()
                    .map(OsString::from),
            );
            a.push(path_arg(&p.photo));
        }
        a
    }

    /// The filter graph over [`Footage::inputs`], ending in `[v]`.
    pub fn graph(&self) -> String {
        let mut g = format!(
            "color=c=0x2f7a34:s={}x{}:r={}:d={},format=yuv420p[bg0]",
            self.width, self.height, self.fps, self.seconds
        );
        for (i, p) in self.players.iter().enumerate() {
            let [x1, y1, x2, y2] = p.crop;
            let (w, h) = p.size();
            let to = if p.to.is_finite() { p.to } else { 1e9 };
            g.push_str(&format!(
                ";[{i}:v]crop={}:{}:{x1}:{y1},scale={w}:{h}:flags=area,setsar=1,format=yuv420p[p{i}]\
                 ;[bg{i}][p{i}]overlay=x='{}+{}*t':y='{}+{}*t':enable='between(t,{},{})':shortest=1[bg{}]",
                x2 - x1,
                y2 - y1,
                p.x0,
                p.vx,
                p.y0,
                p.vy,
                p.from,
                to,
                i + 1
            ));
        }
        g.push_str(&format!(";[bg{}]null", self.players.len()));
        for [x, y, w, h] in &self.boards {
            g.push_str(&format!(
                ",drawbox=x={x}:y={y}:w={w}:h={h}:color=0xd8d8d8:t=fill"
            ));
        }
        g.push_str("[v]");
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_follow_the_straight_line_and_the_frame() {
        let p = Player::new(Path::new("/x"), ASTRONAUT, 100, (10.0, 20.0), (50.0, 0.0));
        assert_eq!(p.size(), (70, 100)); // 344 × 100 / 498 = 69.1 → 70
        let b = p.box_at(1.0, 640, 360).unwrap();
        assert_eq!((b.x, b.y, b.w, b.h), (60.0, 20.0, 70.0, 100.0));
        assert_eq!(p.box_at(20.0, 640, 360), None);
        let clipped = p.box_at(11.5, 640, 360).unwrap();
        assert_eq!(clipped.x2(), 640.0);
        let f = Footage {
            width: 640,
            height: 360,
            fps: 25,
            seconds: 2.0,
            players: vec![p],
            boards: vec![[0, 0, 10, 10]],
        };
        let g = f.graph();
        assert!(g.contains("crop=344:498:18:14,scale=70:100"), "{g}");
        assert!(
            g.ends_with("drawbox=x=0:y=0:w=10:h=10:color=0xd8d8d8:t=fill[v]"),
            "{g}"
        );
    }
}
