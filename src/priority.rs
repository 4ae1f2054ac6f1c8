//! Priority: urgency x impact, and the response target that follows from it.
//!
//! Pure. Rules may set urgency and impact; what they leave unset comes from
//! per-queue and per-kind defaults ([`PriorityConfig::defaults`]). The matrix
//! ([`Matrix`]) turns the pair into a [`Priority`], and [`TargetsConfig`] turns
//! the priority (or a desk- or kind-specific override) into a response target
//! counted in business time. Every default below is the one in DOMAIN.md; the
//! structs deserialize from `[priority]` and `[targets]` tables of triaged.toml.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a closed set of lower-case names: serde, `Display`, `FromStr`.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, from the most to the least pressing.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lower-case name used in configuration and rules.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            /// Parses a name, ignoring case; the error lists the valid names.
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("unknown {} {:?} (expected one of: {})", $what, s, names.join(", "))
                    })
            }
        }
    };
}

named_enum!(
    /// What sort of work a ticket is (DOMAIN.md, "Kinds of ticket").
    Kind, "kind" {
        /// Urgent response: something is down or unresponsive.
        Incident = "incident",
        /// Something does the wrong thing in some case but is not down.
        Bug = "bug",
        /// A planned change to production.
        Deploy = "deploy",
        /// Routine operational work; the kind when nothing says otherwise.
        Service = "service",
        /// An automated message from a monitoring system.
        Alert = "alert",
    }
);

impl Kind {
    /// The kind when neither a rule nor the queue says otherwise: routine work.
    pub const DEFAULT: Kind = Kind::Service;

    /// Whether tickets of this kind are urgent responses: their recipient list
    /// starts with the initiator and is told at once (the urgent notification).
    pub fn is_urgent(self) -> bool {
        matches!(self, Kind::Incident)
    }
}

named_enum!(
    /// How soon someone must act.
    Urgency, "urgency" {
        /// A VIP is affected; act now.
        Critical = "critical",
        /// Respond rapidly.
        High = "high",
        /// Can wait a little without loss of productivity.
        Medium = "medium",
        /// No deadline.
        Low = "low",
    }
);

named_enum!(
    /// How far the problem reaches.
    Impact, "impact" {
        /// Campus-wide or beyond, core business stopped, visible outside.
        Extensive = "extensive",
        /// A school or college.
        Significant = "significant",
        /// A department or unit.
        Moderate = "moderate",
        /// One or a few users.
        Minor = "minor",
    }
);

named_enum!(
    /// Urgency x impact, through the matrix.
    Priority, "priority" {
        Critical = "critical",
        High = "high",
        Medium = "medium",
        Low = "low",
    }
);

/// One urgency's row of the matrix: the priority for each impact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRow {
    pub extensive: Priority,
    pub significant: Priority,
    pub moderate: Priority,
    pub minor: Priority,
}

impl MatrixRow {
    const fn new(e: Priority, s: Priority, m: Priority, n: Priority) -> MatrixRow {
        MatrixRow {
            extensive: e,
            significant: s,
            moderate: m,
            minor: n,
        }
    }

    fn get(&self, impact: Impact) -> Priority {
        match impact {
            Impact::Extensive => self.extensive,
            Impact::Significant => self.significant,
            Impact::Moderate => self.moderate,
            Impact::Minor => self.minor,
        }
    }
}

/// The urgency x impact matrix. A row left out keeps its DOMAIN.md default; a
/// row given must name all four impacts.
///
/// ```toml
/// [priority.matrix]
/// high = { extensive = "critical", significant = "high", moderate = "high", minor = "medium" }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    #[serde(default = "row_critical")]
    pub critical: MatrixRow,
    #[serde(default = "row_high")]
    pub high: MatrixRow,
    #[serde(default = "row_medium")]
    pub medium: MatrixRow,
    #[serde(default = "row_low")]
    pub low: MatrixRow,
}

fn row_critical() -> MatrixRow {
    use Priority::*;
    MatrixRow::new(Critical, Critical, High, High)
}
fn row_high() -> MatrixRow {
    use Priority::*;
    MatrixRow::new(Critical, High, High, Medium)
}
fn row_medium() -> MatrixRow {
    use Priority::*;
    MatrixRow::new(High, Medium, Medium, Low)
}
fn row_low() -> MatrixRow {
    use Priority::*;
    MatrixRow::new(Medium, Low, Low, Low)
}

impl Default for Matrix {
    /// The DOMAIN.md matrix.
    fn default() -> Self {
        Matrix {
            critical: row_critical(),
            high: row_high(),
            medium: row_medium(),
            low: row_low(),
        }
    }
}

impl Matrix {
    pub fn priority(&self, urgency: Urgency, impact: Impact) -> Priority {
        let row = match urgency {
            Urgency::Critical => &self.critical,
            Urgency::High => &self.high,
            Urgency::Medium => &self.medium,
            Urgency::Low => &self.low,
        };
        row.get(impact)
    }
}

/// A default urgency and/or impact for tickets of a queue and/or kind, used
/// when no rule set them. A selector left out matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultFor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
}

impl DefaultFor {
    fn selects(&self, queue: &str, kind: Kind) -> bool {
        self.queue.as_deref().is_none_or(|q| q == queue) && self.kind.is_none_or(|k| k == kind)
    }

    fn describe(&self) -> String {
        match (&self.queue, self.kind) {
            (Some(q), Some(k)) => format!("queue {q}, kind {k}"),
            (Some(q), None) => format!("queue {q}"),
            (None, Some(k)) => format!("kind {k}"),
            (None, None) => "every ticket".to_string(),
        }
    }
}

/// The `[priority]` table: fallback urgency and impact, defaults per queue and
/// kind (first entry that selects the ticket and sets the value wins), and the
/// matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityConfig {
    /// Urgency when neither a rule nor a default sets one.
    #[serde(default = "default_urgency")]
    pub urgency: Urgency,
    /// Impact when neither a rule nor a default sets one.
    #[serde(default = "default_impact")]
    pub impact: Impact,
    #[serde(default = "default_defaults")]
    pub defaults: Vec<DefaultFor>,
    #[serde(default)]
    pub matrix: Matrix,
}

fn default_urgency() -> Urgency {
    Urgency::Medium
}
fn default_impact() -> Impact {
    Impact::Minor
}

/// Incidents and monitoring alerts are urgent by nature; non-production work
/// orders in Admin can wait.
fn default_defaults() -> Vec<DefaultFor> {
    vec![
        DefaultFor {
            queue: None,
            kind: Some(Kind::Incident),
            urgency: Some(Urgency::High),
            impact: None,
        },
        DefaultFor {
            queue: None,
            kind: Some(Kind::Alert),
            urgency: Some(Urgency::High),
            impact: None,
        },
        DefaultFor {
            queue: Some("Admin".to_string()),
            kind: None,
            urgency: Some(Urgency::Low),
            impact: None,
        },
    ]
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            urgency: default_urgency(),
            impact: default_impact(),
            defaults: default_defaults(),
            matrix: Matrix::default(),
        }
    }
}

/// Urgency, impact and priority of one ticket, with where each came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub urgency: Urgency,
    pub impact: Impact,
    pub priority: Priority,
    /// One line per value, e.g. `urgency high: default for kind incident`.
    pub explanation: Vec<String>,
}

impl PriorityConfig {
    /// Completes what the rules decided (`urgency`, `impact`, `None` when unset)
    /// with the defaults, and looks the pair up in the matrix.
    pub fn resolve(
        &self,
        queue: &str,
        kind: Kind,
        urgency: Option<Urgency>,
        impact: Option<Impact>,
    ) -> Resolved {
        let mut explanation = Vec::new();
        let urgency = match urgency {
            Some(u) => {
                explanation.push(format!("urgency {u}: set by rule"));
                u
            }
            None => {
                let found = self
                    .defaults
                    .iter()
                    .find_map(|d| d.urgency.filter(|_| d.selects(queue, kind)).map(|u| (u, d)));
                let (u, why) = match found {
                    Some((u, d)) => (u, format!("default for {}", d.describe())),
                    None => (self.urgency, "default".to_string()),
                };
                explanation.push(format!("urgency {u}: {why}"));
                u
            }
        };
        let impact = match impact {
            Some(i) => {
                explanation.push(format!("impact {i}: set by rule"));
                i
            }
            None => {
                let found = self
                    .defaults
                    .iter()
                    .find_map(|d| d.impact.filter(|_| d.selects(queue, kind)).map(|i| (i, d)));
                let (i, why) = match found {
                    Some((i, d)) => (i, format!("default for {}", d.describe())),
                    None => (self.impact, "default".to_string()),
                };
                explanation.push(format!("impact {i}: {why}"));
                i
            }
        };
        let priority = self.matrix.priority(urgency, impact);
        explanation.push(format!(
            "priority {priority}: urgency {urgency} x impact {impact}"
        ));
        Resolved {
            urgency,
            impact,
            priority,
            explanation,
        }
    }

    /// Queue names the defaults mention that `queues` does not know, as reasons.
    pub fn check(&self, queues: &[&str]) -> Vec<String> {
        self.defaults
            .iter()
            .filter_map(|d| d.queue.as_deref())
            .filter(|q| !queues.contains(q))
            .map(|q| format!("priority.defaults: unknown queue {q:?}"))
            .collect()
    }
}

/// A length of business time, written like `"2h"`, `"30m"`, `"1h 30m"` or
/// `"PT2H"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusinessTime(pub Duration);

impl BusinessTime {
    pub const fn hours(h: u64) -> BusinessTime {
        BusinessTime(Duration::from_secs(h * 3600))
    }
    pub const fn minutes(m: u64) -> BusinessTime {
        BusinessTime(Duration::from_secs(m * 60))
    }
}

impl fmt::Display for BusinessTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::SignedDuration::try_from(self.0) {
            Ok(d) => write!(f, "{d:#}"),
            Err(_) => write!(f, "{}s", self.0.as_secs()),
        }
    }
}

impl FromStr for BusinessTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let d: jiff::SignedDuration = s
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"2h\", \"30m\" or \"1h 30m\""))?;
        Duration::try_from(d)
            .map(BusinessTime)
            .map_err(|_| format!("{s:?} must not be negative"))
    }
}

impl Serialize for BusinessTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for BusinessTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A response target for tickets of a desk, queue, kind and/or priority; a
/// selector left out matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    pub target: BusinessTime,
}

impl TargetOverride {
    pub fn selects(&self, desk: &str, queue: &str, kind: Kind, priority: Priority) -> bool {
        self.desk.as_deref().is_none_or(|d| d == desk)
            && self.queue.as_deref().is_none_or(|q| q == queue)
            && self.kind.is_none_or(|k| k == kind)
            && self.priority.is_none_or(|p| p == priority)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.desk {
            parts.push(format!("desk {d}"));
        }
        if let Some(q) = &self.queue {
            parts.push(format!("queue {q}"));
        }
        if let Some(k) = self.kind {
            parts.push(format!("kind {k}"));
        }
        if let Some(p) = self.priority {
            parts.push(format!("priority {p}"));
        }
        if parts.is_empty() {
            "every ticket".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// The `[targets]` table: initial-response targets in business time, per
/// priority, with overrides tried in order before them.
///
/// ```toml
/// [targets]
/// critical = "2h"
/// high = "4h"
/// medium = "8h"
/// low = "16h"
/// [[targets.overrides]]
/// desk = "database"
/// kind = "incident"
/// target = "30m"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsConfig {
    #[serde(default = "target_critical")]
    pub critical: BusinessTime,
    #[serde(default = "target_high")]
    pub high: BusinessTime,
    #[serde(default = "target_medium")]
    pub medium: BusinessTime,
    #[serde(default = "target_low")]
    pub low: BusinessTime,
    #[serde(default = "default_overrides")]
    pub overrides: Vec<TargetOverride>,
}

fn target_critical() -> BusinessTime {
    BusinessTime::hours(2)
}
fn target_high() -> BusinessTime {
    BusinessTime::hours(4)
}
fn target_medium() -> BusinessTime {
    BusinessTime::hours(8)
}
fn target_low() -> BusinessTime {
    BusinessTime::hours(16)
}

/// The database desk answers incidents within 30 minutes and service requests
/// within one business day (09:00 of business time on the default calendar).
fn default_overrides() -> Vec<TargetOverride> {
    vec![
        TargetOverride {
            desk: Some("database".to_string()),
            queue: None,
            kind: Some(Kind::Incident),
            priority: None,
            target: BusinessTime::minutes(30),
        },
        TargetOverride {
            desk: Some("database".to_string()),
            queue: None,
            kind: Some(Kind::Service),
            priority: None,
            target: BusinessTime::hours(9),
        },
    ]
}

impl Default for TargetsConfig {
    fn default() -> Self {
        TargetsConfig {
            critical: target_critical(),
            high: target_high(),
            medium: target_medium(),
            low: target_low(),
            overrides: default_overrides(),
        }
    }
}

impl TargetsConfig {
    /// The initial-response target of a ticket, with the reason for it.
    pub fn target(
        &self,
        desk: &str,
        queue: &str,
        kind: Kind,
        priority: Priority,
    ) -> (Duration, String) {
        if let Some(o) = self
            .overrides
            .iter()
            .find(|o| o.selects(desk, queue, kind, priority))
        {
            return (
                o.target.0,
                format!("target {}: override for {}", o.target, o.describe()),
            );
        }
        let t = match priority {
            Priority::Critical => self.critical,
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low => self.low,
        };
        (t.0, format!("target {t}: priority {priority}"))
    }

    /// Desk and queue names the overrides mention that are not known, as reasons.
    pub fn check(&self, desks: &[&str], queues: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for o in &self.overrides {
            if let Some(d) = o.desk.as_deref().filter(|d| !desks.contains(d)) {
                out.push(format!("targets.overrides: unknown desk {d:?}"));
            }
            if let Some(q) = o.queue.as_deref().filter(|q| !queues.contains(q)) {
                out.push(format!("targets.overrides: unknown queue {q:?}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_matrix() {
        // Rows urgency, columns extensive, significant, moderate, minor (DOMAIN.md).
        let table = [
            (Urgency::Critical, ["critical", "critical", "high", "high"]),
            (Urgency::High, ["critical", "high", "high", "medium"]),
            (Urgency::Medium, ["high", "medium", "medium", "low"]),
            (Urgency::Low, ["medium", "low", "low", "low"]),
        ];
        let m = Matrix::default();
        for (u, row) in table {
            for (i, want) in Impact::ALL.iter().zip(row) {
                assert_eq!(m.priority(u, *i).as_str(), want, "{u} x {i}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.to_string().parse::<Kind>(), Ok(*k));
        }
        assert_eq!("HIGH".parse::<Urgency>(), Ok(Urgency::High));
        assert_eq!(
            "huge".parse::<Impact>(),
            Err("unknown impact \"huge\" (expected one of: extensive, significant, moderate, minor)".to_string())
        );
    }

    #[test]
    fn only_incidents_are_urgent() {
        let urgent: Vec<Kind> = Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.is_urgent())
            .collect();
        assert_eq!(urgent, vec![Kind::Incident]);
        assert!(!Kind::DEFAULT.is_urgent());
        assert_eq!(Kind::DEFAULT.as_str(), "service");
    }

    fn check_resolve(
        queue: &str,
        kind: Kind,
        u: Option<Urgency>,
        i: Option<Impact>,
        want: (Urgency, Impact, Priority),
    ) {
        let r = PriorityConfig::default().resolve(queue, kind, u, i);
        assert_eq!(
            (r.urgency, r.impact, r.priority),
            want,
            "{queue} {kind} {u:?} {i:?}: {:?}",
            r.explanation
        );
    }

    #[test]
    fn resolve_with_defaults() {
        use Impact as I;
        use Priority as P;
        use Urgency as U;
        check_resolve(
            "ProductionDefect",
            Kind::Incident,
            None,
            None,
            (U::High, I::Minor, P::Medium),
        );
        check_resolve(
            "ProductionDefect",
            Kind::Incident,
            None,
            Some(I::Extensive),
            (U::High, I::Extensive, P::Critical),
        );
        check_resolve(
            "ProductionDefect",
            Kind::Alert,
            None,
            None,
            (U::High, I::Minor, P::Medium),
        );
        check_resolve(
            "Customer-Support",
            Kind::Service,
            None,
            None,
            (U::Medium, I::Minor, P::Low),
        );
        check_resolve(
            "Admin",
            Kind::Service,
            None,
            None,
            (U::Low, I::Minor, P::Low),
        );
        check_resolve(
            "Admin",
            Kind::Incident,
            None,
            None,
            (U::High, I::Minor, P::Medium),
        );
        check_resolve(
            "Customer-Support",
            Kind::Bug,
            Some(U::Critical),
            Some(I::Moderate),
            (U::Critical, I::Moderate, P::High),
        );
    }

    #[test]
    fn resolve_explains() {
        let r =
            PriorityConfig::default().resolve("Admin", Kind::Service, None, Some(Impact::Moderate));
        assert_eq!(
            r.explanation,
            vec![
                "urgency low: default for queue Admin",
                "impact moderate: set by rule",
                "priority low: urgency low x impact moderate",
            ]
        );
    }

    fn check_target(desk: &str, queue: &str, kind: Kind, p: Priority, want_secs: u64) {
        let (t, why) = TargetsConfig::default().target(desk, queue, kind, p);
        assert_eq!(t.as_secs(), want_secs, "{desk} {queue} {kind} {p}: {why}");
    }

    #[test]
    fn domain_targets() {
        check_target(
            "isda",
            "ProductionDefect",
            Kind::Incident,
            Priority::Critical,
            2 * 3600,
        );
        check_target(
            "isda",
            "ProductionDefect",
            Kind::Incident,
            Priority::High,
            4 * 3600,
        );
        check_target(
            "isda",
            "Customer-Support",
            Kind::Service,
            Priority::Medium,
            8 * 3600,
        );
        check_target(
            "hosted",
            "Hosted-Help",
            Kind::Service,
            Priority::Low,
            16 * 3600,
        );
        check_target(
            "database",
            "Database",
            Kind::Incident,
            Priority::Low,
            30 * 60,
        );
        check_target(
            "database",
            "Database",
            Kind::Service,
            Priority::Critical,
            9 * 3600,
        );
        check_target("database", "Database", Kind::Bug, Priority::High, 4 * 3600);
    }

    #[test]
    fn config_from_toml() {
        let text = r#"
            urgency = "low"
            [[defaults]]
            queue = "Database"
            impact = "moderate"
            [matrix]
            low = { extensive = "high", significant = "low", moderate = "low", minor = "low" }
        "#;
        let c: PriorityConfig = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            c.matrix.priority(Urgency::Low, Impact::Extensive),
            Priority::High
        );
        // Rows not given keep the DOMAIN.md values.
        assert_eq!(
            c.matrix.priority(Urgency::High, Impact::Minor),
            Priority::Medium
        );
        let r = c.resolve("Database", Kind::Service, None, None);
        assert_eq!((r.urgency, r.impact), (Urgency::Low, Impact::Moderate));
        assert_eq!(c.check(&["Database"]), Vec::<String>::new());
        assert_eq!(c.check(&["Other"]).len(), 1);

        let t: TargetsConfig = match toml::from_str(
            "high = \"1h 30m\"\n[[overrides]]\nqueue = \"Admin\"\ntarget = \"PT24H\"\n",
        ) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t.high, BusinessTime::minutes(90));
        assert_eq!(t.critical, BusinessTime::hours(2));
        assert_eq!(
            t.target("isda", "Admin", Kind::Service, Priority::Low)
                .0
                .as_secs(),
            24 * 3600
        );
        assert_eq!(
            t.check(&["isda"], &["Other"]),
            vec!["targets.overrides: unknown queue \"Admin\""]
        );
    }

    #[test]
    fn bad_config_is_refused() {
        for text in [
            "urgncy = \"low\"",
            "urgency = \"urgent\"",
            "[matrix]\nhigh = { extensive = \"critical\" }",
        ] {
            assert!(toml::from_str::<PriorityConfig>(text).is_err(), "{text}");
        }
        for text in [
            "critical = \"soon\"",
            "critical = \"-2h\"",
            "[[overrides]]\nkind = \"bug\"",
        ] {
            assert!(toml::from_str::<TargetsConfig>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn empty_tables_are_domain() {
        assert_eq!(
            toml::from_str::<PriorityConfig>("").ok(),
            Some(PriorityConfig::default())
        );
        assert_eq!(
            toml::from_str::<TargetsConfig>("").ok(),
            Some(TargetsConfig::default())
        );
        assert_eq!(BusinessTime::minutes(30).to_string(), "30m");
    }
}
