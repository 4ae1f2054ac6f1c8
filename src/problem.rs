//! Problems found in a file (the config, the rules, the templates), reported
//! as `file:line: reason`. A leaf: it imports nothing of the crate, so every
//! loader can report through it without importing another.

use std::fmt;

/// One problem found in a file, reported as `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// A list of problems; the error type of loading and checking.
#[derive(Debug, Clone, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The reason a TOML text was refused, never empty: the parser gives no words
/// for some errors (a control character in a comment), so the offending
/// character is named instead.
pub fn toml_reason(e: &toml::de::Error, text: &str) -> String {
    let words = e.message().trim();
    if !words.is_empty() {
        return words.to_string();
    }
    let found = e
        .span()
        .and_then(|s| text.get(s.start..))
        .and_then(|rest| rest.chars().next());
    match found {
        Some(c) if c.is_control() => format!(
            "control character U+{:04X} is not allowed in TOML",
            u32::from(c)
        ),
        Some(c) => format!("invalid TOML at {c:?}"),
        None => "invalid TOML".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_print_one_a_line() {
        let p = |line, reason: &str| Problem {
            file: "f.toml".to_string(),
            line,
            reason: reason.to_string(),
        };
        let all = Problems(vec![p(3, "bad"), p(0, "worse")]);
        assert_eq!(all.to_string(), "f.toml:3: bad\nf.toml:0: worse");
        assert_eq!(Problems::default().to_string(), "");
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
