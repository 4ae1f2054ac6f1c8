//! Text for the terminal: mail shown with its controls escaped, JSON likewise,
//! times, truncation and ticket numbers as typed.

/// `1042`, `#1042`, `[ISDA #1042]` -> 1042.
pub(super) fn parse_number(s: &str) -> Option<i64> {
    let digits: String = s
        .trim()
        .trim_end_matches(']')
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

pub fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A time for a table: `2026-11-23 10:02:11` (UTC, said once above it).
pub(super) fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A wall-clock delay: `45s`, `12m 5s`, `3h 20m`, `2d 4h`; negative as `-`.
pub(super) fn format_duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let text = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    };
    format!("{sign}{text}")
}

pub(super) use crate::text::truncate;

/// Text from mail as it may reach a terminal: every control character (C0,
/// DEL, C1 such as the one-byte CSI U+009B) and every bidi control shows as a
/// visible escape (`\x1b`, `\u{9b}`, `\u{202e}`), so mail cannot move the
/// cursor, retitle the window, ring the bell or reorder what is shown.
/// `multiline` keeps line breaks (LF, CR LF) and tabs (a body); elsewhere
/// they show as `\n` and `\t`. Any other CR shows as `\r`.
pub fn visible(s: &str, multiline: bool) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let escape = |c: char| match c {
        '\n' | '\t' => !multiline,
        c => needs_escape(c),
    };
    if !s.chars().any(escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !escape(c) {
            out.push(c);
            continue;
        }
        if multiline && c == '\r' && chars.peek() == Some(&'\n') {
            // A CR LF line break is a line break.
            continue;
        }
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\t' => out.write_str("\\t"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    std::borrow::Cow::Owned(out)
}

/// Characters never printed raw: controls, bidi controls, line and
/// paragraph separators.
pub(super) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// One line of stored text for the terminal.
pub(super) fn vis(s: &str) -> std::borrow::Cow<'_, str> {
    visible(s, false)
}

/// JSON for the terminal: valid JSON with the same values, in which the
/// characters serde_json leaves raw (DEL, C1, bidi controls) are written as
/// `\uXXXX` escapes. They only occur inside strings, where that is the same value.
pub fn json_visible<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let text = serde_json::to_string_pretty(value)?;
    if !text.chars().any(needs_escape) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            // Outside strings serde_json writes only ASCII structure and
            // whitespace (\n, space), which are not escaped here.
            if c == '\n' || c == '\t' || c == '\r' {
                out.push(c);
            } else {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(format_duration(45_000), "45s");
        assert_eq!(format_duration(12 * 60_000 + 5_000), "12m 5s");
        assert_eq!(format_duration(3 * 3_600_000 + 20 * 60_000), "3h 20m");
        assert_eq!(format_duration(2 * 86_400_000 + 4 * 3_600_000 + 1), "2d 4h");
        assert_eq!(format_duration(-90_000), "-1m 30s");
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn ticket_number_forms() {
        assert_eq!(parse_number("1042"), Some(1042));
        assert_eq!(parse_number("#1042"), Some(1042));
        assert_eq!(parse_number("[ISDA #1042]"), Some(1042));
        assert_eq!(parse_number("abc"), None);
    }

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        let hostile = "a\x1b]0;owned\x07b\u{9b}31mc\x08\rd\u{202e}e\u{2066}f\x7f\u{85}g\u{200f}";
        assert_eq!(
            visible(hostile, false),
            "a\\x1b]0;owned\\x07b\\u{9b}31mc\\x08\\rd\\u{202e}e\\u{2066}f\\x7f\\u{85}g\\u{200f}"
        );
        assert_eq!(visible("one\ntwo\tthree", false), "one\\ntwo\\tthree");
        // A body keeps its lines; a CR that is not part of CR LF is shown.
        assert_eq!(
            visible("one\r\ntwo\n\tthree\rfour\x1b[2J", true),
            "one\ntwo\n\tthree\\rfour\\x1b[2J"
        );
        // Ordinary text, accents and other scripts pass untouched.
        assert!(matches!(
            visible("Grüße, 東京 – ok", false),
            std::borrow::Cow::Borrowed(_)
        ));
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let ch = char::from_u32(c).expect("char");
            assert!(!visible(&ch.to_string(), false).contains(ch), "{c:#x}");
        }
    }

    #[test]
    fn json_stays_valid_and_equal_without_raw_controls() {
        let value = serde_json::json!({
            "subject": "x\u{1b}[31m\u{9b}2J\u{202e}\u{7f}\u{2028}y",
            "body": "line\r\nline\u{7}",
        });
        let text = json_visible(&value).expect("json");
        assert!(
            !text.chars().any(|c| needs_escape(c) && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
    }
}
