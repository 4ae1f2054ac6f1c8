//! The sender's SMTP lanes against a server that misbehaves between mails: a
//! tiny SMTP server in the test drops connections (after each mail, or with
//! no greeting at all) and the lane must move to a new connection at once,
//! not wait for the 30 s SMTP timeout. Each mail arrives exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::harness::{start_sender, store_with_queued_mail};

/// How the fake server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Closes the connection right after answering each mail's final dot.
    CloseAfterEachMail,
    /// Accepts the first connection but never greets on it (kept open).
    SilentFirstGreeting,
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    subjects: Mutex<Vec<String>>,
}

async fn fake_smtp(fault: Fault) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        let mut silent = Vec::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let n = s.connections.fetch_add(1, Ordering::SeqCst);
            if matches!(fault, Fault::SilentFirstGreeting) && n == 0 {
                silent.push(sock); // held open, never answered
                continue;
            }
            let s = s.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 fake ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-fake\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            let _ = w.write_all(b"354 go on\r\n").await;
                            let mut subject = String::new();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                if let Some(v) = line.strip_prefix("Subject: ") {
                                    subject = v.trim().to_string();
                                }
                            }
                            s.subjects.lock().expect("lock").push(subject);
                            let _ = w.write_all(b"250 2.0.0 queued\r\n").await;
                            if matches!(fault, Fault::CloseAfterEachMail) {
                                return; // both halves dropped: the socket closes
                            }
                            continue;
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Queues `n` mails in a fresh SQLite store, sends them through one lane to
/// a fake server with `fault`, and returns the seconds it took.
async fn send_through(fault: Fault, n: usize) -> (f64, Arc<Seen>) {
    let (port, seen) = fake_smtp(fault).await;
    let mails: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            (
                format!("fault {i}"),
                format!("fault-{i}@example.edu"),
                format!("mail {i}"),
            )
        })
        .collect();
    let (_dir, store) = store_with_queued_mail(&mails).await;
    // With whatever the commit itself queued (no notifier here: nothing).
    let n = store
        .list_outbox(Some("pending"), i64::MAX)
        .await
        .expect("outbox")
        .len();

    let start = Instant::now();
    let (shutdown, task) = start_sender(
        &store,
        &format!(
            "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nconcurrency = 1\ntimeout_secs = 30\n"
        ),
    );
    let deadline = start + Duration::from_secs(120);
    while store
        .list_outbox(Some("sent"), i64::MAX)
        .await
        .expect("outbox")
        .len()
        < n
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    shutdown.cancel();
    task.await.expect("sender");
    let sent = store
        .list_outbox(Some("sent"), i64::MAX)
        .await
        .expect("outbox");
    assert_eq!(sent.len(), n, "every mail sent");
    assert!(
        store
            .list_outbox(Some("pending"), i64::MAX)
            .await
            .expect("outbox")
            .is_empty(),
        "nothing left to retry"
    );
    let subjects = seen.subjects.lock().expect("lock").clone();
    let mut unique = subjects.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        subjects.len(),
        n,
        "each mail reached the server once: {subjects:?}"
    );
    assert_eq!(unique.len(), n, "no mail twice: {subjects:?}");
    store.close().await;
    (secs, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_closing_the_connection_between_mails_does_not_stall_the_lane() {
    let n = 12;
    let (secs, seen) = send_through(Fault::CloseAfterEachMail, n).await;
    // A stalled lane waits out the 30 s SMTP timeout at least once.
    assert!(secs < 20.0, "a lane stalled: {n} mails took {secs:.1} s");
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        n,
        "one connection per mail"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_greeting_that_never_comes_costs_a_short_wait_not_the_timeout() {
    let n = 3;
    let (secs, seen) = send_through(Fault::SilentFirstGreeting, n).await;
    assert!(secs < 20.0, "a lane waited for the timeout: {secs:.1} s");
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        2,
        "one silent, one kept"
    );
}
