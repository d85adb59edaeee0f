//! Limits on what one job may ask reelay to hold in memory or draw, checked
//! when the manifest is read, so one oversized job fails alone with a record
//! instead of aborting the process (and every other job with it).

use crate::invalid::Invalid;
use crate::overlay::spec::{OverlaySpec, SPEC_OBJECT};

/// Most text items one overlay may draw.
pub const MAX_OVERLAY_TEXT_ITEMS: usize = 16;
/// Most pixels all text labels of one overlay may rasterise to together
/// (each label is an 8-bit bitmap held for the whole clip): 64 MiB.
pub const MAX_OVERLAY_TEXT_PIXELS: f64 = 64.0 * 1024.0 * 1024.0;

/// Upper bound of a label's bitmap: a glyph is at most about `size` wide and
/// the line with its shadow about 1.5 × `size` high.
fn label_pixels(chars: usize, size: f64) -> f64 {
    chars as f64 * size * size * 1.5
}

/// Bounds the text items of an overlay: their count and the memory their
/// rasterised labels need.
pub fn check_overlay(spec: &OverlaySpec) -> Result<(), Invalid> {
    let refuse =
        |field: String, problem: String, fix: &str| Invalid::new(SPEC_OBJECT, field, problem, fix);
    if spec.text.len() > MAX_OVERLAY_TEXT_ITEMS {
        return Err(refuse(
            "text".into(),
            format!(
                "{} text items is over the limit of {MAX_OVERLAY_TEXT_ITEMS}",
                spec.text.len()
            ),
            "draw fewer labels, or split the clip",
        ));
    }
    let mut total = 0.0;
    for (i, t) in spec.text.iter().enumerate() {
        if let Some(c) = t.text.chars().find(|c| c.is_control()) {
            return Err(refuse(
                format!("text[{i}].text"),
                format!("it contains the control character {:?}", c),
                "remove it; a label is one line of printable text",
            ));
        }
        total += label_pixels(t.text.chars().count(), t.size);
        if total > MAX_OVERLAY_TEXT_PIXELS {
            return Err(refuse(
                format!("text[{i}]"),
                format!(
                    "the labels up to this one would rasterise to about {:.0} million pixels, over the limit of {:.0} million",
                    total / 1e6,
                    MAX_OVERLAY_TEXT_PIXELS / 1e6
                ),
                "use a smaller `size` or shorter texts",
            ));
        }
    }
    Ok(())
}

/// The longest caption, in characters: one line over a clip.
pub const MAX_CAPTION_CHARS: usize = 200;

/// A caption: at most [`MAX_CAPTION_CHARS`] printable characters on one line.
/// The refusal names the field `caption`; a manifest puts its clip's path
/// in front.
pub fn check_caption(caption: &str) -> Result<(), Invalid> {
    let refuse = |problem: String, fix: &str| Invalid::new("caption", "caption", problem, fix);
    if caption.chars().count() > MAX_CAPTION_CHARS {
        return Err(refuse(
            format!("the caption is longer than {MAX_CAPTION_CHARS} characters"),
            "shorten it",
        ));
    }
    if let Some(c) = caption.chars().find(|c| c.is_control()) {
        return Err(refuse(
            format!(
                "the caption contains the control character {:?}, which would cut or garble the drawn text",
                c
            ),
            "remove it; a caption is one line of printable text",
        ));
    }
    Ok(())
}

/// Characters of `texts` the font at `font` has no glyph for (FFmpeg draws
/// them as boxes); empty when every character is covered or the font cannot
/// be read (the step that draws reports that).
pub fn missing_glyphs<'a>(
    font: &std::path::Path,
    texts: impl IntoIterator<Item = &'a str>,
) -> Vec<char> {
    let chars: Vec<char> = texts
        .into_iter()
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let Some(font) = std::fs::read(font)
        .ok()
        .and_then(|b| ab_glyph::FontVec::try_from_vec(b).ok())
    else {
        return Vec::new();
    };
    let mut missing: Vec<char> = Vec::new();
    for c in chars {
        if ab_glyph::Font::glyph_id(&font, c).0 == 0 && !missing.contains(&c) {
            missing.push(c);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adversarial case: 30 large text items (about 7 KB of JSON)
    /// aborted `reelay dev` on an allocation.
    #[test]
    fn thirty_large_text_items_are_refused_before_drawing() {
        let item = serde_json::json!({"text": "W".repeat(200), "x": 0, "y": 0, "size": 1000});
        let spec: OverlaySpec =
            serde_json::from_value(serde_json::json!({"text": vec![item; 30]})).unwrap();
        assert!(check_overlay(&spec).is_err());
        let one = serde_json::json!({"text": "W".repeat(200), "x": 0, "y": 0, "size": 1000});
        let spec: OverlaySpec = serde_json::from_value(serde_json::json!({"text": [one]})).unwrap();
        let refused = check_overlay(&spec).unwrap_err();
        assert_eq!(refused.field, "text[0]", "{refused}");
        let fine = serde_json::json!({"text": "Goal!", "x": 10, "y": 10, "size": 48});
        let spec: OverlaySpec =
            serde_json::from_value(serde_json::json!({"text": vec![fine; 16]})).unwrap();
        check_overlay(&spec).unwrap();
    }

    /// Glyphs the caption font lacks were drawn as boxes without a word.
    #[test]
    fn glyphs_the_font_lacks_are_found() {
        let Ok(font) = crate::tasks::compile::locate_font() else {
            panic!("no caption font: run `make setup`");
        };
        assert!(missing_glyphs(&font, ["Goal! été"]).is_empty());
        assert_eq!(
            missing_glyphs(&font, ["Goal \u{1F600}\u{4E2D}"]),
            ['\u{1F600}', '\u{4E2D}']
        );
    }

    #[test]
    fn a_nul_in_a_caption_is_refused() {
        assert!(check_caption("Goal\0 hidden").is_err());
        assert!(check_caption("line\nbreak").is_err());
        check_caption("Goal! été").unwrap();
    }
}
