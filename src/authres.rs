//! Was this mail's sender authenticated? Reads the `Authentication-Results`
//! headers (RFC 8601) that the organisation's receiving server adds, and says
//! whether one of them shows DKIM, SPF or DMARC passing for the From domain.
//! Pure; it imports nothing above `parse`. Commands by mail
//! ([`crate::commands`]) rely on it so that a forged From moves nothing.
//!
//! # Whom to believe
//!
//! Only headers whose authserv-id is one of the trusted ids (the receiving
//! server's, from the configuration) are read; every other
//! `Authentication-Results` header is ignored wherever it stands, as RFC 8601
//! §5 says: anyone can write one into the mail they send. A header that
//! *claims* the trusted id can be forged too, unless the receiving server
//! removes such headers from incoming mail before adding its own (RFC 8601
//! §5 asks it to; OpenSMTPD's and Postfix's filters and rspamd do when told
//! to). That is a deployment requirement: this module cannot tell a forged
//! trusted header from a real one.
//!
//! # What passes
//!
//! In a trusted header, any of:
//! - `dkim=pass` whose `header.d` (or, without one, the domain of
//!   `header.i`) is aligned with the From domain;
//! - `spf=pass` whose `smtp.mailfrom` (an address or a bare domain) has a
//!   domain aligned with the From domain (`smtp.helo` alone does not count);
//! - `dmarc=pass` whose `header.from` is the From domain itself.
//!
//! "Aligned" approximates DMARC's relaxed alignment without a public suffix
//! list: the two domains are equal, or one is a subdomain of the other and
//! the shorter has at least two labels (`d=example.edu` covers mail From
//! `dept.example.edu`; `d=edu` covers nothing).
//!
//! # Bounds
//!
//! At most [`MAX_HEADERS`] `Authentication-Results` headers are read, each of
//! at most [`MAX_HEADER_LEN`] bytes (longer ones are skipped as unreadable),
//! with at most [`MAX_RESULTS`] results and comments nested at most
//! [`MAX_COMMENT_DEPTH`] deep. A header that cannot be read counts for
//! nothing; the reason says so.

use crate::parse::{ParsedMessage, domain_of};
use crate::text::truncate;

/// How many `Authentication-Results` headers are read, first to last.
pub const MAX_HEADERS: usize = 50;
/// The longest header value read, in bytes.
pub const MAX_HEADER_LEN: usize = 16 * 1024;
/// How many results (`method=result ...` clauses) of one header are kept.
pub const MAX_RESULTS: usize = 64;
/// How deep comments may nest.
pub const MAX_COMMENT_DEPTH: usize = 16;
/// How many properties one result keeps.
const MAX_PROPERTIES: usize = 32;

/// One `method=result` clause with its properties, all names lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// `dkim`, `spf`, `dmarc`, ... (a `/version` suffix dropped).
    pub method: String,
    /// `pass`, `fail`, `none`, ... lower-case.
    pub result: String,
    /// `(ptype.property, value)`, for example `("header.d", "example.edu")`;
    /// keys without a dot (`reason`, Microsoft's `action`) kept as they are.
    /// Values keep their case.
    pub properties: Vec<(String, String)>,
}

impl MethodResult {
    /// The values of a property, in order.
    pub fn property<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.properties
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One header, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// Who wrote it (compared ignoring case).
    pub authserv_id: String,
    /// Its results in order; empty for `none`.
    pub results: Vec<MethodResult>,
    /// Clauses that were skipped because they could not be read.
    pub skipped: usize,
}

/// Why a sender counts as authenticated: the first passing result found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The trusted server that wrote the header.
    pub authserv_id: String,
    /// `dkim`, `spf` or `dmarc`.
    pub method: String,
    /// The authenticated domain (`header.d`, the domain of `smtp.mailfrom`
    /// or `header.from`), lower-case.
    pub domain: String,
    /// The From domain it was checked against, lower-case.
    pub from_domain: String,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}=pass for {} (From domain {}) per {}",
            self.method, self.domain, self.from_domain, self.authserv_id
        )
    }
}

/// Whether the sender of `parsed` is authenticated for `sender_domain`
/// (the From address's domain) by a header from one of
/// `trusted_authserv_ids`. `Err` says why not, in words, bounded.
pub fn authenticated(
    parsed: &ParsedMessage,
    trusted_authserv_ids: &[String],
    sender_domain: &str,
) -> Result<Evidence, String> {
    let from_domain = sender_domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if from_domain.is_empty() {
        return Err("the sender has no domain to authenticate".to_string());
    }
    if trusted_authserv_ids.is_empty() {
        return Err("no trusted Authentication-Results server is configured".to_string());
    }
    let trusted = |id: &str| {
        trusted_authserv_ids
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case(id))
    };

    let mut seen_trusted = 0usize;
    let mut unreadable = 0usize;
    let mut other: Vec<String> = Vec::new();
    for (_, value) in parsed
        .headers
        .iter()
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("authentication-results"))
        .take(MAX_HEADERS)
    {
        let Ok(header) = parse_header(value) else {
            unreadable += 1;
            continue;
        };
        if !trusted(&header.authserv_id) {
            continue;
        }
        seen_trusted += 1;
        for r in &header.results {
            if let Some(domain) = passing_domain(r, &from_domain) {
                return Ok(Evidence {
                    authserv_id: header.authserv_id.to_ascii_lowercase(),
                    method: r.method.clone(),
                    domain,
                    from_domain,
                });
            }
            if other.len() < 8 {
                other.push(describe(r));
            }
        }
    }
    let ids = trusted_authserv_ids.join(", ");
    let reason = if seen_trusted == 0 {
        let mut s = format!("no Authentication-Results header from {ids}");
        if unreadable > 0 {
            s.push_str(&format!(" ({unreadable} unreadable header(s) skipped)"));
        }
        s
    } else if other.is_empty() {
        format!("Authentication-Results from {ids} shows no result for {from_domain}")
    } else {
        format!(
            "Authentication-Results from {ids} shows no DKIM, SPF or DMARC pass for {from_domain} ({})",
            other.join("; ")
        )
    };
    Err(truncate(&reason, 500))
}

/// The domain a result authenticates, when it passes and is aligned with
/// `from_domain`.
fn passing_domain(r: &MethodResult, from_domain: &str) -> Option<String> {
    if r.result != "pass" {
        return None;
    }
    let domain = match r.method.as_str() {
        "dkim" => r
            .property("header.d")
            .next()
            .map(|d| d.to_string())
            .or_else(|| r.property("header.i").next().map(address_domain))?,
        "spf" => address_domain(r.property("smtp.mailfrom").next()?),
        "dmarc" => {
            let d = clean_domain(r.property("header.from").next()?);
            return (d == from_domain).then_some(d);
        }
        _ => return None,
    };
    let domain = clean_domain(&domain);
    aligned(&domain, from_domain).then_some(domain)
}

/// The domain of an address-like value (`a@b`, `@b` or `b`).
fn address_domain(v: &str) -> String {
    domain_of(v).unwrap_or_else(|| v.to_string())
}

fn clean_domain(d: &str) -> String {
    d.trim()
        .trim_matches(|c| c == '<' || c == '>')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Relaxed alignment without a public suffix list (see the module's doc).
pub fn aligned(auth_domain: &str, from_domain: &str) -> bool {
    let a = clean_domain(auth_domain);
    let f = clean_domain(from_domain);
    if a.is_empty() || f.is_empty() || !is_domain(&a) || !is_domain(&f) {
        return false;
    }
    if a == f {
        return true;
    }
    let under = |long: &str, short: &str| {
        short.contains('.')
            && long.len() > short.len()
            && long.ends_with(short)
            && long.as_bytes()[long.len() - short.len() - 1] == b'.'
    };
    under(&f, &a) || under(&a, &f)
}

fn is_domain(d: &str) -> bool {
    d.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

fn describe(r: &MethodResult) -> String {
    let mut s = format!("{}={}", r.method, r.result);
    for key in ["header.d", "header.i", "smtp.mailfrom", "header.from"] {
        if let Some(v) = r.property(key).next() {
            s.push_str(&format!(" {key}={}", truncate(v, 80)));
        }
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A run of characters that are not ASCII white space, `;`, `=`, `(`,
    /// `)` or `"` (`=` allowed in a value).
    Word(String),
    Quoted(String),
    Eq,
    Semi,
}

/// Splits a header value into words, quoted strings, `=` and `;`, dropping
/// comments and white space.
fn lex(value: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(&c) = chars.peek() {
        // A word right after `=` is a value, which may hold `=` itself
        // (base64 in `header.b=`).
        let in_value = out.last() == Some(&Tok::Eq);
        match c {
            c if c.is_ascii_whitespace() => {
                chars.next();
            }
            ';' => {
                chars.next();
                out.push(Tok::Semi);
            }
            '=' => {
                chars.next();
                out.push(Tok::Eq);
            }
            '(' => {
                chars.next();
                let mut depth = 1usize;
                loop {
                    match chars.next() {
                        None => return Err("unterminated comment".to_string()),
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => {
                            depth += 1;
                            if depth > MAX_COMMENT_DEPTH {
                                return Err("comments nested too deep".to_string());
                            }
                        }
                        Some(')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
            ')' => return Err("unbalanced ')'".to_string()),
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".to_string()),
                        Some('\\') => match chars.next() {
                            Some(q) => s.push(q),
                            None => return Err("unterminated quoted string".to_string()),
                        },
                        Some('"') => break,
                        Some(q) => s.push(q),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            c if c.is_control() => return Err("control character".to_string()),
            _ => {
                let mut s = String::new();
                while let Some(&w) = chars.peek() {
                    if w.is_ascii_whitespace()
                        || matches!(w, ';' | '(' | ')' | '"')
                        || (w == '=' && !in_value)
                    {
                        break;
                    }
                    if w.is_control() {
                        return Err("control character".to_string());
                    }
                    s.push(w);
                    chars.next();
                }
                out.push(Tok::Word(s));
            }
        }
    }
    Ok(out)
}

/// Reads one `Authentication-Results` value (without the field name).
/// Lenient where real servers are (properties in the authserv-id part, as
/// Yahoo writes; properties without a dot; a trailing `;`), strict where a
/// misreading could attribute a result to the wrong clause: comments and
/// quoted strings are read fully, and a clause that does not start with
/// `method=result` is skipped whole.
pub fn parse_header(value: &str) -> Result<AuthResults, String> {
    if value.len() > MAX_HEADER_LEN {
        return Err(format!("longer than {MAX_HEADER_LEN} bytes"));
    }
    let toks = lex(value)?;
    let mut groups = toks.split(|t| *t == Tok::Semi);
    let head = groups.next().unwrap_or(&[]);
    let authserv_id = match head.first() {
        Some(Tok::Word(w)) | Some(Tok::Quoted(w)) if !w.is_empty() => w.clone(),
        _ => return Err("no authserv-id".to_string()),
    };
    let mut results = Vec::new();
    let mut skipped = 0usize;
    for group in groups {
        if group.is_empty() {
            continue;
        }
        if let [Tok::Word(w)] = group
            && w.eq_ignore_ascii_case("none")
        {
            continue;
        }
        if results.len() >= MAX_RESULTS {
            skipped += 1;
            continue;
        }
        match clause(group) {
            Some(r) => results.push(r),
            None => skipped += 1,
        }
    }
    Ok(AuthResults {
        authserv_id,
        results,
        skipped,
    })
}

fn clause(group: &[Tok]) -> Option<MethodResult> {
    let (method, result, rest) = match group {
        [Tok::Word(m), Tok::Eq, Tok::Word(r), rest @ ..] => (m, r, rest),
        _ => return None,
    };
    let method = method
        .split('/')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let mut properties = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match &rest[i..] {
            [Tok::Word(k), Tok::Eq, Tok::Word(v) | Tok::Quoted(v), ..] => {
                if properties.len() < MAX_PROPERTIES {
                    properties.push((k.to_ascii_lowercase(), v.clone()));
                }
                i += 3;
            }
            // `key=` with an empty value, as some servers write.
            [Tok::Word(k), Tok::Eq, ..] => {
                if properties.len() < MAX_PROPERTIES {
                    properties.push((k.to_ascii_lowercase(), String::new()));
                }
                i += 2;
            }
            _ => return None,
        }
    }
    Some(MethodResult {
        method,
        result: result.to_ascii_lowercase(),
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn ids() -> Vec<String> {
        vec!["mx.example.edu".to_string()]
    }

    fn msg(headers: &[&str]) -> ParsedMessage {
        let mut raw = String::new();
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("From: Jane Lee <jlee@example.edu>\r\nTo: isda-support@example.edu\r\nSubject: Re: [ISDA #1] x\r\nMessage-ID: <a@b>\r\n\r\n/take\r\n");
        parse(raw.as_bytes())
    }

    fn auth(headers: &[&str]) -> Result<Evidence, String> {
        authenticated(&msg(headers), &ids(), "example.edu")
    }

    #[test]
    fn dkim_pass_for_the_from_domain_passes() {
        let e = auth(&["Authentication-Results: mx.example.edu;\r\n dkim=pass (2048-bit key; unprotected) header.d=example.edu header.i=@example.edu header.s=sel header.b=AbC+/1=="]).unwrap();
        assert_eq!(e.method, "dkim");
        assert_eq!(e.domain, "example.edu");
        assert_eq!(e.authserv_id, "mx.example.edu");
        assert!(e.to_string().contains("dkim=pass for example.edu"));
    }

    #[test]
    fn spf_and_dmarc_pass() {
        let e = auth(&["Authentication-Results: mx.example.edu; spf=pass (mx.example.edu: domain of jlee@example.edu designates 192.0.2.1 as permitted sender) smtp.mailfrom=jlee@example.edu"]).unwrap();
        assert_eq!(
            (e.method.as_str(), e.domain.as_str()),
            ("spf", "example.edu")
        );
        let e = auth(&[
            "Authentication-Results: mx.example.edu; spf=pass smtp.mailfrom=bounces.example.edu",
        ])
        .unwrap();
        assert_eq!(e.domain, "bounces.example.edu");
        let e = auth(&["Authentication-Results: mx.example.edu; dkim=fail header.d=example.edu; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.edu"]).unwrap();
        assert_eq!(e.method, "dmarc");
        // dmarc must name the From domain itself.
        assert!(
            auth(&["Authentication-Results: mx.example.edu; dmarc=pass header.from=evil.com"])
                .is_err()
        );
        // helo alone does not count.
        assert!(
            auth(&["Authentication-Results: mx.example.edu; spf=pass smtp.helo=example.edu"])
                .is_err()
        );
    }

    #[test]
    fn dkim_for_another_domain_fails() {
        let err = auth(&["Authentication-Results: mx.example.edu; dkim=pass header.d=evil.com header.i=@evil.com"]).unwrap_err();
        assert!(
            err.contains("no DKIM, SPF or DMARC pass for example.edu"),
            "{err}"
        );
        assert!(err.contains("header.d=evil.com"), "{err}");
        // A look-alike suffix is not a parent.
        assert!(
            auth(&["Authentication-Results: mx.example.edu; dkim=pass header.d=badexample.edu"])
                .is_err()
        );
        assert!(auth(&["Authentication-Results: mx.example.edu; dkim=pass header.d=edu"]).is_err());
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=pass smtp.mailfrom=x@example.edu.evil.com"]).is_err());
    }

    #[test]
    fn header_i_counts_only_without_header_d() {
        assert!(
            auth(&["Authentication-Results: mx.example.edu; dkim=pass header.i=jlee@example.edu"])
                .is_ok()
        );
        assert!(auth(&["Authentication-Results: mx.example.edu; dkim=pass header.d=evil.com header.i=@example.edu"]).is_err());
    }

    #[test]
    fn failing_results_do_not_pass() {
        for r in [
            "fail",
            "neutral",
            "none",
            "temperror",
            "permerror",
            "policy",
            "softfail",
            "PASSED",
        ] {
            let h = format!(
                "Authentication-Results: mx.example.edu; dkim={r} header.d=example.edu; spf={r} smtp.mailfrom=example.edu"
            );
            assert!(auth(&[&h]).is_err(), "{r}");
        }
        let err = auth(&["Authentication-Results: mx.example.edu; none"]).unwrap_err();
        assert!(err.contains("shows no result"), "{err}");
    }

    #[test]
    fn untrusted_ids_are_ignored_first_or_last() {
        let forged = "Authentication-Results: evil.example.net; dkim=pass header.d=example.edu";
        let real_fail = "Authentication-Results: mx.example.edu; dkim=fail header.d=example.edu; spf=fail smtp.mailfrom=example.edu";
        let real_pass = "Authentication-Results: mx.example.edu; dkim=pass header.d=example.edu";
        assert!(auth(&[forged]).is_err());
        assert!(auth(&[forged, real_fail]).is_err());
        assert!(auth(&[real_fail, forged]).is_err());
        assert!(auth(&[forged, real_pass]).is_ok());
        assert!(auth(&[real_pass, forged]).is_ok());
        let err = auth(&[forged]).unwrap_err();
        assert!(
            err.starts_with("no Authentication-Results header from mx.example.edu"),
            "{err}"
        );
        // The trusted id inside a comment or a property does not make it trusted.
        assert!(auth(&["Authentication-Results: evil.example.net (mx.example.edu); dkim=pass header.d=example.edu"]).is_err());
        assert!(
            auth(&["Authentication-Results: \"evil.example.net\"; dkim=pass header.d=example.edu"])
                .is_err()
        );
        // No header at all, and no trusted id configured.
        assert!(auth(&[]).is_err());
        assert!(authenticated(&msg(&[real_pass]), &[], "example.edu").is_err());
        assert!(authenticated(&msg(&[real_pass]), &ids(), "").is_err());
    }

    #[test]
    fn case_is_ignored_where_the_rfc_says() {
        assert!(
            auth(&["AUTHENTICATION-RESULTS: MX.Example.EDU; DKIM=PASS HEADER.D=EXAMPLE.EDU"])
                .is_ok()
        );
        assert!(
            authenticated(
                &msg(&["authentication-results: mx.example.edu; dkim=pass header.d=example.edu"]),
                &["MX.EXAMPLE.EDU".to_string()],
                "Example.Edu"
            )
            .is_ok()
        );
        assert!(
            auth(&["Authentication-Results: mx.example.edu 1; dkim/1=pass header.d=example.edu."])
                .is_ok()
        );
    }

    #[test]
    fn comments_and_quotes_cannot_smuggle_a_clause() {
        // A sender-controlled comment or quoted value holding "; dkim=pass".
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=fail (sender said \"; dkim=pass header.d=example.edu\") smtp.mailfrom=evil.com"]).is_err());
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=fail (x; dkim=pass header.d=example.edu) smtp.mailfrom=evil.com"]).is_err());
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=fail smtp.mailfrom=\"a; dkim=pass header.d=example.edu\"@evil.com"]).is_err());
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=fail (nested (deep; dkim=pass header.d=example.edu) x) smtp.mailfrom=evil.com"]).is_err());
        // Escaped parentheses inside a comment.
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=fail (a \\) ; dkim=pass header.d=example.edu) smtp.mailfrom=evil.com"]).is_err());
        // An unterminated comment makes the whole header unreadable.
        assert!(auth(&["Authentication-Results: mx.example.edu; spf=fail (oops; dkim=pass header.d=example.edu"]).is_err());
    }

    #[test]
    fn real_world_headers_read() {
        let gmail = "mx.google.com;\r\n       dkim=pass header.i=@example.edu header.s=20230601 header.b=\"Ab/c+D1=\";\r\n       spf=pass (google.com: domain of jlee@example.edu designates 2001:db8::1 as permitted sender) smtp.mailfrom=jlee@example.edu;\r\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.edu";
        let h = parse_header(gmail).unwrap();
        assert_eq!(h.authserv_id, "mx.google.com");
        assert_eq!(h.results.len(), 3);
        assert_eq!(h.results[0].property("header.b").next(), Some("Ab/c+D1="));
        let ms = "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.edu; dkim=pass (signature was verified) header.d=example.edu;dmarc=pass action=none header.from=example.edu;compauth=pass reason=100";
        let h = parse_header(&format!("mx.example.edu; {ms}")).unwrap();
        assert_eq!(h.results.len(), 4);
        assert_eq!(h.results[2].property("action").next(), Some("none"));
        assert_eq!(h.skipped, 0);
        // Yahoo writes properties in the authserv-id part.
        let h = parse_header("mta.yahoo.com header.i=x; dkim=pass header.d=example.edu;").unwrap();
        assert_eq!(h.results.len(), 1);
        // An empty property value and an unreadable clause.
        let h = parse_header("mx; dkim=pass header.d=example.edu header.s=; garbage here; spf=pass smtp.mailfrom=a@b.c").unwrap();
        assert_eq!(h.results.len(), 2);
        assert_eq!(h.skipped, 1);
        // A base64 value with '=' padding does not break the clause.
        let h = parse_header("mx; dkim=pass header.b=abc= header.d=example.edu").unwrap();
        assert_eq!(
            h.results[0].property("header.d").next(),
            Some("example.edu")
        );
        assert!(parse_header("").is_err());
        assert!(parse_header("; dkim=pass").is_err());
    }

    #[test]
    fn hostile_input_is_bounded() {
        // A 10 MB header value.
        let big = format!(
            "mx.example.edu; dkim=pass header.d=example.edu {}",
            "x=y ".repeat(2_500_000)
        );
        assert!(parse_header(&big).is_err());
        let p = ParsedMessage {
            headers: vec![("Authentication-Results".into(), big)],
            ..msg(&[])
        };
        assert!(authenticated(&p, &ids(), "example.edu").is_err());
        // Deep comments.
        let deep = format!(
            "mx.example.edu; dkim=pass {}x{} header.d=example.edu",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(parse_header(&deep).is_err());
        // NUL and other controls.
        assert!(parse_header("mx.example.edu; dkim=pass header.d=example.edu\0").is_err());
        assert!(parse_header("mx.example.edu; dkim=pass header.d=exa\u{7}mple.edu").is_err());
        // Many results: bounded, and a pass beyond the bound is not read.
        let many = format!(
            "mx.example.edu;{} dkim=pass header.d=example.edu",
            " dkim=fail header.d=example.edu;".repeat(300)
        );
        let h = parse_header(&many).unwrap_or_else(|e| panic!("{e}"));
        assert!(h.results.len() <= MAX_RESULTS);
        // Many headers: only the first MAX_HEADERS are read.
        let mut headers: Vec<(String, String)> = (0..10_000)
            .map(|_| {
                (
                    "Authentication-Results".to_string(),
                    "evil; dkim=pass header.d=example.edu".to_string(),
                )
            })
            .collect();
        headers.push((
            "Authentication-Results".into(),
            "mx.example.edu; dkim=pass header.d=example.edu".into(),
        ));
        let p = ParsedMessage {
            headers,
            ..msg(&[])
        };
        assert!(authenticated(&p, &ids(), "example.edu").is_err());
        // Non-ASCII white space does not split a value into a new property.
        assert!(auth(&["Authentication-Results: mx.example.edu; dkim=pass header.d=evil.com\u{a0}header.d=example.edu"]).is_err());
        // Non-ASCII everywhere.
        assert!(
            auth(&["Authentication-Results: mx.example.edu; dkim=pass header.d=exämple.edu"])
                .is_err()
        );
    }

    #[test]
    fn only_the_authentication_results_field_counts() {
        assert!(
            auth(&[
                "ARC-Authentication-Results: i=1; mx.example.edu; dkim=pass header.d=example.edu"
            ])
            .is_err()
        );
        assert!(
            auth(&["X-Authentication-Results: mx.example.edu; dkim=pass header.d=example.edu"])
                .is_err()
        );
        assert!(
            auth(&[
                "Authentication-Results-Original: mx.example.edu; dkim=pass header.d=example.edu"
            ])
            .is_err()
        );
    }

    #[test]
    fn alignment() {
        assert!(aligned("example.edu", "example.edu"));
        assert!(aligned("Example.EDU.", "example.edu"));
        assert!(aligned("example.edu", "dept.example.edu"));
        assert!(aligned("mail.example.edu", "example.edu"));
        assert!(!aligned("edu", "example.edu"));
        assert!(!aligned("example.edu", "edu"));
        assert!(!aligned("xexample.edu", "example.edu"));
        assert!(!aligned("", "example.edu"));
        assert!(!aligned("example..edu", "example.edu"));
    }
}
