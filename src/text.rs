//! Cutting text to a length, one way everywhere: the command line's tables,
//! the templates' one-line values and the rules' explanations. A leaf.

/// At most `max` characters; when cut, the last one is an ellipsis `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(max.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn prefix_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_by_characters() {
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("longer", 5), "long…");
        assert_eq!(truncate("ééééé!", 3), "éé…");
        assert_eq!(truncate("x", 0), "…");
    }

    #[test]
    fn prefixes_end_on_a_boundary() {
        assert_eq!(prefix_bytes("abc", 5), "abc");
        assert_eq!(prefix_bytes("abc", 2), "ab");
        assert_eq!(prefix_bytes("aé", 2), "a");
        assert_eq!(prefix_bytes("é", 0), "");
    }
}
