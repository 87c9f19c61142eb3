//! Untrusted names (class names from folder names or a model's `config.json`, file names) made
//! safe to print on a terminal.

use std::borrow::Cow;

/// `s` with every character that could control a terminal escaped as `\u{..}`: ASCII and C1
/// control characters (ESC, newline, carriage return, backspace, ...) and the Unicode bidi
/// controls that reorder how text is displayed. Borrowed when there is nothing to escape.
///
/// For human-readable output only; JSON and CSV carry names exactly (their own escaping applies).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_and_keeps_the_rest() {
        assert!(matches!(printable("chat noir é 猫"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}[31mred\nnext\r\u{7f}\u{9b}"),
            "\\u{1b}[31mred\\u{a}next\\u{d}\\u{7f}\\u{9b}"
        );
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
    }
}
