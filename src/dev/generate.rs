//! Synthetic rule sets for benchmarks: many plausible rules, a mix of regex,
//! contains, exact, domain and header matchers, valid against
//! [`crate::rules::Known::domain`].

use std::fmt::Write;

/// The TOML text of `n` generated rules (plus two lists), loadable with
/// `RuleSet::from_sources(&[("gen.toml".into(), text)], &Known::domain())`.
pub fn generate_rules(n: usize) -> String {
    let mut s = String::with_capacity(n * 200);
    s.push_str("[lists]\n");
    s.push_str(
        "generated-monitoring = [\"nagios@monitor.example.edu\", \"@alerts.example.edu\"]\n",
    );
    s.push_str("generated-vips = [\"president@example.edu\", \"provost@example.edu\"]\n\n");
    let queues = [
        "ProductionDefect",
        "Customer-Support",
        "Admin",
        "Database",
        "Hosted-Help",
        "ProductionDeploy",
    ];
    let mailboxes = ["isda-support", "map-support", "db-requests", "help"];
    let words = [
        "down",
        "error",
        "timeout",
        "slow",
        "failed",
        "unavailable",
        "crash",
        "refused",
    ];
    for i in 0..n {
        let q = queues[i % queues.len()];
        let m = mailboxes[i % mailboxes.len()];
        let w = words[i % words.len()];
        let _ = writeln!(s, "[[rule]]\nname = \"generated rule {i}\"");
        // Each arm is one kind of rule a desk writes; together they exercise
        // every index structure.
        let _ = match i % 6 {
            0 => writeln!(
                s,
                "when.subject.regex = '\\b(app|svc)-{i}\\b.*\\b{w}\\b'\nqueue = \"{q}\"\nkind = \"incident\""
            ),
            1 => writeln!(
                s,
                "when.from = \"user{i}@dept{}.example.edu\"\ntags = [\"customer-{i}\"]",
                i % 50
            ),
            2 => writeln!(
                s,
                "when.mailbox = \"{m}\"\nwhen.body.contains = \"order number ORD-{i}\"\nqueue = \"{q}\""
            ),
            3 => writeln!(
                s,
                "when.from.domain = \"college{i}.example.edu\"\nwhen.subject = '^\\[?ticket[- ]{i}\\]?'\nurgency = \"high\""
            ),
            4 => writeln!(
                s,
                "when.header.\"X-Service\".regex = '^service-{i}$'\nwhen.any = [{{ from.in_list = \"generated-monitoring\" }}, {{ auto_generated = true }}]\nkind = \"alert\"\nalert_key = \"svc:{{host}}\"\nwhen.body.regex = 'host (?P<host>[a-z0-9.-]+)-{i}\\b'"
            ),
            _ => writeln!(
                s,
                "when.to.exact = \"list{i}@example.edu\"\nwhen.not.subject.contains = \"[auto-{i}]\"\nimpact = \"moderate\"\nrecipients = [\"generated-vips\"]"
            ),
        };
        s.push('\n');
    }
    s
}
