//! Routing rules: ordered, readable rule files that decide a new message's
//! queue, kind, urgency, impact, recipients, tags, acknowledgement and alert key.
//!
//! Pure: rule files are read once by [`RuleSet::load_dir`] (or handed in as text
//! to [`RuleSet::from_sources`]), compiled, and then [`RuleSet::evaluate`] does
//! no IO. The format and the semantics are documented for administrators in
//! `routing-rules/README.md`; in short:
//!
//! - rules are evaluated in order (files by name, rules in file order);
//! - the first matching rule that sets a field sets it, and later matching rules
//!   only fill fields still unset, unless they say `override = true`;
//! - recipients and tags accumulate; `stop = true` ends evaluation.
//!
//! # How matching stays fast
//!
//! Every leaf condition of every rule (a field and a matcher, "atom") is
//! compiled once and deduplicated. Atoms are indexed per message field: all
//! regular expressions and `contains` literals of a field form one
//! [`regex::RegexSet`], exact values and domains go into hash maps. Evaluating
//! a message scans each field once, sets one bit per true atom, and then walks
//! each rule's small boolean tree over those bits. Individual regexes run only
//! for rules that matched, to fill an alert key from captured groups and to say
//! what text matched.
//!
//! - [`format`]: the file format as deserialized, with spans.
//! - [`compile`]: validation (every problem as `file:line: reason`) and indexing.
//! - [`eval`]: evaluation and its explanation.
//!
//! The test cases kept beside the rules (`routing-rules/tests/`) are run by
//! `classify::cases`: they are judged on the completed decision.

pub mod check_cache;
mod compile;
mod eval;
mod format;

use std::collections::{BTreeSet, HashMap};

use std::sync::OnceLock;

use regex::Regex;
use regex_automata::meta;
use serde::{Deserialize, Serialize};

pub use eval::auto_generated;

use crate::priority::{Impact, Kind, Urgency};

/// The names rule files may refer to, from the configuration. `None` accepts
/// any name (for tools that run rules without a configuration).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub queues: Option<BTreeSet<String>>,
    pub mailboxes: Option<BTreeSet<String>>,
}

impl Known {
    pub fn new<Q, M>(queues: Q, mailboxes: M) -> Known
    where
        Q: IntoIterator,
        Q::Item: Into<String>,
        M: IntoIterator,
        M::Item: Into<String>,
    {
        Known {
            queues: Some(queues.into_iter().map(Into::into).collect()),
            mailboxes: Some(mailboxes.into_iter().map(Into::into).collect()),
        }
    }

    /// Accepts every queue and mailbox name.
    pub fn anything() -> Known {
        Known::default()
    }

    /// The queues and mailboxes of DOMAIN.md's default deployment.
    pub fn domain() -> Known {
        Known::new(
            [
                "Customer-Support",
                "ProductionDefect",
                "ProductionDeploy",
                "Admin",
                "Database",
                "Hosted-Help",
            ],
            ["isda-support", "map-support", "db-requests", "help"],
        )
    }
}

/// A compiled, validated rule set. Cheap to share behind an `Arc`; replacing it
/// wholesale is how a reload stays atomic.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    atoms: Vec<Atom>,
    index: Index,
    files: Vec<String>,
    /// Rules that can only match when one of their trigger atoms holds, by
    /// atom; most rules are skipped without walking their condition.
    triggered: Vec<Vec<u32>>,
    /// One bit per rule that has no trigger atom and is always tried.
    untriggered: Vec<u64>,
}

impl RuleSet {
    /// How many rules the set holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The files the rules came from, in load order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The rule names in evaluation order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }
}

/// What the rules decided for one message. `None` fields were set by no rule;
/// the caller completes them (mailbox default queue, default kind, priority
/// defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub queue: Option<String>,
    pub kind: Option<Kind>,
    pub urgency: Option<Urgency>,
    pub impact: Option<Impact>,
    /// Extra recipients, addresses lower-cased, in the order rules added them.
    pub recipients: Vec<String>,
    pub tags: Vec<String>,
    pub suppress_ack: Option<bool>,
    pub alert_key: Option<String>,
    /// The message reports a recovery (the problem of its alert key is over).
    #[serde(default)]
    pub recovery: Option<bool>,
    /// The rules that matched, in evaluation order.
    pub matched: Vec<MatchedRule>,
}

/// One rule that matched, why, and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedRule {
    pub rule: String,
    pub file: String,
    pub line: usize,
    /// The conditions that held, in the order written.
    pub reasons: Vec<Reason>,
    /// What the rule set, added, or could not set because an earlier rule had.
    pub effects: Vec<String>,
    /// Whether evaluation stopped after this rule.
    pub stopped: bool,
}

/// One condition that held: the field, the matcher, and the text that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub field: String,
    pub matcher: String,
    pub value: String,
}

impl Evaluation {
    /// The decision as lines of text, one per matched rule, for storing with
    /// the ticket and printing by `triaged classify`.
    pub fn explanation(&self) -> Vec<String> {
        if self.matched.is_empty() {
            return vec!["no rule matched".to_string()];
        }
        self.matched
            .iter()
            .map(|m| {
                let why = if m.reasons.is_empty() {
                    "always".to_string()
                } else {
                    m.reasons
                        .iter()
                        .map(|r| {
                            if r.value.is_empty() {
                                format!("{} {}", r.field, r.matcher)
                            } else {
                                format!("{} {} matched {:?}", r.field, r.matcher, r.value)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let effects = if m.effects.is_empty() {
                    "nothing".to_string()
                } else {
                    m.effects.join(", ")
                };
                let stop = if m.stopped { " (stop)" } else { "" };
                format!(
                    "rule {:?} ({}:{}): {why} -> {effects}{stop}",
                    m.rule, m.file, m.line
                )
            })
            .collect()
    }
}

/// A message field a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Field {
    Mailbox,
    From,
    To,
    Cc,
    ReplyTo,
    FromName,
    ToName,
    CcName,
    ReplyToName,
    Subject,
    Body,
    Attachment,
    AttachmentType,
    AutoSubmitted,
    Precedence,
    ListId,
    ReturnPath,
    XAutoResponseSuppress,
    HasAttachment,
    AutoGenerated,
    /// A header by name; the number indexes `Index::header_names`.
    Header(u32),
}

/// How many fields have a fixed slot in the index; headers come after.
const FIXED_SLOTS: usize = 20;

impl Field {
    fn slot(self) -> usize {
        match self {
            Field::Mailbox => 0,
            Field::From => 1,
            Field::To => 2,
            Field::Cc => 3,
            Field::ReplyTo => 4,
            Field::FromName => 5,
            Field::ToName => 6,
            Field::CcName => 7,
            Field::ReplyToName => 8,
            Field::Subject => 9,
            Field::Body => 10,
            Field::Attachment => 11,
            Field::AttachmentType => 12,
            Field::AutoSubmitted => 13,
            Field::Precedence => 14,
            Field::ListId => 15,
            Field::ReturnPath => 16,
            Field::XAutoResponseSuppress => 17,
            Field::HasAttachment => 18,
            Field::AutoGenerated => 19,
            Field::Header(i) => FIXED_SLOTS + i as usize,
        }
    }

    /// Address fields accept the `domain` and `in_list` matchers.
    fn is_address(self) -> bool {
        matches!(self, Field::From | Field::To | Field::Cc | Field::ReplyTo)
    }
}

/// One leaf condition: a field and how to match it.
#[derive(Debug)]
struct Atom {
    field: Field,
    /// The field's name for explanations (`subject`, `header X-Mailer`).
    field_name: String,
    matcher: Matcher,
}

#[derive(Debug)]
enum Matcher {
    /// Regular expressions and `contains` literals, any of which may match.
    /// The description keeps what was written.
    Regex {
        regexes: Vec<RuleRegex>,
        description: String,
    },
    /// Exact values; lower-cased unless case-sensitive.
    Exact {
        values: Vec<String>,
        case_sensitive: bool,
    },
    /// Domains (lower-case), matching the domain itself and its subdomains.
    Domain(Vec<String>),
    /// Named lists: addresses (lower-case) and `@domain` entries.
    InList {
        names: Vec<String>,
        addresses: Vec<String>,
        domains: Vec<String>,
    },
    /// A boolean field compared with a value.
    Bool(bool),
}

/// One regex of a rule. Its syntax and compiled size are checked when the
/// rules are loaded, and it is matched through its field's `RegexSet`; the
/// regex of its own (for the text it matched and its captured groups) is
/// compiled only when a rule that holds asks for it, once per rule set.
/// Compiling each one at load cost most of a one-message run's start-up.
#[derive(Debug)]
struct RuleRegex {
    /// The pattern as given to the set (`contains` literals escaped).
    source: String,
    case_sensitive: bool,
    /// Its named groups, known at load (alert-key templates are checked
    /// against them).
    names: Vec<String>,
    compiled: OnceLock<Option<Regex>>,
}

impl RuleRegex {
    fn as_str(&self) -> &str {
        &self.source
    }

    fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The compiled regex, built on first use with the limits it was
    /// checked against at load. `None` only if it cannot be built after
    /// all, which the load-time check rules out; it then matches nothing.
    fn regex(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| {
                let built = regex::RegexBuilder::new(&self.source)
                    .case_insensitive(!self.case_sensitive)
                    .size_limit(compile::RULE_SIZE_LIMIT)
                    .dfa_size_limit(compile::RULE_DFA_LIMIT)
                    .build();
                built.ok()
            })
            .as_ref()
    }
}

/// A rule's condition over atom numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Expr {
    True,
    Atom(u32),
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
}

/// Per-field lookup structures built from the atoms.
#[derive(Debug, Default)]
struct FieldIndex {
    /// Every regex of the field, as one `regex::RegexSet` would be (match
    /// kind all), built from the patterns parsed once at load.
    set: Option<meta::Regex>,
    /// The atom of each pattern in `set`.
    set_atoms: Vec<u32>,
    exact_ci: HashMap<String, Vec<u32>>,
    exact_cs: HashMap<String, Vec<u32>>,
    domains: HashMap<String, Vec<u32>>,
}

impl FieldIndex {
    fn is_empty(&self) -> bool {
        self.set.is_none()
            && self.exact_ci.is_empty()
            && self.exact_cs.is_empty()
            && self.domains.is_empty()
    }
}

#[derive(Debug, Default)]
struct Index {
    /// By `Field::slot`.
    fields: Vec<FieldIndex>,
    /// Fixed fields with something to match, in slot order.
    active: Vec<Field>,
    /// Lower-case header name to its `Field::Header` number.
    header_names: HashMap<String, u32>,
    /// Atoms on boolean fields, evaluated directly.
    bools: Vec<(u32, Field, bool)>,
    /// The longest regex set, to size the scratch buffer once.
    max_set: usize,
}

/// What a rule does when it matches.
#[derive(Debug, Default)]
struct Actions {
    queue: Option<String>,
    kind: Option<Kind>,
    urgency: Option<Urgency>,
    impact: Option<Impact>,
    /// Addresses, lists already expanded, lower-case.
    recipients: Vec<String>,
    tags: Vec<String>,
    suppress_ack: Option<bool>,
    alert_key: Option<Template>,
    recovery: Option<bool>,
    stop: bool,
    override_: bool,
}

/// An alert-key template: text with `{name}` holes.
#[derive(Debug, Clone)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Capture(String),
    Builtin(Builtin),
}

/// Values an alert key may use besides captured groups.
#[derive(Debug, Clone, Copy)]
enum Builtin {
    Mailbox,
    From,
    FromDomain,
    Subject,
}

#[derive(Debug)]
struct Rule {
    name: String,
    file: String,
    line: usize,
    cond: Expr,
    actions: Actions,
}

#[cfg(test)]
mod tests;
