//! What of a URL or an error text may be printed: passwords and secret
//! parameters become `***`.

/// A URL (or connection string) fit to print: the password of its user
/// information and the values of secret-looking parameters (`password=`,
/// `pass=`, `pwd=`, `sslpassword=`, `secret`, `token`, `key`...) become `***`.
/// Works on any scheme and on malformed URLs (a misspelled scheme, no `//`,
/// unencoded `@` or `/` in the password): when unsure, it hides more.
///
/// This is the one place that decides what of a URL may be printed; every log
/// line, error and command output that shows a database URL goes through it
/// (or through [`redact_text`], for text that may embed one).
pub fn redact_url(url: &str) -> String {
    let mut spans = userinfo_password(url).into_iter().collect::<Vec<_>>();
    spans.extend(secret_params(url));
    hide(url, spans)
}

/// Text that may embed `url` or pieces of it (an error from a database
/// driver, say): the URL redacted by [`redact_url`], its secrets (raw,
/// percent-decoded or quoted) replaced by `***` wherever they appear, and
/// secret-looking `name=value` parameters hidden.
pub fn redact_text(text: &str, url: &str) -> String {
    if url.is_empty() {
        let spans = secret_params(text);
        return hide(text, spans);
    }
    let redacted = redact_url(url);
    let mut out = text.replace(url, &redacted);
    let quoted = format!("{url:?}");
    let quoted = quoted.trim_matches('"');
    if quoted != url {
        out = out.replace(quoted, &redacted);
    }
    let mut secrets = Vec::new();
    for r in userinfo_password(url).into_iter().chain(secret_params(url)) {
        let raw = &url[r];
        secrets.push(raw.to_string());
        secrets.push(percent_decode(raw));
        secrets.push(format!("{raw:?}").trim_matches('"').to_string());
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        // A secret of one or two characters would turn every such letter of
        // the text into stars; the structural redaction still covers it.
        if s.chars().count() >= 3 {
            out = out.replace(&s, "***");
        }
    }
    let spans = secret_params(&out);
    hide(&out, spans)
}

/// `text` with each of these byte ranges replaced by `***`.
fn hide(text: &str, mut spans: Vec<std::ops::Range<usize>>) -> String {
    spans.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in spans {
        if r.start < at {
            // Overlaps a hidden range: hide up to the further end.
            at = at.max(r.end);
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push_str("***");
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where the password of a URL's user information is, if it has one.
fn userinfo_password(url: &str) -> Option<std::ops::Range<usize>> {
    // Where the authority starts: after `scheme://`, or after `scheme:` and
    // any slashes when the `//` is missing, else at the start.
    let start = match url.find("://") {
        Some(i) => i + 3,
        None => {
            let scheme_end = url
                .char_indices()
                .take_while(|&(i, c)| {
                    c.is_ascii_alphabetic() || (i > 0 && (c.is_ascii_digit() || "+.-".contains(c)))
                })
                .last()
                .map(|(i, c)| i + c.len_utf8());
            match scheme_end {
                Some(end) if url[end..].starts_with(':') => {
                    let after = &url[end + 1..];
                    end + 1 + (after.len() - after.trim_start_matches('/').len())
                }
                _ => 0,
            }
        }
    };
    // The user information ends at the last `@`: a password may hold an
    // unencoded `@`, `/` or `?`, so anything before that `@` may be secret.
    let password = |start: usize| {
        let rest = &url[start..];
        let at = rest.rfind('@')?;
        let colon = rest[..at].find(':')?;
        (colon + 1 < at).then(|| start + colon + 1..start + at)
    };
    // `user:password@host` with no scheme at all reads like `scheme:...`.
    password(start).or_else(|| {
        if url.contains("://") {
            None
        } else {
            password(0)
        }
    })
}

/// Where the values of secret-looking `name=value` parameters are, in a URL's
/// query or in any text (`password=x`, `?sslpassword=x&`, `pwd=x; `).
fn secret_params(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while let Some(eq) = text[i..].find('=').map(|k| i + k) {
        let name_start = text[..eq]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_-.%".contains(c)))
            .map(|k| k + 1)
            .unwrap_or(0);
        let value_end = text[eq + 1..]
            .find(|c: char| c == '&' || c == ';' || c == '#' || c.is_whitespace())
            .map(|k| eq + 1 + k)
            .unwrap_or(text.len());
        let boundary = name_start == 0
            || matches!(
                bytes[name_start - 1],
                b'?' | b'&' | b';' | b',' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'('
            );
        if boundary && value_end > eq + 1 && is_secret_name(&text[name_start..eq]) {
            spans.push(eq + 1..value_end);
        }
        i = value_end.max(eq + 1);
    }
    spans
}

/// Whether a parameter name says its value is a secret.
fn is_secret_name(name: &str) -> bool {
    let n: String = percent_decode(name)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    !n.is_empty()
        && [
            "pass",
            "pwd",
            "secret",
            "token",
            "key",
            "auth",
            "credential",
            "sig",
        ]
        .iter()
        .any(|w| n.contains(w))
}

/// Percent-decoding, lossy: malformed escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |k: usize| b.get(k).and_then(|&c| (c as char).to_digit(16));
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_urls() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("sqlite://x.db", "sqlite://x.db"),
            (
                "sqlite://triaged.db?mode=rwc",
                "sqlite://triaged.db?mode=rwc",
            ),
            (
                "postgress://u:S3cretPW@127.0.0.1/db",
                "postgress://u:***@127.0.0.1/db",
            ),
            ("postgres:u:S3cretPW@h/db", "postgres:u:***@h/db"),
            ("postgres:/u:S3cretPW@h/db", "postgres:/u:***@h/db"),
            ("u:S3cretPW@h/db", "u:***@h/db"),
            ("postgres://u:p@ss/w?rd@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p:w@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=S3cretPW&sslmode=disable",
                "postgres://u@h/db?password=***&sslmode=disable",
            ),
            (
                "postgres://h/db?sslmode=require&sslpassword=S3cretPW",
                "postgres://h/db?sslmode=require&sslpassword=***",
            ),
            (
                "mysql://h/db?user=u&pass=S3cretPW",
                "mysql://h/db?user=u&pass=***",
            ),
            ("x://h/?PWD=S3cretPW;a=b", "x://h/?PWD=***;a=b"),
            ("x://h/?client_secret=S3cretPW", "x://h/?client_secret=***"),
            ("x://h/?pass%77ord=S3cretPW", "x://h/?pass%77ord=***"),
            (
                "host=h user=u password=S3cretPW",
                "host=h user=u password=***",
            ),
            ("", ""),
            ("::::@@@", ":***@"),
            ("p://ü:é@h", "p://ü:***@h"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn redacts_secrets_in_text() {
        let url = "postgres://u:S3cret%40PW@h/db?sslpassword=0ther";
        let text =
            format!("bad url {url:?}: password S3cret@PW for {url}, also 0ther and password=xyz!");
        let got = redact_text(&text, url);
        assert!(!got.contains("S3cret"), "{got}");
        assert!(!got.contains("0ther"), "{got}");
        assert!(!got.contains("xyz"), "{got}");
        assert!(
            got.contains("postgres://u:***@h/db?sslpassword=***"),
            "{got}"
        );
    }
}
