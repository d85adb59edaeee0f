//! Text that came from the bucket (metadata, keys, manifests) is data, not
//! terminal commands: escape sequences and other control characters are shown
//! escaped, so `reelay audit` cannot be made to rewrite the user's terminal.

/// `text` with every control character (ESC, CR, BEL, C1 controls, ...)
/// written as a visible `\u{..}` escape; newlines and tabs too, since a
/// single field must stay on its line.
pub fn for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_bidi_override(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that reorder the text around them on screen.
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_run() {
        let s = for_terminal("worker\u{1b}[2J\u{1b}]0;pwned\u{7}\r\nx");
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert!(s.starts_with("worker\\u{1b}[2J"));
        assert_eq!(for_terminal("plain é text"), "plain é text");
    }
}
