//! Finding a message by its Message-ID (a reply's In-Reply-To and
//! References). On SQLite the lookup goes through the dedupe key's index, a
//! byte range per ID (`store::mid_range`): it must find a message stored
//! under its ID alone and one stored under its ID and content hash (an ID
//! reused with other content, whose first copy was set aside), and never a
//! neighbour whose ID only starts with the one asked for. The same on
//! PostgreSQL, which keeps its own index; and the same whether the batch's
//! look-ahead or the lookup's own statement answers.

use triaged::pipeline::{Origin, Outcome, Pipeline, Prepared};

use crate::harness::{PgDb, message};
use crate::lookahead::pipeline_with_caps;

const ISDA: &str = "isda-support@example.edu";

fn reply(id: &str, to_id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@x.example>\r\nTo: {ISDA}\r\nSubject: Re: {subject}\r\n\
         Date: Sat, 21 Nov 2026 11:00:00 -0600\r\nMessage-ID: <{id}>\r\n\
         In-Reply-To: <{to_id}>\r\nReferences: <{to_id}>\r\n\r\nAny news?\r\n"
    )
    .into_bytes()
}

fn prepared(p: &Pipeline) -> Vec<Prepared> {
    let origin = |i: usize| Origin::File {
        path: format!("m{i}.eml"),
    };
    let mut out: Vec<Prepared> = Vec::new();
    let add = |out: &mut Vec<Prepared>, raw: Vec<u8>| {
        let i = out.len();
        out.push(p.prepare("isda-support", origin(i), raw));
    };
    // 0: stored under `mid:one@x`.
    add(
        &mut out,
        message("one@x", "bob@x.example", ISDA, "Alpha", "First."),
    );
    // 1: an ID inside the byte range of `one@x` (`!` sorts before `$`).
    add(
        &mut out,
        message("one@x!two", "carl@x.example", ISDA, "Beta", "Second."),
    );
    // 2: refers to `one@x`: the reply of ticket 0, not of ticket 1.
    add(&mut out, reply("r1@x", "one@x", "Alpha"));
    // 3: set aside (a mailbox not configured), keeping `mid:q@x` and its
    // content hash in the quarantine.
    out.push(p.prepare(
        "nowhere",
        origin(3),
        message("q@x", "dan@x.example", ISDA, "Lost", "Set aside."),
    ));
    // 4: reuses `q@x` with other content: stored as `mid:q@x#<hash>`.
    add(
        &mut out,
        message("q@x", "erin@x.example", ISDA, "Gamma", "Small."),
    );
    // 5: refers to `q@x`: the reply of ticket 4.
    add(&mut out, reply("r2@x", "q@x", "Gamma"));
    // 6: refers to `n@x`, which only a neighbour's ID starts with.
    add(
        &mut out,
        message("n@x!z", "fay@x.example", ISDA, "Delta", "Near."),
    );
    add(&mut out, reply("r3@x", "n@x", "Epsilon"));
    out
}

fn number(o: &Outcome) -> i64 {
    match *o {
        Outcome::Created(n)
        | Outcome::Reply(n)
        | Outcome::Duplicate(n)
        | Outcome::DuplicateQuarantined(n)
        | Outcome::Quarantined(n) => n,
    }
}

async fn replies_find_their_message(url_of: impl AsyncFn(usize) -> (String, Option<PgDb>)) {
    for per_tx in [usize::MAX, 1] {
        let (url, db) = url_of(per_tx).await;
        let p = pipeline_with_caps(&url, 100, 100, None).await;
        let batch = prepared(&p);
        let mut o = Vec::new();
        for chunk in batch.chunks(per_tx) {
            o.extend(p.commit(chunk, None).await.expect("commit"));
        }
        p.store().close().await;
        if let Some(db) = db {
            db.drop_db().await;
        }
        let what = format!("{per_tx} per transaction: {o:?}");
        assert!(matches!(o[0], Outcome::Created(_)), "{what}");
        assert!(matches!(o[1], Outcome::Created(_)), "{what}");
        assert_ne!(number(&o[0]), number(&o[1]), "{what}");
        assert_eq!(o[2], Outcome::Reply(number(&o[0])), "{what}");
        assert!(matches!(o[3], Outcome::Quarantined(_)), "{what}");
        assert!(
            matches!(o[4], Outcome::Created(_)),
            "an ID reused with other content is a new message: {what}"
        );
        assert_eq!(o[5], Outcome::Reply(number(&o[4])), "{what}");
        assert!(matches!(o[6], Outcome::Created(_)), "{what}");
        assert!(
            matches!(o[7], Outcome::Created(n) if n != number(&o[6])),
            "a neighbour's ID is not the one referred to: {what}"
        );
    }
}

#[tokio::test]
async fn replies_find_their_message_by_id_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    replies_find_their_message(async |n: usize| {
        (
            format!(
                "sqlite://{}",
                path.join(format!("m{}.db", n.min(9))).display()
            ),
            None,
        )
    })
    .await;
}

#[tokio::test]
async fn replies_find_their_message_by_id_postgres() {
    replies_find_their_message(async |n: usize| {
        let db = PgDb::create(&format!("midlookup{}", n.min(9))).await;
        (db.url.clone(), Some(db))
    })
    .await;
}
