//! Untrusted text (host names, certificate and token fields) rendered for log lines and error
//! messages: escaped to printable ASCII and capped, so that hostile input can neither forge log
//! records nor flood the log.
//!
//! Escaping: `"` → `\"`, `\` → `\\`, newline, carriage return and tab → `\n`, `\r`, `\t`; other
//! printable ASCII (space to `~`, `'` included) is kept; every other character becomes
//! `\u{hex}` (lowercase hex, as Rust's `char::escape_default`). The cap counts characters of
//! *escaped* output and never splits an escape; text that did not fit is marked with `...`
//! (ASCII only), outside the quotes when the text is quoted.

use std::fmt::Write as _;

/// Marks text that was cut at its cap.
pub(crate) const ELLIPSIS: &str = "...";

/// `s` in double quotes, escaped, with at most `max` escaped characters between the quotes;
/// [`ELLIPSIS`] follows the closing quote if `s` was cut: `"abc"...`.
#[must_use]
pub(crate) fn quote_untrusted(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 2 + ELLIPSIS.len());
    out.push('"');
    let cut = push_escaped(&mut out, s, max);
    out.push('"');
    if cut {
        out.push_str(ELLIPSIS);
    }
    out
}

/// [`quote_untrusted`] without the quotes: `s` escaped, at most `max` escaped characters, then
/// [`ELLIPSIS`] if it was cut. For text that a message format already quotes, or library error
/// messages that may echo untrusted bytes.
#[must_use]
pub(crate) fn escape_untrusted(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + ELLIPSIS.len());
    if push_escaped(&mut out, s, max) {
        out.push_str(ELLIPSIS);
    }
    out
}

/// One untrusted character in single quotes, escaped as in strings, plus `'` → `\'`:
/// `'a'`, `'\''`, `'\u{1b}'`.
#[must_use]
pub(crate) fn quote_untrusted_char(c: char) -> String {
    let mut out = String::from("'");
    if c == '\'' {
        out.push_str("\\'");
    } else {
        push_escaped_char(&mut out, c);
    }
    out.push('\'');
    out
}

/// A bracketed, comma-separated list of the first `max_items` items, each as
/// [`quote_untrusted`]`(item, max_chars)`, then how many were left out:
/// `["a", "b", ... (3 more)]`.
#[must_use]
pub(crate) fn quote_untrusted_list<S: AsRef<str>>(
    items: &[S],
    max_items: usize,
    max_chars: usize,
) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().take(max_items).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&quote_untrusted(item.as_ref(), max_chars));
    }
    if let Some(more) = items.len().checked_sub(max_items)
        && more > 0
    {
        if max_items > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{ELLIPSIS} ({more} more)");
    }
    out.push(']');
    out
}

/// Appends `s` escaped, using at most `max` output characters; returns whether it had to stop
/// early.
fn push_escaped(out: &mut String, s: &str, max: usize) -> bool {
    let mut used = 0;
    let mut buf = String::new();
    for c in s.chars() {
        buf.clear();
        push_escaped_char(&mut buf, c);
        used += buf.len();
        if used > max {
            return true;
        }
        out.push_str(&buf);
    }
    false
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        ' '..='~' => out.push(c),
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_quoted_unchanged() {
        assert_eq!(quote_untrusted("alice@example", 128), "\"alice@example\"");
        assert_eq!(escape_untrusted("alice@example", 128), "alice@example");
        assert_eq!(quote_untrusted("", 128), "\"\"");
        assert_eq!(escape_untrusted("", 0), "");
        assert_eq!(quote_untrusted("it's ~ok~", 128), "\"it's ~ok~\"");
    }

    #[test]
    fn control_quote_backslash_and_non_ascii_escaped() {
        assert_eq!(
            escape_untrusted("a\"b\\c\nd\re\tf\u{0}g\u{1b}[31m\u{7f}é\u{202e}😀", 200),
            r#"a\"b\\c\nd\re\tf\u{0}g\u{1b}[31m\u{7f}\u{e9}\u{202e}\u{1f600}"#
        );
        assert_eq!(quote_untrusted("\"", 128), r#""\"""#);
    }

    #[test]
    fn escaping_matches_escape_default_except_single_quote() {
        for c in [
            '\0',
            '\t',
            '\n',
            '\r',
            '"',
            '\\',
            ' ',
            'a',
            '~',
            '\u{7f}',
            'é',
            '\u{10ffff}',
        ] {
            assert_eq!(
                escape_untrusted(&c.to_string(), 16),
                c.escape_default().to_string(),
                "{c:?}"
            );
        }
        assert_eq!(escape_untrusted("'", 16), "'");
    }

    #[test]
    fn cap_counts_escaped_output_and_marks_the_cut() {
        assert_eq!(escape_untrusted("abcd", 4), "abcd");
        assert_eq!(escape_untrusted("abcde", 4), "abcd...");
        assert_eq!(quote_untrusted("abcd", 4), "\"abcd\"");
        assert_eq!(quote_untrusted("abcde", 4), "\"abcd\"...");
        // An escape is never split: "\n" needs two characters and only one is left.
        assert_eq!(escape_untrusted("abc\n", 4), "abc...");
        assert_eq!(escape_untrusted("\u{1b}", 5), "...");
        assert_eq!(escape_untrusted("\u{1b}", 6), "\\u{1b}");
        assert_eq!(escape_untrusted("x", 0), "...");
    }

    #[test]
    fn output_is_printable_ascii_and_bounded() {
        let hostile = format!("\u{1b}[31mevil\n\u{202e}\u{10ffff}{}", "é".repeat(10_000));
        for out in [
            quote_untrusted(&hostile, 128),
            escape_untrusted(&hostile, 128),
        ] {
            assert!(out.bytes().all(|b| (0x20..0x7f).contains(&b)), "{out:?}");
            assert!(out.len() <= 128 + 2 + ELLIPSIS.len(), "{out}");
            assert!(out.ends_with(ELLIPSIS), "{out}");
        }
    }

    #[test]
    fn single_characters_quoted() {
        assert_eq!(quote_untrusted_char('a'), "'a'");
        assert_eq!(quote_untrusted_char('_'), "'_'");
        assert_eq!(quote_untrusted_char('\''), r"'\''");
        assert_eq!(quote_untrusted_char('"'), r#"'\"'"#);
        assert_eq!(quote_untrusted_char('\u{1b}'), r"'\u{1b}'");
        assert_eq!(quote_untrusted_char('é'), r"'\u{e9}'");
    }

    #[test]
    fn lists_quote_each_item_and_count_the_rest() {
        let none: [&str; 0] = [];
        assert_eq!(quote_untrusted_list(&none, 16, 128), "[]");
        assert_eq!(
            quote_untrusted_list(&["x", "a\"b"], 16, 128),
            r#"["x", "a\"b"]"#
        );
        let many: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        assert_eq!(
            quote_untrusted_list(&many, 2, 128),
            r#"["p0", "p1", ... (3 more)]"#
        );
        assert_eq!(
            quote_untrusted_list(&many, 5, 128),
            quote_untrusted_list(&many, 6, 128)
        );
        assert_eq!(quote_untrusted_list(&many, 0, 128), "[... (5 more)]");
        assert_eq!(quote_untrusted_list(&["abcdef"], 16, 3), r#"["abc"...]"#);
    }
}
