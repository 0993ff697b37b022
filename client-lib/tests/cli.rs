//! The `caucus` command against a real relay: `caucus demo`, and a whole
//! scripted exchange with `--json`.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod json_schema;

use std::process::{Command, Output, Stdio};

use serde_json::Value;

async fn relay() -> (String, caucus_server::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let running = caucus_server::Server::spawn(&["--listen", "127.0.0.1:0", "--data-dir", &data])
        .await
        .unwrap();
    (running.url().to_string(), running, dir)
}

/// Run `caucus` with `args` (off the async runtime's threads).
async fn caucus(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_caucus"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "caucus failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `caucus --json --state DIR ARGS…`.
fn as_device(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--json".to_string(),
        "--state".into(),
        dir.display().to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    all
}

/// The lines of `--json` output, each checked against
/// `docs/cli-json.schema.json`.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let line = serde_json::from_str(l).unwrap();
            json_schema::check_line(&line);
            line
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caucus_demo_plays_a_whole_shuttle_mediation() {
    let (url, _stop, _dir) = relay().await;
    let out = ok(&caucus(vec!["demo".into(), "--server".into(), url.clone()]).await);
    let section = |title: &str| -> String {
        let start = out
            .find(&format!("== {title} —"))
            .unwrap_or_else(|| panic!("no {title} in\n{out}"));
        let rest = &out[start + 3..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_string()
    };
    let mediator = section("Mediator");
    let claimant = section("Claimant");
    let defendant = section("Defendant trust");
    let trust_solicitor = section("Trust's solicitor");
    // The mediator heard everything in confidence, including the trust's offer.
    assert!(mediator.contains("I want them to admit the operation went wrong."));
    assert!(mediator.contains("Dr Defendant records Offer: GBP 120000.00"));
    // The claimant never saw the trust's private room, only the offer carried.
    assert!(
        claimant
            .contains("the mediator brings an offer from Defendant trust: Offer: GBP 120000.00")
    );
    assert!(claimant.contains("Mr Solicitor records Counter-offer: GBP 180000.00"));
    assert!(claimant.contains("the mediator is with another party"));
    assert!(!claimant.contains("[Defendant trust (private)]"));
    // The trust never saw the claimant's words, only the reframing and the
    // counter-offer, and was told what of its own was shared.
    assert!(!defendant.contains("I want them to admit"));
    assert!(!defendant.contains("An apology would matter"));
    assert!(defendant.contains(
        "(reframed): The claimant's side says an apology matters as much as the amount."
    ));
    assert!(defendant.contains("brings an offer from Claimant: Counter-offer"));
    assert!(defendant.contains("the mediator shared"));
    assert!(!defendant.contains("on a break"));
    assert!(mediator.contains("Ms Claimant is on a break"));
    // The lawyers' side meeting: only they and the mediator heard it.
    assert!(trust_solicitor.contains("Costs are the sticking point"));
    assert!(!claimant.contains("Costs are the sticking point"));
    assert!(!defendant.contains("Costs are the sticking point"));
    for s in [&mediator, &claimant, &defendant, &trust_solicitor] {
        assert!(s.contains("the mediator proposes \"Settlement agreement\""));
        assert!(s.contains("the agreement is signed by everyone and countersigned"));
        assert!(s.contains("the mediation is closed"));
        assert!(s.contains("the session has closed"));
        assert!(!s.contains("WARNING"), "{s}");
    }
    assert!(out.contains(
        "verifies offline, signed by Ms Claimant, Mr Solicitor, Dr Defendant, Ms Trust Solicitor, Ms Mediator"
    ));
    assert!(out.contains("== The relay's signed deletion statement =="));
    assert!(out.contains("every device deleted its room keys and messages"));
    // --json: one object per line, each naming its participant, then the
    // agreement, the relay's statement and the erasure.
    let json = ok(&caucus(vec!["demo".into(), "--server".into(), url, "--json".into()]).await);
    let lines = json_lines(&json);
    let (transcript, after): (Vec<_>, Vec<_>) =
        lines.iter().partition(|l| l["participant"].is_string());
    assert!(transcript.iter().all(|l| l["event"]["event"].is_string()));
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(
        after[0]["agreement"]["signers"].as_array().unwrap().len(),
        5
    );
    assert!(
        after[1]["deletion_statement"]["erased"]["envelopes"]
            .as_u64()
            .unwrap()
            > 20
    );
    assert!(after[2]["erased"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_session_with_the_caucus_command() {
    let (url, _stop, _dir) = relay().await;
    let mediator_dir = tempfile::tempdir().unwrap();
    let party_dir = tempfile::tempdir().unwrap();
    let m = |args: &[&str]| as_device(mediator_dir.path(), args);
    let p = |args: &[&str]| as_device(party_dir.path(), args);
    let me = json_lines(&ok(&caucus(m(&["init"])).await));
    assert_eq!(me[0]["safety_code"].as_str().unwrap().len(), 35);
    let created = json_lines(&ok(&caucus(m(&[
        "session",
        "create",
        "--server",
        &url,
        "--party",
        "Partner A",
        "--party",
        "Partner B",
    ]))
    .await));
    let session = created[0]["session"].as_str().unwrap().to_string();
    let link = json_lines(&ok(&caucus(m(&[
        "invite",
        "--server",
        &url,
        "--session",
        &session,
        "--party",
        "Partner A",
        "--name",
        "Dr A",
        "--auto-admit",
    ]))
    .await));
    let link = link[0]["link"].as_str().unwrap().to_string();
    // The party joins; the mediator's `listen --follow` admits them, as the
    // invite said it would.
    let follow = {
        let args = m(&[
            "listen",
            "--follow",
            "--server",
            &url,
            "--session",
            &session,
        ]);
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_caucus"))
                .args(&args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let joined = json_lines(&ok(&caucus(p(&["join", &link, "--wait", "20"])).await));
    assert!(
        joined
            .iter()
            .any(|l| l["joined"] == Value::String(session.clone()))
    );
    let mut follow = follow;
    follow.kill().unwrap();
    let _ = follow.wait();
    // The party writes in confidence; the mediator reads it, and it carries a message id.
    let sent = json_lines(&ok(&caucus(p(&[
        "send",
        "--server",
        &url,
        "--session",
        &session,
        "I feel the practice owes me my share",
    ]))
    .await));
    let message = sent[0]["message"].as_str().unwrap().to_string();
    let heard = json_lines(&ok(&caucus(m(&[
        "listen",
        "--server",
        &url,
        "--session",
        &session,
    ]))
    .await));
    let msg = heard.iter().find(|e| e["event"] == "message").unwrap();
    assert_eq!(msg["text"], "I feel the practice owes me my share");
    assert_eq!(msg["sharing"], "mediator_only");
    assert_eq!(msg["message"], Value::String(message.clone()));
    // Forwarding it without consent is refused; after consent it goes.
    let refused = caucus(m(&[
        "forward",
        "--server",
        &url,
        "--session",
        &session,
        "--message",
        &message,
        "--to",
        "Partner B",
    ]))
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("consent"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&caucus(p(&[
        "consent",
        "--server",
        &url,
        "--session",
        &session,
        "--message",
        &message,
    ]))
    .await);
    ok(&caucus(m(&["listen", "--server", &url, "--session", &session])).await);
    ok(&caucus(m(&[
        "forward",
        "--server",
        &url,
        "--session",
        &session,
        "--message",
        &message,
        "--to",
        "Partner B",
        "--reframe",
        "Partner A feels their share is owed.",
    ]))
    .await);
    ok(&caucus(p(&[
        "status",
        "--server",
        &url,
        "--session",
        &session,
        "needs-mediator",
    ]))
    .await);
    // The consent gates: no joint room in preparation; no negotiation phase
    // until every party (Partner B has no one yet) agrees to continue.
    let refused = caucus(m(&[
        "joint",
        "--server",
        &url,
        "--session",
        &session,
        "open",
    ]))
    .await;
    assert!(!refused.status.success());
    ok(&caucus(m(&[
        "phase",
        "--server",
        &url,
        "--session",
        &session,
        "individual-meetings",
    ]))
    .await);
    ok(&caucus(p(&[
        "agree",
        "--server",
        &url,
        "--session",
        &session,
        "continue",
    ]))
    .await);
    ok(&caucus(m(&["listen", "--server", &url, "--session", &session])).await);
    let refused = caucus(m(&[
        "phase",
        "--server",
        &url,
        "--session",
        &session,
        "negotiation",
    ]))
    .await;
    assert!(String::from_utf8_lossy(&refused.stderr).contains("agree to continue"));
    let party_saw = json_lines(&ok(&caucus(p(&[
        "listen",
        "--server",
        &url,
        "--session",
        &session,
    ]))
    .await));
    assert!(
        party_saw
            .iter()
            .any(|e| e["event"] == "shared" && e["mode"] == "reframed")
    );
    assert!(party_saw.iter().any(
        |e| e["event"] == "system" && e["what"] == "the mediation moved to individual meetings"
    ));
    ok(&caucus(m(&["close", "--server", &url, "--session", &session])).await);
    let whoami = json_lines(&ok(&caucus(p(&["whoami"])).await));
    assert!(whoami[0]["fingerprint"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caucus_agreement_verify_checks_a_copy_offline() {
    use caucus_protocol::agreement::{Agreement, Attachment, Signatory, SignedAgreement};
    use caucus_protocol::codec::Canonical;
    use caucus_protocol::identity::DeviceKeys;
    use caucus_protocol::ids::{PartyId, SessionId};
    let mediator = DeviceKeys::generate().unwrap();
    let partner = DeviceKeys::generate().unwrap();
    let agreement = Agreement {
        session: SessionId::random().unwrap(),
        title: "Partnership agreement".into(),
        terms: "Dr A retires on 31 March; the practice buys her share.".into(),
        checklist: vec![],
        attachments: vec![Attachment {
            title: "Valuation of the practice".into(),
            name: "valuation.pdf".into(),
            size: 2_345_678,
            sha256: caucus_protocol::crypto::Digest([0xab; 32]),
        }],
        mediator: Signatory {
            identity: mediator.public().clone(),
            name: "Ms Mediator".into(),
            party: None,
        },
        signatories: vec![Signatory {
            identity: partner.public().clone(),
            name: "Dr A".into(),
            party: Some((PartyId::random().unwrap(), "Partner A".into())),
        }],
        drafted_at: 1_900_000_000,
    };
    let signature = agreement.sign(&partner).unwrap();
    let copy = SignedAgreement::countersign(agreement, vec![signature], &mediator).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("agreement.md");
    std::fs::write(&md, copy.to_markdown()).unwrap();
    let out = ok(&caucus(vec![
        "agreement".into(),
        "verify".into(),
        md.display().to_string(),
    ])
    .await);
    assert!(
        out.contains("signed by Dr A (Partner A), Ms Mediator (mediator)"),
        "{out}"
    );
    // The attached file, with the SHA-256 that `sha256sum` would print.
    assert!(
        out.contains("Attached documents (the signatures cover each SHA-256):"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "- Valuation of the practice (valuation.pdf, 2.4 MB), SHA-256 {}",
            "ab".repeat(32)
        )),
        "{out}"
    );
    // One byte changed in the signed copy: refused.
    let mut bytes = copy.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, caucus_protocol::b64::encode(&bytes)).unwrap();
    let out = caucus(vec![
        "agreement".into(),
        "verify".into(),
        bad.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_begin_with_a_hyphen_are_taken_as_ids_not_flags() {
    // Session and message ids are base64url: one in 64 begins with `-`.
    let (url, _stop, _dir) = relay().await;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "consent",
        "--server",
        &url,
        "--session",
        "-AAAAAAAAAAAAAAAAAAAAA",
        "--message",
        "-not-a-message-id",
    ];
    let out = caucus(as_device(dir.path(), &args)).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a message id"), "{err}");
    // A document attached to an agreement is named by its message id too.
    let args = [
        "agreement",
        "propose",
        "--server",
        &url,
        "--session",
        "-AAAAAAAAAAAAAAAAAAAAA",
        "--title",
        "Settlement",
        "--terms",
        "The trust pays.",
        "--attach",
        "-not-a-message-id",
    ];
    let out = caucus(as_device(dir.path(), &args)).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a message id"), "{err}");
}

/// `kill -9` a device again and again while it catches up on a long
/// conversation, its state directory encrypted at rest: what it had saved
/// stays readable, and in the end it holds every message exactly once, with
/// nothing refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_while_catching_up_loses_nothing_and_keeps_nothing_twice() {
    use caucus_client::{Admission, Client, Event, StateDir};
    use caucus_protocol::content::Sharing;
    const N: usize = 600;
    let (url, _stop, _dir) = relay().await;
    let mediator_dir = tempfile::tempdir().unwrap();
    let party_dir = tempfile::tempdir().unwrap();
    let mediator = Client::open(StateDir::open(mediator_dir.path()).unwrap(), &url)
        .await
        .unwrap();
    let (session, parties) = mediator
        .create_session("Ms Mediator", &["Partner A", "Partner B"])
        .await
        .unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "Dr A",
            caucus_client::now() + 600,
            Admission::Automatic,
        )
        .await
        .unwrap();
    const PASSPHRASE: &str = "correct horse battery staple";
    let p = |args: &[&str]| as_device(party_dir.path(), args);
    let encrypted = |args: Vec<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_caucus"));
        command
            .args(args)
            .env("CAUCUS_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::null());
        command
    };
    let joined = encrypted(p(&["join", &link, "--wait", "20"]))
        .output()
        .unwrap();
    ok(&joined);
    let room = mediator.party_room(&session, &parties[0]).unwrap();
    for i in 0..N {
        mediator
            .send(&session, &room, &format!("message {i}"), Sharing::MayShare)
            .await
            .unwrap();
    }
    let listen = p(&[
        "listen",
        "--server",
        &url,
        "--session",
        &session.to_string(),
    ]);
    let log_size = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir.join("sessions"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    };
    let mut sizes = Vec::new();
    // Killed at growing moments until a run gets to finish by itself.
    for round in 0..40u64 {
        let mut child = encrypted(listen.clone())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150 + 150 * round)).await;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        sizes.push(log_size(party_dir.path()));
    }
    ok(&encrypted(listen.clone()).output().unwrap());
    let full = log_size(party_dir.path());
    eprintln!("log bytes after each kill: {sizes:?}, in the end {full}");
    assert!(
        sizes.iter().any(|s| *s > 0 && *s < full),
        "at least one kill lands mid-catch-up: {sizes:?} of {full}"
    );

    let party = Client::open(
        StateDir::open_encrypted(party_dir.path(), PASSPHRASE.as_bytes()).unwrap(),
        &url,
    )
    .await
    .unwrap();
    let history = party.history(&session);
    for i in 0..N {
        let text = format!("message {i}");
        let times = history
            .iter()
            .filter(|e| matches!(e, Event::Message { text: t, .. } if *t == text))
            .count();
        assert_eq!(times, 1, "{text} held {times} times");
    }
    while let Some(event) = party
        .next_event_within(std::time::Duration::from_millis(300))
        .await
    {
        assert!(!matches!(event, Event::Warning { .. }), "{event:?}");
    }
}

/// `join` answers at once, in different words, a link already used and a
/// relay that cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tells_a_used_link_from_a_relay_out_of_reach() {
    use caucus_client::{Admission, Client, StateDir};
    let (url, stop, _dir) = relay().await;
    let mediator_dir = tempfile::tempdir().unwrap();
    let mediator = Client::open(StateDir::open(mediator_dir.path()).unwrap(), &url)
        .await
        .unwrap();
    let (session, parties) = mediator
        .create_session("Ms Mediator", &["Claimant"])
        .await
        .unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "Ms C",
            caucus_client::now() + 600,
            Admission::Automatic,
        )
        .await
        .unwrap();
    let first = tempfile::tempdir().unwrap();
    ok(&caucus(as_device(first.path(), &["join", &link, "--wait", "20"])).await);
    let second = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = caucus(as_device(second.path(), &["join", &link, "--wait", "20"])).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("already been used"), "{said}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(mediator);
    drop(stop);
    let third = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = caucus(as_device(third.path(), &["join", &link, "--wait", "20"])).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("could not reach the relay"), "{said}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
