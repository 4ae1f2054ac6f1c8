//! The rule-file format as written: serde structures with spans, before any
//! validation. See `routing-rules/README.md` for the documentation.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// One rule file: named lists and ordered rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDe {
    #[serde(default)]
    pub lists: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub rule: Vec<RuleDe>,
}

/// One `[[rule]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDe {
    pub name: Spanned<String>,
    #[serde(default)]
    pub when: Option<CondDe>,
    pub queue: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub urgency: Option<Spanned<String>>,
    pub impact: Option<Spanned<String>>,
    #[serde(default)]
    pub recipients: Vec<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub suppress_ack: Option<bool>,
    pub alert_key: Option<Spanned<String>>,
    /// A recovery: resolves the open ticket of its alert key.
    pub recovery: Option<Spanned<bool>>,
    #[serde(default)]
    pub stop: bool,
    #[serde(default, rename = "override")]
    pub override_: bool,
}

/// A condition: every key given must hold (an implicit `all`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CondDe {
    pub all: Option<Vec<CondDe>>,
    pub any: Option<Vec<CondDe>>,
    pub not: Option<Box<CondDe>>,
    pub mailbox: Option<MatchAt>,
    pub from: Option<MatchAt>,
    pub to: Option<MatchAt>,
    pub cc: Option<MatchAt>,
    pub reply_to: Option<MatchAt>,
    pub from_name: Option<MatchAt>,
    pub to_name: Option<MatchAt>,
    pub cc_name: Option<MatchAt>,
    pub reply_to_name: Option<MatchAt>,
    pub subject: Option<MatchAt>,
    pub body: Option<MatchAt>,
    pub attachment: Option<MatchAt>,
    pub attachment_type: Option<MatchAt>,
    pub auto_submitted: Option<MatchAt>,
    pub precedence: Option<MatchAt>,
    pub list_id: Option<MatchAt>,
    pub return_path: Option<MatchAt>,
    pub x_auto_response_suppress: Option<MatchAt>,
    pub header: Option<BTreeMap<String, MatchAt>>,
    pub has_attachment: Option<bool>,
    pub auto_generated: Option<bool>,
}

/// One or more patterns, each with its span when it was written on its own.
#[derive(Debug, Default, Clone)]
pub(crate) struct Patterns(pub Vec<(String, Option<Range<usize>>)>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Patterns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Patterns, E> {
                Ok(Patterns(vec![(s.to_string(), None)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Patterns, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    let span = s.span();
                    out.push((s.into_inner(), Some(span)));
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A matcher as written: the short form (a string or an array of strings,
/// whose meaning depends on the field) or a table naming the matcher.
#[derive(Debug)]
pub(crate) enum MatchDe {
    Short(Patterns),
    Full(MatchTable),
}

#[derive(Debug, Default)]
pub(crate) struct MatchTable {
    pub regex: Option<Spanned<Patterns>>,
    pub exact: Option<Spanned<Patterns>>,
    pub contains: Option<Spanned<Patterns>>,
    pub domain: Option<Spanned<Patterns>>,
    pub in_list: Option<Spanned<Patterns>>,
    pub case_sensitive: bool,
}

impl<'de> Deserialize<'de> for MatchDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatchDe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a pattern, an array of patterns, or a table such as { regex = \"...\" }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MatchDe, E> {
                Ok(MatchDe::Short(Patterns(vec![(s.to_string(), None)])))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MatchDe, A::Error> {
                Patterns::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(MatchDe::Short)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MatchDe, A::Error> {
                let first = map.next_key::<String>()?;
                table_from_map(first, map).map(MatchDe::Full)
            }
        }
        d.deserialize_any(V)
    }
}

const TABLE_FIELDS: &[&str] = &[
    "regex",
    "exact",
    "contains",
    "domain",
    "in_list",
    "case_sensitive",
];

/// Reads a matcher table whose first key has already been taken.
fn table_from_map<'de, A: MapAccess<'de>>(
    first: Option<String>,
    mut map: A,
) -> Result<MatchTable, A::Error> {
    let mut t = MatchTable::default();
    let mut key = first;
    while let Some(k) = key {
        match k.as_str() {
            "regex" => t.regex = Some(map.next_value()?),
            "exact" => t.exact = Some(map.next_value()?),
            "contains" => t.contains = Some(map.next_value()?),
            "domain" => t.domain = Some(map.next_value()?),
            "in_list" => t.in_list = Some(map.next_value()?),
            "case_sensitive" => t.case_sensitive = map.next_value()?,
            other => return Err(de::Error::unknown_field(other, TABLE_FIELDS)),
        }
        key = map.next_key()?;
    }
    Ok(t)
}

// The names toml's deserializer recognises to hand out a value's span (the
// protocol of `toml::Spanned`, from serde_spanned 0.6).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";

/// A matcher with its span when the format has one. `toml::Spanned` cannot be
/// used here: a table written with dotted keys (`when.subject.regex = ...`)
/// has no span, and `Spanned` then refuses it. This asks for the span the same
/// way and falls back to the plain value when there is none.
#[derive(Debug)]
pub(crate) struct MatchAt {
    pub m: MatchDe,
    pub span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for MatchAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatchAt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a pattern, an array of patterns, or a table such as { regex = \"...\" }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MatchAt, E> {
                Ok(MatchAt {
                    m: MatchDe::Short(Patterns(vec![(s.to_string(), None)])),
                    span: None,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MatchAt, A::Error> {
                let p = Patterns::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(MatchAt {
                    m: MatchDe::Short(p),
                    span: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MatchAt, A::Error> {
                let first = map.next_key::<String>()?;
                if first.as_deref() != Some(SPANNED_START) {
                    return Ok(MatchAt {
                        m: MatchDe::Full(table_from_map(first, map)?),
                        span: None,
                    });
                }
                let start: usize = map.next_value()?;
                let mut end = start;
                let mut m = None;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        SPANNED_END => end = map.next_value()?,
                        SPANNED_VALUE => m = Some(map.next_value::<MatchDe>()?),
                        other => return Err(de::Error::unknown_field(other, TABLE_FIELDS)),
                    }
                }
                let m = m.ok_or_else(|| de::Error::missing_field("value"))?;
                Ok(MatchAt {
                    m,
                    span: Some(start..end),
                })
            }
        }
        d.deserialize_struct(
            SPANNED_NAME,
            &[SPANNED_START, SPANNED_END, SPANNED_VALUE],
            V,
        )
    }
}
