use super::*;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replies")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn split_fixture(name: &str) -> Reply {
    let body = fixture(name);
    if name.ends_with(".html") {
        split_html(&body)
    } else {
        split_text(&body)
    }
}

#[track_caller]
fn assert_cut(r: &Reply, new_text: &str, quoted_has: &str) {
    assert_eq!(r.new_text, new_text, "{r:#?}");
    assert!(
        r.quoted.contains(quoted_has),
        "quoted lacks {quoted_has:?}: {r:#?}"
    );
    assert!(!r.new_text.contains(quoted_has), "{r:#?}");
    assert_eq!(r.method, Method::Cut, "{r:#?}");
}

#[test]
fn gmail_text_with_a_wrapped_attribution() {
    let r = split_fixture("gmail-en.txt");
    assert_cut(
        &r,
        "Thanks, the restart fixed it. We can close this.\n\nBest,\nJane",
        "Summary: map server down",
    );
    assert!(r.quoted.starts_with("On Mon, Nov 23"), "{r:#?}");
    assert_eq!(r.marker, Some(Marker::Attribution));
}

#[test]
fn gmail_html() {
    let r = split_fixture("gmail-en.html");
    assert_cut(
        &r,
        "Thanks, the restart fixed it. We can close this.\n\nBest,\nJane",
        "Summary: map server down",
    );
    assert!(r.quoted.contains("wrote:"), "{r:#?}");
}

#[test]
fn gmail_html_german_with_signature() {
    let r = split_fixture("gmail-de-signature.html");
    assert_cut(
        &r,
        "Hallo,\n\nder Fehler tritt weiterhin auf.",
        "Ihre Anfrage ist eingegangen.",
    );
    assert!(r.quoted.contains("schrieb ISDA Support"), "{r:#?}");
    assert!(r.signature.contains("Max Mustermann"), "{r:#?}");
}

#[test]
fn outlook_original_message() {
    let r = split_fixture("outlook-en.txt");
    assert_cut(
        &r,
        "Hi team,\n\nStill broken after the patch. Logs attached.\n\nRegards,\nBob",
        "Your request has been received.",
    );
    assert!(r.quoted.starts_with("-----Original Message-----"), "{r:#?}");
    assert_eq!(r.marker, Some(Marker::OriginalMessage));
}

#[test]
fn outlook_german_header_block_with_its_rule() {
    let r = split_fixture("outlook-de.txt");
    assert_cut(
        &r,
        "Hallo zusammen,\n\nanbei die Logdateien.\n\nViele Grüße\nBob",
        "Ihre Anfrage ist eingegangen.",
    );
    assert!(r.quoted.starts_with("____"), "{r:#?}");
    assert_eq!(r.marker, Some(Marker::HeaderBlock));
}

#[test]
fn outlook_desktop_html_border_separator() {
    let r = split_fixture("outlook-en.html");
    assert_cut(
        &r,
        "Hi team,\n\nStill broken after the patch.\n\nBob",
        "Your request has been received.",
    );
    assert!(!r.new_text.contains("MsoNormal"), "{r:#?}");
}

#[test]
fn outlook_web_french_divrplyfwdmsg() {
    let r = split_fixture("outlook-web-fr.html");
    assert_cut(
        &r,
        "Bonjour,\nLe problème persiste depuis ce matin.\nCordialement",
        "Votre demande a été reçue.",
    );
}

#[test]
fn apple_mail_text_with_iphone_signature() {
    let r = split_fixture("apple-en.txt");
    assert_cut(
        &r,
        "Yes, please go ahead with the reboot tonight.",
        "Your request has been received",
    );
    assert_eq!(r.signature, "Sent from my iPhone");
}

#[test]
fn apple_mail_dutch_html() {
    let r = split_fixture("apple-nl.html");
    assert_cut(&r, "Prima, dank je.", "Uw aanvraag is ontvangen.");
    assert_eq!(r.signature, "Verstuurd vanaf mijn iPhone");
}

#[test]
fn thunderbird_swedish_html_with_signature_below_the_quote() {
    let r = split_fixture("thunderbird-sv.html");
    assert_cut(
        &r,
        "Hej,\n\nservern svarar igen, tack!\n\n/Anna",
        "Ditt ärende har tagits emot.",
    );
    assert!(r.quoted.contains("skrev ISDA Support"), "{r:#?}");
    assert!(r.signature.contains("Anna Svensson"), "{r:#?}");
}

#[test]
fn thunderbird_spanish_text() {
    let r = split_fixture("thunderbird-es.txt");
    assert_cut(
        &r,
        "Hola,\n\nel servidor sigue sin responder.",
        "Su solicitud ha sido recibida.",
    );
    assert!(r.signature.contains("Carlos García"), "{r:#?}");
}

#[test]
fn bottom_posting_in_french() {
    let r = split_fixture("bottom-posted.txt");
    assert_cut(
        &r,
        "D'accord, merci. J'attends votre retour.",
        "Merci de patienter.",
    );
    assert!(r.quoted.starts_with("Le 23/11/2026"), "{r:#?}");
    assert!(r.signature.contains("Claire Dupont"), "{r:#?}");
}

#[test]
fn interleaved_answers_keep_the_writers_lines() {
    let body = fixture("interleaved.txt");
    let r = split_text(&body);
    assert_eq!(r.method, Method::Interleaved, "{r:#?}");
    for line in [
        "4.2.1",
        "Yes, it did on 4.1.",
        "> Which version are you running?",
    ] {
        assert!(r.new_text.contains(line), "{line}: {r:#?}");
    }
    assert_eq!(r.quoted, "");
}

#[test]
fn forwards_keep_the_forwarded_content() {
    for name in [
        "forwarded-gmail.html",
        "forwarded-outlook.txt",
        "forwarded-apple.txt",
    ] {
        let r = split_fixture(name);
        assert!(r.forwarded, "{name}: {r:#?}");
        assert!(
            r.new_text.contains("Disk /var is 99% full on map01."),
            "{name}: {r:#?}"
        );
        assert!(r.new_text.contains("monitor@example.com"), "{name}: {r:#?}");
        assert_eq!(r.quoted, "", "{name}");
    }
}

#[test]
fn a_quote_only_message_is_kept_whole() {
    let r = split_fixture("quote-only.txt");
    assert_eq!(r.method, Method::KeptWhole);
    assert!(r.new_text.contains("Summary: map server down"));
    let r = split_text("On Mon, Nov 23, 2026 at 10:02 AM Jane <j@x.y> wrote:\n> hello\n");
    assert_eq!(r.method, Method::KeptWhole);
    assert!(r.new_text.contains("hello"));
}

#[test]
fn a_plain_message_is_whole() {
    let r = split_text("The map server is down since 9:00.\n\nPlease help.\n");
    assert_eq!(r.method, Method::Whole);
    assert_eq!(
        r.new_text,
        "The map server is down since 9:00.\n\nPlease help."
    );
    assert_eq!(
        (r.quoted.as_str(), r.signature.as_str(), r.marker),
        ("", "", None)
    );
    assert_eq!(split_text("").new_text, "");
    // A signature alone is not cut: nothing would remain.
    assert_eq!(split_text("-- \nJane").new_text, "-- \nJane");
}

#[test]
fn attributions_in_many_languages() {
    let cases = [
        "On Mon, Nov 23, 2026 at 10:02 AM Jane Lee <jlee@example.edu> wrote:",
        "Am 23.11.2026 um 10:02 schrieb Jane Lee <jlee@example.edu>:",
        "Am Mo., 23. Nov. 2026 um 10:02 Uhr schrieb Jane Lee <jlee@example.edu>:",
        "Le lun. 23 nov. 2026 à 10:02, Jane Lee <jlee@example.edu> a écrit :",
        "El lun, 23 nov 2026 a las 10:02, Jane Lee (<jlee@example.edu>) escribió:",
        "Op ma 23 nov. 2026 om 10:02 schreef Jane Lee <jlee@example.edu>:",
        "Op 23 nov. 2026 om 10:02 heeft Jane Lee <jlee@example.edu> het volgende geschreven:",
        "Den mån 23 nov. 2026 kl 10:02 skrev Jane Lee <jlee@example.edu>:",
        "23 nov. 2026 kl. 10:02 skrev Jane Lee <jlee@example.edu>:",
        "Il giorno lun 23 nov 2026 alle ore 10:02 Jane Lee <jlee@example.edu> ha scritto:",
    ];
    for attribution in cases {
        // Without '>' below (Outlook-style history): still cut.
        let body = format!("My answer.\n\n{attribution}\n\nThe old text.\n");
        let r = split_text(&body);
        assert_eq!(r.new_text, "My answer.", "{attribution}: {r:#?}");
        assert!(r.quoted.contains("The old text."), "{attribution}");
        // With '>' below.
        let body = format!("My answer.\n\n{attribution}\n> The old text.\n");
        let r = split_text(&body);
        assert_eq!(r.new_text, "My answer.", "{attribution}: {r:#?}");
    }
}

#[test]
fn prose_that_looks_like_markers_is_kept() {
    let body = "On Monday the server went down.\nFrom: the logs it looks like a disk issue.\nI wrote: restart it.\n";
    let r = split_text(body);
    assert_eq!(r.method, Method::Whole, "{r:#?}");
    assert_eq!(r.new_text, body.trim_end());
}

#[test]
fn mobile_signatures_in_several_languages() {
    for sig in [
        "Sent from my iPhone",
        "Sent from my Galaxy",
        "Get Outlook for iOS",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Verstuurd vanaf mijn iPhone",
        "Skickat från min iPhone",
    ] {
        let r = split_text(&format!("OK, thanks.\n\n{sig}\n"));
        assert_eq!(r.new_text, "OK, thanks.", "{sig}");
        assert_eq!(r.signature, sig);
    }
    // Far from the end it is the writer's text.
    let body = "Sent from my iPhone is what it says.\nThen more.\nAnd more.\nAnd the end.";
    assert_eq!(split_text(body).new_text, body);
}

#[test]
fn html_to_text_basics() {
    assert_eq!(
        html_to_text(
            "<p>a &amp; b&nbsp;c</p><p>d<br>e</p><script>x()</script><style>p{}</style><!-- c -->f &#233;&#x00e9; &bogus;"
        ),
        "a & b c\n\nd\ne\n\nf éé &bogus;"
    );
    assert_eq!(html_to_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
    assert_eq!(
        html_to_text("<blockquote type=\"cite\">old</blockquote>new"),
        "> old\nnew"
    );
    assert_eq!(html_to_text("<pre>a  b\n c</pre>"), "a  b\n c");
}

#[test]
fn split_bodies_prefers_the_text() {
    let r = split_bodies(Some("Text answer.\n\n> old"), Some("<p>html</p>"));
    assert_eq!(r.new_text, "Text answer.");
    let r = split_bodies(None, Some(&fixture("gmail-en.html")));
    assert!(r.new_text.starts_with("Thanks"));
    let r = split_bodies(Some("  "), None);
    assert_eq!(r.new_text, "");
}

#[test]
fn split_uses_the_parsed_body() {
    let raw = b"From: a@b.c\nSubject: Re: x\n\nNew words.\n\nOn Mon, Nov 23, 2026 at 10:02 AM X <x@y.z> wrote:\n> old\n";
    let r = split(&crate::parse::parse(raw));
    assert_eq!(r.new_text, "New words.");
    assert_eq!(
        r.quoted,
        "On Mon, Nov 23, 2026 at 10:02 AM X <x@y.z> wrote:\n> old"
    );
}

#[test]
fn hostile_sizes_stay_linear() {
    let start = std::time::Instant::now();
    // Millions of quoted lines under a short answer.
    let mut body = String::from("Short answer.\n\n");
    body.push_str(&"> quoted line\n".repeat(1_000_000));
    let r = split_text(&body);
    assert_eq!(r.new_text, "Short answer.");
    // Deep HTML, unclosed and closed.
    let deep = "<div>".repeat(200_000) + "text" + &"</div>".repeat(200_000);
    assert_eq!(html_to_text(&deep), "text");
    let deep_quotes = "<blockquote type=\"cite\">".repeat(100_000) + "old";
    let r = split_html(&format!("new{deep_quotes}"));
    assert_eq!(r.new_text, "new");
    // Tags that never close, '<' everywhere, a single huge line.
    let _ = split_html(&"<a href=\"".repeat(100_000));
    let _ = split_html(&"<<<<>>>>&&&&;;;;".repeat(100_000));
    let huge_line = "x".repeat(10_000_000);
    let r = split_text(&huge_line);
    assert_eq!(r.new_text.len() + r.quoted.len(), huge_line.len());
    // Many candidate markers.
    let markers = "On x wrote:\nFrom: a\n".repeat(100_000);
    let _ = split_text(&markers);
    let attributed = "Answer.\nOn Mon, 23 Nov 2026 Jane <j@x.y> wrote:\n> a\n".repeat(200_000);
    assert_eq!(split_text(&attributed).method, Method::Interleaved);
    let blanks = "On Mon, 23 Nov 2026 Jane <j@x.y> wrote:".to_string() + &"\n".repeat(1_000_000);
    let _ = split_text(&blanks.repeat(2));
    let elapsed = start.elapsed();
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
}

#[test]
fn the_corpus_never_panics_and_never_empties_a_body() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut seen = 0;
    for sub in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sub.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = f.path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let raw = std::fs::read(&path).expect("read");
            let msg = crate::parse::parse(&raw);
            let r = split(&msg);
            if !msg.body.trim().is_empty() {
                assert!(!r.new_text.trim().is_empty(), "{}: {r:#?}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen > 0, "no corpus in {}", dir.display());
}

#[test]
fn an_enclosed_message_is_not_an_outlook_block() {
    let body = "See the message below.\n\nReturn-Path: <bob@example.net>\nFrom: Bob <bob@example.net>\nTo: ops@example.com\nSubject: Hello\nMessage-ID: <1@example.net>\n\nHello there.\n";
    let r = split_text(body);
    assert_eq!(r.method, Method::Whole, "{r:#?}");
    assert!(r.new_text.contains("Hello there."));
}

#[test]
fn outlook_mobile_and_other_languages() {
    let r = split_fixture("outlook-ios.txt");
    assert_cut(&r, "Sure, done.", "Your request has been received.");
    assert!(r.signature.starts_with("Get Outlook for iOS"), "{r:#?}");
    let r = split_fixture("gmail-mobile.txt");
    assert_cut(&r, "Will check tonight", "Your request has been received");
    let r = split_fixture("outlook-es.txt");
    assert_cut(
        &r,
        "Buenos días,\n\nadjunto los registros.\n\nSaludos",
        "Su solicitud ha sido recibida.",
    );
    let r = split_fixture("outlook-nl.txt");
    assert_cut(
        &r,
        "Goedemorgen,\n\nzie bijlage.",
        "Uw aanvraag is ontvangen.",
    );
    let r = split_fixture("outlook-sv.txt");
    assert_cut(
        &r,
        "Hej,\n\nloggarna bifogas.",
        "Ditt ärende har tagits emot.",
    );
    let r = split_fixture("yahoo.html");
    assert_cut(
        &r,
        "Thanks, it works now.",
        "Your request has been received.",
    );
}

#[test]
fn html_only_mail_through_the_parser() {
    let html = fixture("gmail-en.html");
    let raw = format!(
        "From: jane@example.com\r\nSubject: Re: [ISDA #1234] map server down\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}"
    );
    let msg = crate::parse::parse(raw.as_bytes());
    let r = split(&msg);
    assert!(
        r.new_text.starts_with("Thanks, the restart fixed it."),
        "{r:#?}"
    );
    assert!(
        !r.new_text.contains("Summary: map server down"),
        "{:?}\n{r:#?}",
        msg.body
    );
}

#[test]
fn random_input_never_panics() {
    let pieces = [
        "<",
        ">",
        "&",
        ";",
        "#",
        "x",
        "&#x",
        "&#",
        "é",
        "ß",
        "\u{a0}",
        "\n",
        "\r\n",
        "-- ",
        "--",
        "> ",
        " ",
        "On Mon, 1 Jan 2026 X <x@y> wrote:",
        "From: a",
        "Sent: b",
        "To: c",
        "Subject: FW: d",
        "<blockquote type=\"cite\">",
        "</blockquote>",
        "<div class=\"gmail_quote\">",
        "</div>",
        "<br>",
        "<!--",
        "-->",
        "<p>",
        "</p>",
        "<pre>",
        "</pre>",
        "Sent from my iPhone",
        "---------- Forwarded message ---------",
        "-----Original Message-----",
        "<div id=\"divRplyFwdMsg\">",
        "________________________________",
        "<style>",
        "</style>",
        "<!",
        "😀",
    ];
    let mut seed: u64 = 0x5eed;
    for _ in 0..3000 {
        let mut s = String::new();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (seed >> 33) % 40;
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(pieces[((seed >> 33) as usize) % pieces.len()]);
        }
        let t = split_text(&s);
        let h = split_html(&s);
        if !s.trim().is_empty()
            && !s
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('>'))
        {
            assert!(
                !t.new_text.trim().is_empty() || t.forwarded,
                "{s:?}: {t:#?}"
            );
        }
        let _ = h;
    }
}

#[test]
fn original_message_in_several_languages() {
    for line in [
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Message d'origine-----",
        "-----Mensaje original-----",
        "-----Oorspronkelijk bericht-----",
        "-----Ursprungligt meddelande-----",
    ] {
        let r = split_text(&format!("Answer.\n\n{line}\nFrom: x\nold text\n"));
        assert_eq!(r.new_text, "Answer.", "{line}");
        assert_eq!(r.marker, Some(Marker::OriginalMessage), "{line}");
    }
}

#[test]
fn an_attribution_without_a_date_needs_quotes_below() {
    let body = "Status update.\n\nOn Friday, support wrote:\nthe fix is deployed, and I confirm it works.\n";
    assert_eq!(split_text(body).method, Method::Whole);
    let body = "Status update.\n\nOn Friday, support wrote:\n> the fix is deployed\n";
    let r = split_text(body);
    assert_eq!(r.new_text, "Status update.");
    assert_eq!(r.marker, Some(Marker::Attribution));
}

/// An HTML-only message (no text/plain part) is split from its HTML, with
/// the quote markup, exactly as its body alone; quoted-printable and
/// base64 transfer encodings included. Without the HTML at hand the parser's
/// text reduction loses the markup, and quoted history would be relayed.
#[test]
fn html_only_messages_are_split_from_their_html() {
    for name in [
        "apple-nl.html",
        "gmail-en.html",
        "outlook-en.html",
        "outlook-web-fr.html",
        "thunderbird-sv.html",
        "yahoo.html",
    ] {
        let html = fixture(name);
        let expected = split_html(&html);
        assert_eq!(expected.method, Method::Cut, "{name}: {expected:#?}");
        for (encoding, body) in [
            ("8bit", html.clone()),
            ("base64", {
                use std::fmt::Write;
                let b64 = base64_lines(html.as_bytes());
                let mut s = String::new();
                for l in b64 {
                    let _ = writeln!(s, "{l}");
                }
                s
            }),
        ] {
            let raw = format!(
                "From: Ann <ann@example.org>\r\nSubject: Re: [ISDA #1042] x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}"
            );
            let parsed = crate::parse::parse(raw.as_bytes());
            assert!(parsed.html.is_some(), "{name} {encoding}");
            let got = split(&parsed);
            assert_eq!(got.new_text, expected.new_text, "{name} {encoding}");
            assert_eq!(got.signature, expected.signature, "{name} {encoding}");
        }
    }
    // A message with a text part keeps no HTML, and splits its text.
    let raw = "From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nNew text.\r\n\r\nOn Mon, Ann wrote:\r\n> old\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>New text.</p><blockquote>old</blockquote>\r\n--b--\r\n";
    let parsed = crate::parse::parse(raw.as_bytes());
    assert_eq!(parsed.html, None);
    assert_eq!(split(&parsed).new_text, "New text.");
}

/// Base64 in 76-character lines (a test helper; no crate needed for this).
fn base64_lines(bytes: &[u8]) -> Vec<String> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}
