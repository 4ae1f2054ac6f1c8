//! Loading rule files: validation with every problem as `file:line: reason`,
//! then compilation into the per-field index.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;

use regex_automata::meta;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;
use regex_syntax::hir::Hir;
use toml::Spanned;

use super::check_cache;
use super::format::{CondDe, FileDe, MatchAt, MatchDe, MatchTable, Patterns, RuleDe};
use super::{
    Actions, Atom, Builtin, Expr, FIXED_SLOTS, Field, FieldIndex, Index, Known, Matcher, Part,
    Rule, RuleRegex, RuleSet, Template,
};
use crate::priority::{Impact, Kind, Urgency};
use crate::problem::{Problem, line_of};

/// The compiled size one regex may reach. The shipped rules need at most a
/// few tens of KB each; `\w{140}` (Unicode classes repeated) needs megabytes,
/// and a set of sixty such rules once took 1.9 GB to build.
pub const RULE_SIZE_LIMIT: usize = 1024 * 1024;
/// Size classes a regex is tried in, smallest first; it is counted at the
/// first one it fits. Generated rules fit 4 KiB, the shipped ones 128 KiB.
const SIZE_CLASSES: [usize; 3] = [4 * 1024, 128 * 1024, RULE_SIZE_LIMIT];
/// The budget of all regexes of a rule set together, counted by class: the
/// per-field limit alone would let thousands of header fields each hold a
/// 1 MiB regex.
pub const TOTAL_SIZE_LIMIT: usize = 64 * 1024 * 1024;
/// The lazy DFA cache of one regex (grows while matching, never beyond this).
pub(super) const RULE_DFA_LIMIT: usize = 2 * 1024 * 1024;
/// The compiled size of all the regexes of one field together (one `RegexSet`).
/// A thousand generated rules need under 1 MB per field, the shipped ones 0.5 MB.
pub const SET_SIZE_LIMIT: usize = 16 * 1024 * 1024;
/// The lazy DFA cache of one field's set.
const SET_DFA_LIMIT: usize = 32 * 1024 * 1024;
/// The largest rule file read: the shipped files are a few KB, ten thousand
/// generated rules 1.6 MB.
pub const MAX_RULE_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The most rules one set may have (every file together).
pub const MAX_RULES: usize = 10_000;

/// Where an atom was first written: for problems found when the field
/// indexes are built, after the rules are compiled.
#[derive(Debug, Clone)]
struct AtomOrigin {
    file: String,
    line: usize,
    rule: String,
}

/// A named list: addresses and `@domain` entries, lower-case.
#[derive(Debug, Default, Clone)]
struct List {
    addresses: Vec<String>,
    domains: Vec<String>,
    file: String,
    line: usize,
}

impl RuleSet {
    /// Loads every `*.toml` file directly in `dir`, in name order.
    pub fn load_dir(dir: &Path, known: &Known) -> Result<RuleSet, Vec<Problem>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![Problem {
                file: dir.display().to_string(),
                line: 0,
                reason: format!("cannot read the rules directory: {e}"),
            }]
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for p in paths {
            match read_bounded(&p) {
                Ok(text) => sources.push((p.display().to_string(), text)),
                Err(reason) => problems.push(Problem {
                    file: p.display().to_string(),
                    line: 0,
                    reason,
                }),
            }
        }
        match RuleSet::from_sources(&sources, known) {
            Ok(set) if problems.is_empty() => Ok(set),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        }
    }

    /// Compiles rule files given as (file name, text), in the order given.
    pub fn from_sources(
        files: &[(String, String)],
        known: &Known,
    ) -> Result<RuleSet, Vec<Problem>> {
        let mut c = Compiler {
            known,
            problems: Vec::new(),
            lists: HashMap::new(),
            atoms: Vec::new(),
            atom_keys: HashMap::new(),
            header_names: HashMap::new(),
            file: String::new(),
            line_starts: Vec::new(),
            rule_span: 0..0,
            rule_name: String::new(),
            atom_origins: Vec::new(),
            regex_charge: 0,
            hirs: HashMap::new(),
        };
        // First every file is parsed and its lists collected, so that a rule
        // may use a list defined in any file.
        let mut parsed = Vec::new();
        for (name, text) in files {
            if text.len() as u64 > MAX_RULE_FILE_BYTES {
                c.problems.push(Problem {
                    file: name.clone(),
                    line: 0,
                    reason: too_big(text.len() as u64),
                });
                continue;
            }
            c.set_file(name, text);
            match toml::from_str::<FileDe>(text) {
                Ok(f) => {
                    c.collect_lists(&f);
                    parsed.push((name.clone(), text, f));
                }
                Err(e) => {
                    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
                    c.problems.push(Problem {
                        file: name.clone(),
                        line,
                        reason: crate::problem::toml_reason(&e, text),
                    });
                }
            }
        }
        let mut rules = Vec::new();
        let mut names: HashMap<String, (String, usize)> = HashMap::new();
        let mut count = 0usize;
        for (name, text, f) in &parsed {
            c.set_file(name, text);
            for r in &f.rule {
                count += 1;
                if count > MAX_RULES {
                    // Everything after the limit is left unread: refusing the
                    // set needs one problem, not thousands.
                    c.problem(
                        r.name.span(),
                        format!(
                            "more than {MAX_RULES} rules: a rule set may have at most {MAX_RULES}"
                        ),
                    );
                    return Err(c.problems);
                }
                let line = c.line(&r.name.span());
                c.rule_span = r.name.span();
                let rule_name = r.name.get_ref().trim().to_string();
                c.rule_name = rule_name.clone();
                if rule_name.is_empty() {
                    c.problem(r.name.span(), "a rule needs a non-empty name".to_string());
                }
                match names.get(&rule_name) {
                    Some((f0, l0)) => c.problem(
                        r.name.span(),
                        format!("rule name {rule_name:?} is already used at {f0}:{l0}"),
                    ),
                    None => {
                        names.insert(rule_name.clone(), (name.clone(), line));
                    }
                }
                let cond = match &r.when {
                    Some(w) => c.cond(w),
                    None => Expr::True,
                };
                let actions = c.actions(r, &cond);
                rules.push(Rule {
                    name: rule_name,
                    file: name.clone(),
                    line,
                    cond,
                    actions,
                });
            }
        }
        check_reachable(&rules, &mut c.problems);
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        let checked = check_cache::keys(c.hirs.keys().map(|(s, cs)| (s.as_str(), *cs)));
        let index = build_index(
            &c.atoms,
            &c.atom_origins,
            c.header_names,
            std::mem::take(&mut c.hirs),
            &mut c.problems,
        );
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        let mut triggered = vec![Vec::new(); c.atoms.len()];
        let mut untriggered = vec![0u64; rules.len().div_ceil(64)];
        for (i, r) in rules.iter().enumerate() {
            match triggers(&r.cond) {
                Some(atoms) => {
                    for a in atoms {
                        if let Some(list) = triggered.get_mut(a as usize) {
                            list.push(i as u32);
                        }
                    }
                }
                None => {
                    if let Some(w) = untriggered.get_mut(i / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
            }
        }
        check_cache::save(&checked);
        Ok(RuleSet {
            rules,
            atoms: c.atoms,
            index,
            files: files.iter().map(|(n, _)| n.clone()).collect(),
            triggered,
            untriggered,
        })
    }
}

struct Compiler<'k> {
    known: &'k Known,
    problems: Vec<Problem>,
    lists: HashMap<String, List>,
    atoms: Vec<Atom>,
    /// Deduplication: identical conditions share one atom, so they are
    /// evaluated once and compare equal in reachability checks.
    atom_keys: HashMap<String, u32>,
    header_names: HashMap<String, u32>,
    file: String,
    /// Byte offsets at which the lines of the current file start.
    line_starts: Vec<usize>,
    /// The span of the current rule's name, for problems without a span of
    /// their own.
    rule_span: Range<usize>,
    rule_name: String,
    /// Per atom, where it was first written.
    atom_origins: Vec<AtomOrigin>,
    /// The compiled size of the regexes so far, counted by size class.
    regex_charge: usize,
    /// Each regex as parsed (by pattern and case sensitivity), for the
    /// field sets: a pattern is parsed once.
    hirs: HashMap<(String, bool), Hir>,
}

/// How the short form of a matcher (a bare string or array) reads on a field.
enum Short {
    Exact,
    AddressOrDomain,
    Regex,
}

impl Compiler<'_> {
    fn set_file(&mut self, name: &str, text: &str) {
        self.file = name.to_string();
        self.line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
    }

    /// The line of a byte offset, found by bisection: a file with thousands
    /// of rules is not scanned again for each one.
    fn line(&self, span: &Range<usize>) -> usize {
        self.line_starts
            .partition_point(|&s| s <= span.start)
            .max(1)
    }

    fn problem(&mut self, span: Range<usize>, reason: String) {
        let line = self.line(&span);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            reason,
        });
    }

    fn collect_lists(&mut self, f: &FileDe) {
        for (name, entries) in &f.lists {
            let line = self.line(&entries.span());
            if let Some(prev) = self.lists.get(name) {
                let reason = format!(
                    "list {name:?} is already defined at {}:{}",
                    prev.file, prev.line
                );
                self.problem(entries.span(), reason);
                continue;
            }
            let mut list = List {
                file: self.file.clone(),
                line,
                ..List::default()
            };
            for e in entries.get_ref() {
                let v = e.get_ref().trim().to_ascii_lowercase();
                if let Some(d) = v.strip_prefix('@').filter(|d| is_domain(d)) {
                    list.domains.push(d.to_string());
                } else if is_address(&v) {
                    list.addresses.push(v);
                } else {
                    self.problem(
                        e.span(),
                        format!(
                            "list {name:?}: {:?} is neither an address nor @domain",
                            crate::text::truncate(e.get_ref(), 80)
                        ),
                    );
                }
            }
            self.lists.insert(name.clone(), list);
        }
    }

    fn cond(&mut self, d: &CondDe) -> Expr {
        let mut parts = Vec::new();
        if let Some(all) = &d.all {
            parts.push(Expr::All(all.iter().map(|x| self.cond(x)).collect()));
        }
        if let Some(any) = &d.any {
            if any.is_empty() {
                self.problem(
                    self.rule_span.clone(),
                    "`any = []` can never hold".to_string(),
                );
            }
            parts.push(Expr::Any(any.iter().map(|x| self.cond(x)).collect()));
        }
        if let Some(not) = &d.not {
            parts.push(Expr::Not(Box::new(self.cond(not))));
        }
        let fields: [(&str, Field, &Option<MatchAt>); 18] = [
            ("mailbox", Field::Mailbox, &d.mailbox),
            ("from", Field::From, &d.from),
            ("to", Field::To, &d.to),
            ("cc", Field::Cc, &d.cc),
            ("reply_to", Field::ReplyTo, &d.reply_to),
            ("from_name", Field::FromName, &d.from_name),
            ("to_name", Field::ToName, &d.to_name),
            ("cc_name", Field::CcName, &d.cc_name),
            ("reply_to_name", Field::ReplyToName, &d.reply_to_name),
            ("subject", Field::Subject, &d.subject),
            ("body", Field::Body, &d.body),
            ("attachment", Field::Attachment, &d.attachment),
            ("attachment_type", Field::AttachmentType, &d.attachment_type),
            ("auto_submitted", Field::AutoSubmitted, &d.auto_submitted),
            ("precedence", Field::Precedence, &d.precedence),
            ("list_id", Field::ListId, &d.list_id),
            ("return_path", Field::ReturnPath, &d.return_path),
            (
                "x_auto_response_suppress",
                Field::XAutoResponseSuppress,
                &d.x_auto_response_suppress,
            ),
        ];
        for (name, field, m) in fields {
            if let Some(m) = m {
                parts.push(self.matcher(field, name.to_string(), m));
            }
        }
        if let Some(headers) = &d.header {
            for (h, m) in headers {
                let key = h.trim().to_ascii_lowercase();
                if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ':') {
                    let span = m.span.clone().unwrap_or(self.rule_span.clone());
                    self.problem(span, format!("{h:?} is not a header name"));
                    continue;
                }
                let next = self.header_names.len() as u32;
                let n = *self.header_names.entry(key).or_insert(next);
                parts.push(self.matcher(Field::Header(n), format!("header {h}"), m));
            }
        }
        if let Some(b) = d.has_attachment {
            parts.push(self.atom(
                Field::HasAttachment,
                "has_attachment".to_string(),
                Matcher::Bool(b),
            ));
        }
        if let Some(b) = d.auto_generated {
            parts.push(self.atom(
                Field::AutoGenerated,
                "auto_generated".to_string(),
                Matcher::Bool(b),
            ));
        }
        normalize(Expr::All(parts))
    }

    fn matcher(&mut self, field: Field, name: String, m: &MatchAt) -> Expr {
        let span = m.span.clone().unwrap_or(self.rule_span.clone());
        match &m.m {
            MatchDe::Short(p) => {
                let short = match field {
                    Field::Mailbox => Short::Exact,
                    f if f.is_address() => Short::AddressOrDomain,
                    _ => Short::Regex,
                };
                if p.0.is_empty() {
                    self.problem(span, format!("{name}: an empty array can never match"));
                    return Expr::True;
                }
                match short {
                    Short::Exact => self.exact(field, name, p, false, &span),
                    Short::Regex => self.regex(field, name, p, false, false, &span),
                    Short::AddressOrDomain => {
                        let (domains, addrs): (Vec<_>, Vec<_>) =
                            p.0.iter()
                                .cloned()
                                .partition(|(v, _)| v.trim().starts_with('@'));
                        let mut any = Vec::new();
                        if !addrs.is_empty() {
                            any.push(self.exact(
                                field,
                                name.clone(),
                                &Patterns(addrs),
                                false,
                                &span,
                            ));
                        }
                        if !domains.is_empty() {
                            let ds = domains
                                .into_iter()
                                .map(|(v, s)| (v.trim().trim_start_matches('@').to_string(), s))
                                .collect();
                            any.push(self.domain(field, name, &Patterns(ds), &span));
                        }
                        normalize(Expr::Any(any))
                    }
                }
            }
            MatchDe::Full(t) => self.full(field, name, t, &span),
        }
    }

    fn full(&mut self, field: Field, name: String, t: &MatchTable, span: &Range<usize>) -> Expr {
        let given: Vec<(&str, &Spanned<Patterns>)> = [
            ("regex", &t.regex),
            ("exact", &t.exact),
            ("contains", &t.contains),
            ("domain", &t.domain),
            ("in_list", &t.in_list),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let [(kind, sp)] = given.as_slice() else {
            self.problem(
                span.clone(),
                format!("{name}: give exactly one of regex, exact, contains, domain, in_list"),
            );
            return Expr::True;
        };
        let span = &sp.span();
        let p = sp.get_ref();
        if p.0.is_empty() {
            self.problem(
                span.clone(),
                format!("{name}: an empty array can never match"),
            );
            return Expr::True;
        }
        if matches!(*kind, "domain" | "in_list") && !field.is_address() {
            self.problem(
                span.clone(),
                format!("{name}: {kind} only applies to from, to, cc and reply_to"),
            );
            return Expr::True;
        }
        if field == Field::Mailbox && *kind != "exact" && *kind != "regex" {
            self.problem(
                span.clone(),
                format!("mailbox: {kind} does not apply to mailbox names"),
            );
            return Expr::True;
        }
        let cs = t.case_sensitive;
        match *kind {
            "regex" => self.regex(field, name, p, cs, false, span),
            "contains" => self.regex(field, name, p, cs, true, span),
            "exact" => self.exact(field, name, p, cs, span),
            "domain" => self.domain(field, name, p, span),
            _ => self.in_list(field, name, p, span),
        }
    }

    fn regex(
        &mut self,
        field: Field,
        name: String,
        p: &Patterns,
        case_sensitive: bool,
        literal: bool,
        span: &Range<usize>,
    ) -> Expr {
        let mut regexes = Vec::new();
        for (pat, s) in &p.0 {
            let source = if literal {
                regex::escape(pat)
            } else {
                pat.clone()
            };
            if self.regex_charge > TOTAL_SIZE_LIMIT {
                // Over budget already (reported once): compile nothing more.
                return Expr::True;
            }
            // Each regex is checked within the smallest size class it fits
            // and counted at that size against the budget of the whole set.
            let built = check_regex_cached(&source, case_sensitive);
            if let Ok((_, class, _)) = &built {
                self.regex_charge += class;
            }
            if self.regex_charge > TOTAL_SIZE_LIMIT {
                let rule = self.rule_name.clone();
                self.problem(
                    s.clone().unwrap_or(span.clone()),
                    format!(
                        "rule {rule:?}: {name}: regex {}: with this regex the regexes of all rules \
                         together exceed the compiled size limit of {} per rule set \
                         (each counted at the class it fits: {}); regexes after it are not compiled",
                        shown_pattern(pat),
                        mib(TOTAL_SIZE_LIMIT),
                        SIZE_CLASSES.map(kib).join(", "),
                    ),
                );
                return Expr::True;
            }
            match built {
                Ok((names, _, hir)) => {
                    self.hirs.insert((source.clone(), case_sensitive), hir);
                    regexes.push(RuleRegex {
                        source,
                        case_sensitive,
                        names,
                        compiled: std::sync::OnceLock::new(),
                    });
                }
                Err(regex::Error::CompiledTooBig(limit)) => {
                    let rule = self.rule_name.clone();
                    self.problem(
                        s.clone().unwrap_or(span.clone()),
                        format!(
                            "rule {rule:?}: {name}: regex {}: compiled, it exceeds the limit of {} per regex \
                             (narrow it: fewer or smaller repetitions, [a-z0-9] rather than \\w)",
                            shown_pattern(pat),
                            mib(limit)
                        ),
                    );
                }
                Err(e) => {
                    let first = e.to_string();
                    let reason = first
                        .lines()
                        .filter(|l| l.trim_start().starts_with("error:"))
                        .map(|l| l.trim().trim_start_matches("error:").trim())
                        .next()
                        .unwrap_or(first.as_str())
                        .to_string();
                    self.problem(
                        s.clone().unwrap_or(span.clone()),
                        format!("{name}: bad regex {pat:?}: {reason}"),
                    );
                }
            }
        }
        if regexes.len() != p.0.len() {
            return Expr::True;
        }
        let what = if literal { "contains" } else { "regex" };
        let shown: Vec<String> = p.0.iter().map(|(v, _)| format!("{v:?}")).collect();
        let cs = if case_sensitive {
            " (case-sensitive)"
        } else {
            ""
        };
        let description = format!("{what} {}{cs}", shown.join(" | "));
        self.atom(
            field,
            name,
            Matcher::Regex {
                regexes,
                description,
            },
        )
    }

    fn exact(
        &mut self,
        field: Field,
        name: String,
        p: &Patterns,
        cs: bool,
        span: &Range<usize>,
    ) -> Expr {
        let mut values = Vec::new();
        for (v, s) in &p.0 {
            let v = v.trim();
            if field == Field::Mailbox
                && let Some(known) = &self.known.mailboxes
                && !known.iter().any(|k| k.eq_ignore_ascii_case(v))
            {
                self.problem(
                    s.clone().unwrap_or(span.clone()),
                    format!("unknown mailbox {v:?}"),
                );
            }
            if field.is_address() && !is_address(&v.to_ascii_lowercase()) {
                self.problem(
                    s.clone().unwrap_or(span.clone()),
                    format!(
                        "{name}: {:?} is not an address (write \"@domain\" for a domain)",
                        crate::text::truncate(v, 80)
                    ),
                );
            }
            values.push(if cs { v.to_string() } else { v.to_lowercase() });
        }
        self.atom(
            field,
            name,
            Matcher::Exact {
                values,
                case_sensitive: cs,
            },
        )
    }

    fn domain(&mut self, field: Field, name: String, p: &Patterns, span: &Range<usize>) -> Expr {
        let mut domains = Vec::new();
        for (v, s) in &p.0 {
            let d = v.trim().trim_start_matches('@').to_ascii_lowercase();
            if !is_domain(&d) {
                self.problem(
                    s.clone().unwrap_or(span.clone()),
                    format!("{name}: {v:?} is not a domain"),
                );
            }
            domains.push(d);
        }
        self.atom(field, name, Matcher::Domain(domains))
    }

    fn in_list(&mut self, field: Field, name: String, p: &Patterns, span: &Range<usize>) -> Expr {
        let (mut addresses, mut domains, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (v, s) in &p.0 {
            match self.lists.get(v.trim()) {
                Some(l) => {
                    addresses.extend(l.addresses.iter().cloned());
                    domains.extend(l.domains.iter().cloned());
                    names.push(v.trim().to_string());
                }
                None => self.problem(
                    s.clone().unwrap_or(span.clone()),
                    format!("{name}: unknown list {v:?}"),
                ),
            }
        }
        self.atom(
            field,
            name,
            Matcher::InList {
                names,
                addresses,
                domains,
            },
        )
    }

    /// Adds an atom, or finds the identical one already compiled.
    fn atom(&mut self, field: Field, field_name: String, matcher: Matcher) -> Expr {
        let key = match &matcher {
            Matcher::Regex { description, .. } => format!("{field:?}|{description}"),
            Matcher::Exact {
                values,
                case_sensitive,
            } => {
                format!("{field:?}|exact|{case_sensitive}|{}", values.join("\u{0}"))
            }
            Matcher::Domain(d) => format!("{field:?}|domain|{}", d.join("\u{0}")),
            Matcher::InList { names, .. } => format!("{field:?}|in_list|{}", names.join("\u{0}")),
            Matcher::Bool(b) => format!("{field:?}|bool|{b}"),
        };
        if let Some(&id) = self.atom_keys.get(&key) {
            return Expr::Atom(id);
        }
        let id = self.atoms.len() as u32;
        self.atoms.push(Atom {
            field,
            field_name,
            matcher,
        });
        self.atom_origins.push(AtomOrigin {
            file: self.file.clone(),
            line: self.line(&self.rule_span),
            rule: self.rule_name.clone(),
        });
        self.atom_keys.insert(key, id);
        Expr::Atom(id)
    }

    fn actions(&mut self, r: &RuleDe, cond: &Expr) -> Actions {
        let mut a = Actions {
            stop: r.stop,
            override_: r.override_,
            suppress_ack: r.suppress_ack,
            recovery: r.recovery.as_ref().map(|v| *v.get_ref()),
            ..Actions::default()
        };
        if let Some(q) = &r.queue {
            let name = q.get_ref().trim();
            if let Some(known) = &self.known.queues
                && !known.contains(name)
            {
                self.problem(q.span(), format!("unknown queue {name:?}"));
            }
            a.queue = Some(name.to_string());
        }
        a.kind = self.parse_named::<Kind>(&r.kind);
        a.urgency = self.parse_named::<Urgency>(&r.urgency);
        a.impact = self.parse_named::<Impact>(&r.impact);
        for rcpt in &r.recipients {
            let v = rcpt.get_ref().trim();
            if v.contains('@') {
                let v = v.to_ascii_lowercase();
                if is_address(&v) {
                    push_unique(&mut a.recipients, v);
                } else {
                    let why = crate::parse::address_problem(&v).unwrap_or_default();
                    self.problem(
                        rcpt.span(),
                        format!(
                            "recipient {:?} is not an address: it {why}",
                            crate::text::truncate(&v, 80)
                        ),
                    );
                }
            } else if let Some(l) = self.lists.get(v) {
                for addr in l.addresses.clone() {
                    push_unique(&mut a.recipients, addr);
                }
            } else {
                self.problem(rcpt.span(), format!("recipients: unknown list {v:?}"));
            }
        }
        for t in &r.tags {
            push_unique(&mut a.tags, t.trim().to_string());
        }
        if let Some(k) = &r.alert_key {
            match parse_template(k.get_ref()) {
                Ok(t) => {
                    let captures = self.capture_names(cond);
                    for p in &t.parts {
                        if let Part::Capture(n) = p
                            && !captures.contains(n)
                        {
                            self.problem(
                                k.span(),
                                format!(
                                    "alert_key uses {{{n}}}, but no regex of this rule captures a group named {n:?} (built-ins: mailbox, from, from_domain, subject)"
                                ),
                            );
                        }
                    }
                    a.alert_key = Some(t);
                }
                Err(reason) => self.problem(k.span(), format!("alert_key: {reason}")),
            }
        }
        // A recovery resolves the open ticket of its alert key: the rule that
        // says so must give the key itself, so the two cannot come apart.
        if let Some(v) = &r.recovery
            && *v.get_ref()
            && r.alert_key.is_none()
        {
            self.problem(
                v.span(),
                "recovery = true needs an alert_key in the same rule (a recovery resolves the open ticket of its alert key)".to_string(),
            );
        }
        if a.queue.is_none()
            && a.kind.is_none()
            && a.urgency.is_none()
            && a.impact.is_none()
            && a.recipients.is_empty()
            && a.tags.is_empty()
            && a.suppress_ack.is_none()
            && a.alert_key.is_none()
            && a.recovery.is_none()
            && !a.stop
        {
            self.problem(
                r.name.span(),
                format!("rule {:?} has no action", r.name.get_ref()),
            );
        }
        a
    }

    fn parse_named<T: std::str::FromStr<Err = String>>(
        &mut self,
        v: &Option<Spanned<String>>,
    ) -> Option<T> {
        let v = v.as_ref()?;
        match v.get_ref().parse::<T>() {
            Ok(x) => Some(x),
            Err(reason) => {
                self.problem(v.span(), reason);
                None
            }
        }
    }

    /// Named groups of every regex in a condition.
    fn capture_names(&self, e: &Expr) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![e];
        while let Some(e) = stack.pop() {
            match e {
                Expr::True => {}
                Expr::Atom(a) => {
                    if let Some(Atom {
                        matcher: Matcher::Regex { regexes, .. },
                        ..
                    }) = self.atoms.get(*a as usize)
                    {
                        for r in regexes {
                            out.extend(r.capture_names().map(str::to_string));
                        }
                    }
                }
                Expr::All(v) | Expr::Any(v) => stack.extend(v),
                Expr::Not(x) => stack.push(x),
            }
        }
        out
    }
}

/// Flattens nested `all`/`any`, sorts and deduplicates their members, and
/// drops `true` from conjunctions, so that equal conditions compare equal.
fn normalize(e: Expr) -> Expr {
    match e {
        Expr::All(v) => {
            let mut out = Vec::new();
            for x in v.into_iter().map(normalize) {
                match x {
                    Expr::True => {}
                    Expr::All(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            out.sort();
            out.dedup();
            match out.len() {
                0 => Expr::True,
                1 => out.pop().unwrap_or(Expr::True),
                _ => Expr::All(out),
            }
        }
        Expr::Any(v) => {
            let mut out = Vec::new();
            for x in v.into_iter().map(normalize) {
                match x {
                    Expr::Any(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            out.sort();
            out.dedup();
            if out.contains(&Expr::True) {
                return Expr::True;
            }
            match out.len() {
                1 => out.pop().unwrap_or(Expr::True),
                _ => Expr::Any(out),
            }
        }
        Expr::Not(x) => Expr::Not(Box::new(normalize(*x))),
        other => other,
    }
}

/// Atoms of which at least one must hold for the condition to hold, or `None`
/// when there is no such set (a `not`, or no condition at all). A conjunction
/// uses its member with the fewest triggers; a disjunction needs triggers for
/// every member.
fn triggers(e: &Expr) -> Option<Vec<u32>> {
    match e {
        Expr::True | Expr::Not(_) => None,
        Expr::Atom(a) => Some(vec![*a]),
        Expr::All(v) => v.iter().filter_map(triggers).min_by_key(Vec::len),
        Expr::Any(v) => {
            let mut out = Vec::new();
            for x in v {
                out.extend(triggers(x)?);
            }
            out.sort_unstable();
            out.dedup();
            Some(out)
        }
    }
}

/// The members of a condition read as a conjunction.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::True => Vec::new(),
        Expr::All(v) => v.iter().collect(),
        other => vec![other],
    }
}

/// A rule can never match when an earlier rule with `stop = true` matches
/// whenever it does: the earlier rule's conditions are a subset of its own
/// (an earlier unconditional stop rule, or identical conditions, are the
/// common cases).
fn check_reachable(rules: &[Rule], problems: &mut Vec<Problem>) {
    let mut stoppers: Vec<(&Rule, Vec<&Expr>)> = Vec::new();
    for r in rules {
        let mine = conjuncts(&r.cond);
        if let Some((s, _)) = stoppers
            .iter()
            .find(|(_, theirs)| theirs.iter().all(|c| mine.contains(c)))
        {
            let why = if s.cond == Expr::True {
                "matches every message"
            } else if s.cond == r.cond {
                "has the same conditions"
            } else {
                "matches whenever this one does"
            };
            problems.push(Problem {
                file: r.file.clone(),
                line: r.line,
                reason: format!(
                    "rule {:?} is unreachable: rule {:?} ({}:{}) {why} and stops",
                    r.name, s.name, s.file, s.line
                ),
            });
        }
        if r.actions.stop {
            stoppers.push((r, mine));
        }
    }
}

fn build_index(
    atoms: &[Atom],
    origins: &[AtomOrigin],
    header_names: HashMap<String, u32>,
    mut hirs: HashMap<(String, bool), Hir>,
    problems: &mut Vec<Problem>,
) -> Index {
    let slots = FIXED_SLOTS + header_names.len();
    let mut fields: Vec<FieldIndex> = (0..slots).map(|_| FieldIndex::default()).collect();
    let mut patterns: Vec<Vec<Hir>> = vec![Vec::new(); slots];
    let mut bools = Vec::new();
    for (id, a) in atoms.iter().enumerate() {
        let id = id as u32;
        let slot = a.field.slot();
        let Some(fi) = fields.get_mut(slot) else {
            continue;
        };
        match &a.matcher {
            Matcher::Regex { regexes, .. } => {
                for r in regexes {
                    // Parsed when checked; an atom shared by several rules
                    // is one atom, so each is taken once.
                    let key = (r.as_str().to_string(), r.case_sensitive);
                    let hir = match hirs.remove(&key) {
                        Some(h) => h,
                        None => match syntax::parse_with(
                            r.as_str(),
                            &syntax::Config::new().case_insensitive(!r.case_sensitive),
                        ) {
                            Ok(h) => h,
                            Err(_) => continue,
                        },
                    };
                    patterns[slot].push(hir);
                    fi.set_atoms.push(id);
                }
            }
            Matcher::Exact {
                values,
                case_sensitive,
            } => {
                let map = if *case_sensitive {
                    &mut fi.exact_cs
                } else {
                    &mut fi.exact_ci
                };
                for v in values {
                    map.entry(v.clone()).or_default().push(id);
                }
            }
            Matcher::Domain(ds) => {
                for d in ds {
                    fi.domains.entry(d.clone()).or_default().push(id);
                }
            }
            Matcher::InList {
                addresses, domains, ..
            } => {
                for v in addresses {
                    fi.exact_ci.entry(v.clone()).or_default().push(id);
                }
                for d in domains {
                    fi.domains.entry(d.clone()).or_default().push(id);
                }
            }
            Matcher::Bool(b) => bools.push((id, a.field, *b)),
        }
    }
    let mut max_set = 0;
    for (slot, pats) in patterns.into_iter().enumerate() {
        if pats.is_empty() {
            continue;
        }
        match build_set(&pats) {
            Ok(set) => {
                max_set = max_set.max(set.pattern_len());
                fields[slot].set = Some(set);
            }
            Err(e) => {
                let field = fields[slot]
                    .set_atoms
                    .first()
                    .and_then(|&id| atoms.get(id as usize))
                    .map(|a| a.field_name.clone())
                    .unwrap_or_default();
                problems.push(set_problem(
                    &field,
                    &pats,
                    &fields[slot].set_atoms,
                    origins,
                    &e,
                ));
            }
        }
    }
    let active = all_fixed_fields()
        .into_iter()
        .filter(|f| fields.get(f.slot()).is_some_and(|fi| !fi.is_empty()))
        .collect();
    Index {
        fields,
        active,
        header_names,
        bools,
        max_set,
    }
}

/// [`check_regex`], or what it found for the same pattern in an earlier
/// process ([`check_cache`], when the command line turned it on): then the
/// pattern is only parsed.
fn check_regex_cached(
    source: &str,
    case_sensitive: bool,
) -> Result<(Vec<String>, usize, Hir), regex::Error> {
    if let Some(c) = check_cache::lookup(source, case_sensitive, &SIZE_CLASSES) {
        let hir = syntax::parse_with(
            source,
            &syntax::Config::new().case_insensitive(!case_sensitive),
        )
        .map_err(|e| regex::Error::Syntax(e.to_string()))?;
        return Ok((c.names, c.class, hir));
    }
    let checked = check_regex(source, case_sensitive)?;
    check_cache::record(
        source,
        case_sensitive,
        check_cache::Checked {
            names: checked.0.clone(),
            class: checked.1,
        },
    );
    Ok(checked)
}

/// Checks one rule regex as `regex::RegexBuilder` would build it
/// (case-insensitive unless `case_sensitive`, [`RULE_SIZE_LIMIT`]), without
/// building the matcher: the pattern is parsed once, and its forward and
/// reverse NFAs (the two a `Regex` builds, each under the size limit) are
/// compiled in each size class, smallest first, until they fit. Gives its
/// named groups, the class it fits and the parsed pattern, or the error
/// `regex` would give:
/// `Syntax` with the parser's words, `CompiledTooBig` with the limit.
fn check_regex(
    source: &str,
    case_sensitive: bool,
) -> Result<(Vec<String>, usize, Hir), regex::Error> {
    let hir = syntax::parse_with(
        source,
        &syntax::Config::new().case_insensitive(!case_sensitive),
    )
    .map_err(|e| regex::Error::Syntax(e.to_string()))?;
    let mut too_big = regex::Error::CompiledTooBig(RULE_SIZE_LIMIT);
    for class in SIZE_CLASSES {
        let config = thompson::Config::new()
            .utf8(true)
            .nfa_size_limit(Some(class))
            .shrink(false);
        let forward = thompson::Compiler::new()
            .configure(config.clone().which_captures(WhichCaptures::All))
            .build_from_hir(&hir);
        let reverse = match &forward {
            Ok(_) => thompson::Compiler::new()
                .configure(config.which_captures(WhichCaptures::None).reverse(true))
                .build_from_hir(&hir)
                .map(|_| ()),
            Err(_) => Ok(()),
        };
        let failed = match (&forward, &reverse) {
            (Err(e), _) | (Ok(_), Err(e)) => Some(e),
            (Ok(_), Ok(())) => None,
        };
        if let Some(e) = failed {
            match e.size_limit() {
                Some(limit) => {
                    too_big = regex::Error::CompiledTooBig(limit);
                    continue;
                }
                None => return Err(regex::Error::Syntax(e.to_string())),
            }
        }
        if let Ok(nfa) = forward {
            let names = nfa
                .group_info()
                .pattern_names(regex_automata::PatternID::ZERO)
                .flatten()
                .map(str::to_string)
                .collect();
            return Ok((names, class, hir));
        }
    }
    Err(too_big)
}

/// One field's set, configured as `regex::RegexSetBuilder` configures one
/// (every match, no captures), from the patterns parsed at load.
fn build_set(hirs: &[Hir]) -> Result<meta::Regex, Box<meta::BuildError>> {
    let config = meta::Config::new()
        .nfa_size_limit(Some(SET_SIZE_LIMIT))
        .hybrid_cache_capacity(SET_DFA_LIMIT)
        .match_kind(regex_automata::MatchKind::All)
        .utf8_empty(true)
        .which_captures(WhichCaptures::None);
    meta::Builder::new()
        .configure(config)
        .build_many_from_hir(hirs)
        .map_err(Box::new)
}

/// Why one field's patterns cannot be compiled together, at the rule that
/// makes them too big: the longest prefix of the field's patterns that still
/// compiles is found by bisection (each attempt stops at the size limit).
fn set_problem(
    field: &str,
    sources: &[Hir],
    set_atoms: &[u32],
    origins: &[AtomOrigin],
    e: &meta::BuildError,
) -> Problem {
    let at = |i: usize| {
        set_atoms
            .get(i)
            .and_then(|&id| origins.get(id as usize))
            .cloned()
            .unwrap_or(AtomOrigin {
                file: "<rules>".to_string(),
                line: 0,
                rule: String::new(),
            })
    };
    match e.size_limit() {
        Some(limit) => {
            // The set of the first `ok` patterns compiles, with `bad` it does not.
            let (mut ok, mut bad) = (0, sources.len());
            while bad - ok > 1 {
                let mid = ok + (bad - ok) / 2;
                if build_set(&sources[..mid]).is_ok() {
                    ok = mid;
                } else {
                    bad = mid;
                }
            }
            let o = at(bad - 1);
            Problem {
                file: o.file,
                line: o.line,
                reason: format!(
                    "rule {:?}: with this rule the {field} patterns of all rules together ({bad} of {}) \
                     exceed the compiled size limit of {} per field; narrow or remove {} pattern",
                    o.rule,
                    sources.len(),
                    mib(limit),
                    if bad - 1 == 0 {
                        "this"
                    } else {
                        "this or an earlier"
                    },
                ),
            }
        }
        None => {
            let o = at(0);
            Problem {
                file: o.file,
                line: o.line,
                reason: format!("the {field} patterns cannot be compiled together: {e}"),
            }
        }
    }
}

/// A pattern as shown in a problem: quoted, and cut when long.
fn shown_pattern(p: &str) -> String {
    const MAX: usize = 80;
    if p.chars().count() <= MAX {
        format!("{p:?}")
    } else {
        let cut: String = p.chars().take(MAX).collect();
        format!("{cut:?}... ({} bytes)", p.len())
    }
}

fn mib(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

fn kib(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        mib(bytes)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

fn too_big(len: u64) -> String {
    format!(
        "the file is {len} bytes; a rule file may have at most {} bytes",
        MAX_RULE_FILE_BYTES
    )
}

/// Reads a rule file, refusing one over [`MAX_RULE_FILE_BYTES`] without
/// reading more than that.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_RULE_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_RULE_FILE_BYTES {
        let len = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(buf.len() as u64);
        return Err(too_big(len));
    }
    String::from_utf8(buf).map_err(|e| format!("cannot read: not UTF-8: {e}"))
}

fn all_fixed_fields() -> [Field; 18] {
    [
        Field::Mailbox,
        Field::From,
        Field::To,
        Field::Cc,
        Field::ReplyTo,
        Field::FromName,
        Field::ToName,
        Field::CcName,
        Field::ReplyToName,
        Field::Subject,
        Field::Body,
        Field::Attachment,
        Field::AttachmentType,
        Field::AutoSubmitted,
        Field::Precedence,
        Field::ListId,
        Field::ReturnPath,
        Field::XAutoResponseSuppress,
    ]
}

/// Parses `text {name} text`; `{{` and `}}` are literal braces.
fn parse_template(s: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                        _ => return Err(format!("{s:?}: a hole must look like {{name}}")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("{s:?}: empty hole {{}}"));
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(match name.as_str() {
                    "mailbox" => Part::Builtin(Builtin::Mailbox),
                    "from" => Part::Builtin(Builtin::From),
                    "from_domain" => Part::Builtin(Builtin::FromDomain),
                    "subject" => Part::Builtin(Builtin::Subject),
                    _ => Part::Capture(name),
                });
            }
            '}' => return Err(format!("{s:?}: unmatched }} (write }}}} for a brace)")),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(Template { parts })
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !s.is_empty() && !v.contains(&s) {
        v.push(s);
    }
}

/// A plausible domain: dot-separated labels of letters, digits and hyphens.
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// An address (`local@domain`), as `parse::address_problem` judges one.
fn is_address(a: &str) -> bool {
    crate::parse::address_problem(a).is_none()
}
