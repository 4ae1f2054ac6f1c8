//! `triaged demo`: the real job on a machine without a mail server.
//!
//! Starts a private Dovecot on loopback with the four mailboxes of the example
//! deployment, mails them the messages in `deploy/demo/` over IMAP, runs the
//! daemon against them with a fresh SQLite database, and prints the tickets.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::devstack::{Dovecot, PASSWORD, Smtpd};
use crate::config::Config;
use crate::store::{Store, TicketFilter};

const DEMO_CONFIG: &str = include_str!("../../deploy/demo/triaged.toml");

/// (user, message) in delivery order.
const DEMO_MAIL: &[(&str, &str)] = &[
    (
        "isda-support@example.edu",
        include_str!("../../deploy/demo/1-isda-support.eml"),
    ),
    (
        "isda-support@example.edu",
        include_str!("../../deploy/demo/2-isda-support-reply.eml"),
    ),
    (
        "map-support@example.edu",
        include_str!("../../deploy/demo/3-map-support.eml"),
    ),
    (
        "db-requests@example.edu",
        include_str!("../../deploy/demo/4-db-requests.eml"),
    ),
    (
        "help@example.edu",
        include_str!("../../deploy/demo/5-help.eml"),
    ),
    (
        "map-support@example.edu",
        include_str!("../../deploy/demo/6-map-support-copy.eml"),
    ),
];

pub async fn run(keep_running: bool) -> anyhow::Result<ExitCode> {
    println!("Starting a private Dovecot and OpenSMTPD on 127.0.0.1 ...");
    let dovecot = Dovecot::start()?;
    let smtpd = Smtpd::start(&dovecot)?;
    let dir = dovecot.root().to_path_buf();
    let password_file = dir.join("imap-password");
    std::fs::write(&password_file, PASSWORD)?;
    // The database stays in the working directory after the demo, to look at.
    let db = std::env::current_dir()?.join("triaged-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let text = DEMO_CONFIG
        .replace("@DB@", &db.display().to_string())
        .replace("@IMAP_PORT@", &dovecot.imap_port.to_string())
        .replace("@SMTP_PORT@", &smtpd.port.to_string())
        .replace("@PASSWORD_FILE@", &password_file.display().to_string());
    let config_path = dir.join("triaged.toml");
    std::fs::write(&config_path, &text)?;
    let config = Arc::new(
        Config::parse(&text, &config_path.display().to_string())
            .map_err(|p| anyhow::anyhow!("{p}"))?,
    );
    println!(
        "Dovecot IMAP on 127.0.0.1:{}, config {}",
        dovecot.imap_port,
        config_path.display()
    );

    let store = Store::open(&config.store.database_url, config.tickets.first_number).await?;
    let shutdown = CancellationToken::new();
    crate::daemon::spawn_signal_handler(shutdown.clone());
    let daemon = tokio::spawn(crate::daemon::run(
        config.clone(),
        store.clone(),
        shutdown.clone(),
    ));

    println!(
        "Mailing {} messages to the watched mailboxes ...",
        DEMO_MAIL.len()
    );
    for (user, message) in DEMO_MAIL {
        let raw = message.replace('\n', "\r\n").into_bytes();
        dovecot.append(user, "INBOX", &[raw]).await?;
        println!(
            "  -> {user}: {}",
            message
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or("")
        );
    }

    let start = Instant::now();
    let want = DEMO_MAIL.len() as i64;
    while store.counts().await?.deliveries() < want && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = store.counts().await?;
    println!(
        "\nAll {} deliveries handled in {:.2} s: {} tickets, {} messages on them, {} duplicate(s) recognised.\n",
        counts.deliveries(),
        start.elapsed().as_secs_f64(),
        counts.tickets,
        counts.messages,
        counts.duplicates
    );
    for t in store.list_tickets(&TicketFilter::default()).await? {
        println!(
            "{:<14} {:<18} {:<36} {}",
            t.tag, t.queue, t.requester, t.subject
        );
    }
    // The answers: wait for the outbox to drain, then read one back over IMAP.
    let sending = Instant::now();
    while !store.list_outbox(Some("pending"), 1).await?.is_empty()
        && sending.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("\nMail the desk sent, through OpenSMTPD into Dovecot:");
    for m in store.list_outbox(None, 100).await?.iter().rev() {
        println!(
            "  {:<6} {:<20} to {:<36} {}",
            m.status,
            m.kind,
            m.rcpt.join(", "),
            m.subject
        );
    }
    let customer = "dana.whitfield@history.example.edu";
    let mut imap = dovecot.session(customer).await?;
    imap.select("INBOX").await?;
    let mut fetched = Vec::new();
    {
        let mut stream = imap.fetch("1:*", "BODY.PEEK[]").await?;
        while let Some(f) = futures::TryStreamExt::try_next(&mut stream).await? {
            fetched.push(String::from_utf8_lossy(f.body().unwrap_or_default()).into_owned());
        }
    }
    let _ = imap.logout().await;
    if let Some(ack) = fetched.first() {
        println!("\nThe acknowledgement as it landed in {customer}'s INBOX:");
        for line in ack.lines().take_while(|l| !l.is_empty()).filter(|l| {
            [
                "Subject:",
                "From:",
                "To:",
                "Reply-To:",
                "In-Reply-To:",
                "Auto-Submitted:",
            ]
            .iter()
            .any(|h| l.starts_with(h))
        }) {
            println!("  {line}");
        }
    }
    println!(
        "\nThe tickets stay in {}. See one with its messages and history:\n  \
         TRIAGED_DATABASE_URL=sqlite://{} triaged tickets show 1000",
        db.display(),
        db.display()
    );
    println!(
        "\nTo watch real mailboxes: copy deploy/triaged.example.toml to triaged.toml, set [imap] host and each"
    );
    println!(
        "mailbox's username and password_env/password_file, check it with `triaged check`, then `triaged run`."
    );

    if keep_running {
        println!(
            "\nStill watching. Append mail as user isda-support@example.edu (password {PASSWORD}) to 127.0.0.1:{}; Ctrl-C stops.",
            dovecot.imap_port
        );
    } else {
        shutdown.cancel();
    }
    daemon.await??;
    store.close().await;
    Ok(if counts.deliveries() == want {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
