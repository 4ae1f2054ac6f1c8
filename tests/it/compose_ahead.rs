//! A new ticket's mail is decided in order and rendered on the composing
//! thread while the next messages are recorded (`notify::ahead`). It must
//! change nothing: the same messages queue the same mail (kinds,
//! recipients, subjects, bytes but for Message-ID and Date) and record the
//! same history as composing in order. A mail that cannot be rendered
//! (a template that fails on one message's content) is suppressed with its
//! reason and counts for nothing in the caps of the batch's later mail, as
//! when composing in order: its transaction is done again in order.

use std::sync::Arc;

use triaged::config::{Config, DEFAULT_CONFIG};
use triaged::pipeline::{Origin, Outcome, Pipeline};
use triaged::store::Store;

use crate::harness::{PgDb, message};
use crate::lookahead::{corpus, dump, pipeline_with_caps, prepare_all};

const ISDA: &str = "isda-support@example.edu";

/// The outbox as the sender would take it, without what differs from one
/// composition to the next (Message-ID, Date, MIME boundaries).
async fn mail(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for m in store.due_outbox(i64::MAX, 10_000).await.expect("outbox") {
        let mut text = String::from_utf8_lossy(&m.raw).into_owned();
        if let Some((_, rest)) = text.split_once("boundary=\"")
            && let Some((boundary, _)) = rest.split_once('"')
        {
            text = text.replace(&boundary.to_string(), "BOUNDARY");
        }
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("Message-ID:") && !l.starts_with("Date:"))
            .collect();
        out.push(format!(
            "{:?} {} {:?}\n{}",
            m.ticket_number,
            m.kind,
            m.rcpt,
            kept.join("\n")
        ));
    }
    out
}

/// The corpus in one transaction, then again one by one: outcomes, rows
/// and mail.
async fn run(url: &str, in_order: bool) -> (Vec<Outcome>, Vec<String>, Vec<String>) {
    let mut p = pipeline_with_caps(url, 2, 3, None).await;
    if in_order {
        p = p.composing_in_order();
    }
    // And an outage: the urgent notice to the recipient list.
    let mut raws = corpus();
    raws.push(message(
        "down@x",
        "Carl <carl@x.example>",
        ISDA,
        "The portal is down",
        "The student portal is down for everyone since 9:00.",
    ));
    let mut outcomes = p
        .commit(&prepare_all(&p, &raws, "all"), None)
        .await
        .expect("commit");
    for one in prepare_all(&p, &raws, "again").chunks(1) {
        outcomes.extend(p.commit(one, None).await.expect("commit"));
    }
    let mail = mail(p.store()).await;
    p.store().close().await;
    (outcomes, dump(url).await, mail)
}

fn same(
    ahead: &(Vec<Outcome>, Vec<String>, Vec<String>),
    in_order: &(Vec<Outcome>, Vec<String>, Vec<String>),
) {
    assert_eq!(ahead.0, in_order.0, "outcomes");
    assert_eq!(ahead.1, in_order.1, "rows");
    assert_eq!(ahead.2, in_order.2, "mail");
    // Not a comparison of nothing: acknowledgements, queue and urgent
    // notifications, and mail the caps suppressed.
    for kind in [
        "acknowledgement",
        "queue_notification",
        "urgent_notification",
    ] {
        assert!(
            ahead.2.iter().any(|m| m.contains(&format!(" {kind} "))),
            "no {kind} in {:#?}",
            ahead.2
        );
    }
    assert!(
        ahead.1.iter().any(|r| r.contains("mail suppressed")),
        "{:#?}",
        ahead.1
    );
}

#[tokio::test]
async fn composing_ahead_changes_no_mail_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let ahead = run(&url("ahead.db"), false).await;
    let in_order = run(&url("in-order.db"), true).await;
    same(&ahead, &in_order);
}

#[tokio::test]
async fn composing_ahead_changes_no_mail_postgres() {
    let db = PgDb::create("ahead").await;
    let ahead = run(&db.url, false).await;
    db.drop_db().await;
    let db = PgDb::create("inorder").await;
    let in_order = run(&db.url, true).await;
    db.drop_db().await;
    same(&ahead, &in_order);
}

/// The shipped templates, with an acknowledgement that fails to render for
/// a message whose body asks for it (`range` over too many numbers is an
/// error at render time; the load check's sample messages never ask).
fn failing_templates(dir: &std::path::Path) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    std::fs::create_dir_all(dir).expect("mkdir");
    for e in std::fs::read_dir(&shipped).expect("templates") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy");
        }
    }
    let ack = dir.join("acknowledgement.txt");
    let mut text = std::fs::read_to_string(&ack).expect("read");
    text.push_str("{% if 'explode' in message.body %}{% for i in range(100000000) %}.{% endfor %}{% endif %}\n");
    std::fs::write(&ack, text).expect("write");
}

async fn failing_render(url: &str, templates: &std::path::Path, in_order: bool) -> Vec<String> {
    failing_templates(templates);
    let mut config = Config::parse(DEFAULT_CONFIG, "default").expect("default config");
    config.notify.ack_limit_per_hour = 2;
    config.paths.templates = templates.to_path_buf();
    let config = Arc::new(config);
    let store = Store::open(url, 1000).await.expect("open store");
    let notifier = triaged::notify::notifier(&config).expect("the templates pass the load check");
    let mut p = Pipeline::new(config, store)
        .expect("rules")
        .with_notifier(notifier, Arc::new(tokio::sync::Notify::new()));
    if in_order {
        p = p.composing_in_order();
    }
    let ann = "Ann <ann@x.example>";
    let raws = vec![
        message("boom@x", ann, ISDA, "First", "Please explode."),
        message("two@x", ann, ISDA, "Second", "Fine."),
        message("three@x", ann, ISDA, "Third", "Fine."),
        message("four@x", ann, ISDA, "Fourth", "Fine."),
    ];
    let prepared: Vec<_> = raws
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let origin = Origin::File {
                path: format!("{i}.eml"),
            };
            p.prepare("isda-support", origin, raw)
        })
        .collect();
    let outcomes = p.commit(&prepared, None).await.expect("commit");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Created(_))),
        "{outcomes:?}"
    );
    // And the next batch, composed in order for a while after the failure,
    // still works.
    let next = message("five@x", "Bob <bob@x.example>", ISDA, "Fifth", "Fine.");
    let next = p.prepare(
        "isda-support",
        Origin::File {
            path: "5.eml".into(),
        },
        next,
    );
    p.commit(&[next], None).await.expect("commit");
    let suppressed = p
        .store()
        .ticket(1000)
        .await
        .expect("ticket")
        .expect("the first ticket")
        .events
        .into_iter()
        .filter(|e| e.kind == "mail suppressed")
        .map(|e| e.detail.to_string())
        .collect::<Vec<_>>();
    p.store().close().await;
    let mut rows = dump(url).await;
    rows.push(format!("first ticket's suppressed mail: {suppressed:?}"));
    rows
}

async fn render_failure(url: impl Fn(&str) -> String, templates: &std::path::Path) {
    let ahead = failing_render(&url("ahead"), templates, false).await;
    let in_order = failing_render(&url("in-order"), templates, true).await;
    assert_eq!(ahead, in_order);
    let acks: Vec<&String> = ahead
        .iter()
        .filter(|r| r.starts_with("mail: ") && r.contains(" acknowledgement "))
        .collect();
    // The first ticket's acknowledgement failed and counts for nothing:
    // the second and third are acknowledged (the cap is 2), the fourth is
    // not, and Bob is.
    assert_eq!(
        acks.iter()
            .map(|r| r.split(' ').nth(1).unwrap_or(""))
            .collect::<Vec<_>>(),
        ["1001", "1002", "1004"],
        "{ahead:#?}"
    );
    let history = ahead.last().expect("history");
    assert!(
        history.contains("acknowledgement") && history.contains("template"),
        "{history}"
    );
}

#[tokio::test]
async fn a_mail_that_cannot_be_rendered_is_suppressed_and_not_counted_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_path_buf();
    render_failure(
        |name| format!("sqlite://{}", base.join(format!("{name}.db")).display()),
        &dir.path().join("templates"),
    )
    .await;
}

#[tokio::test]
async fn a_mail_that_cannot_be_rendered_is_suppressed_and_not_counted_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = PgDb::create("renderfail_a").await;
    let b = PgDb::create("renderfail_b").await;
    let (ua, ub) = (a.url.clone(), b.url.clone());
    render_failure(
        move |name| {
            if name == "ahead" {
                ua.clone()
            } else {
                ub.clone()
            }
        },
        &dir.path().join("templates"),
    )
    .await;
    a.drop_db().await;
    b.drop_db().await;
}
