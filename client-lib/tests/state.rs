//! The state directory keeps secrets readable by the owner only, and with
//! a passphrase, encrypted.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_client::{Client, ClientError, Event, StateDir};
use caucus_protocol::content::Sharing;

#[cfg(unix)]
#[test]
fn the_device_key_and_its_directory_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("state")).unwrap();
    let keys = dir.identity_or_create().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.path().join("device.key")), 0o600);
    // The same identity comes back; nothing is printed of the secret.
    let again = dir.identity().unwrap().unwrap();
    assert_eq!(again.fingerprint(), keys.fingerprint());
    assert!(
        !format!("{again:?}")
            .contains(&caucus_protocol::b64::encode(&keys.to_secret_bytes())[..12])
    );
}

#[test]
fn only_one_process_at_a_time_uses_a_state_directory() {
    let root = tempfile::tempdir().unwrap();
    let first = StateDir::open(root.path()).unwrap();
    assert!(matches!(
        StateDir::open(root.path()),
        Err(caucus_client::ClientError::Busy)
    ));
    drop(first);
    assert!(StateDir::open(root.path()).is_ok());
}

const PASSPHRASE: &[u8] = b"correct horse battery staple";

/// Every file under `root`, with its bytes and when it was last modified.
fn files(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                out.push((path.clone(), std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    out.sort();
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A state directory, once the client that held it has let it go.
async fn reopen(path: &std::path::Path, passphrase: Option<&[u8]>) -> StateDir {
    for _ in 0..250 {
        let dir = match passphrase {
            Some(p) => StateDir::open_encrypted(path, p),
            None => StateDir::open(path),
        };
        match dir {
            Ok(dir) => return dir,
            Err(ClientError::Busy) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the state directory is still held");
}

/// A mediator's device posts words in confidence; with a passphrase, no
/// file of its state directory holds them or its secret keys, and they come
/// back when it opens again with the passphrase. Without one (the control)
/// both are there to find.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_passphrase_no_file_holds_what_was_said_or_the_device_key() {
    const WORDS: &str = "Our bottom line is 41,500 pounds";
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let relay = caucus_server::Server::spawn(&["--listen", "127.0.0.1:0", "--data-dir", &data_dir])
        .await
        .unwrap();
    let url = relay.url().to_string();
    for passphrase in [None, Some(PASSPHRASE)] {
        let root = tempfile::tempdir().unwrap();
        let mediator = Client::open(reopen(root.path(), passphrase).await, &url)
            .await
            .unwrap();
        let (session, parties) = mediator
            .create_session("Ms Mediator", &["Claimant", "Respondent"])
            .await
            .unwrap();
        let room = mediator.party_room(&session, &parties[0]).unwrap();
        mediator
            .send(&session, &room, WORDS, Sharing::MediatorOnly)
            .await
            .unwrap();
        let fingerprint = mediator.fingerprint();
        drop(mediator);

        let dir = reopen(root.path(), passphrase).await;
        let secret = dir.identity().unwrap().unwrap().to_secret_bytes();
        let on_disk = files(root.path());
        let found = |needle: &[u8]| on_disk.iter().any(|(_, bytes, _)| holds(bytes, needle));
        let any_of_the_key = secret.windows(16).any(&found);
        match passphrase {
            None => assert!(found(WORDS.as_bytes()) && any_of_the_key),
            Some(_) => {
                assert!(!found(WORDS.as_bytes()), "the words are on disk");
                assert!(!any_of_the_key, "the device key is on disk");
            }
        }

        let again = Client::open(dir, &url).await.unwrap();
        assert_eq!(again.fingerprint(), fingerprint);
        let history = again.history(&session);
        assert!(
            history
                .iter()
                .any(|e| matches!(e, Event::Message { text, .. } if text == WORDS)),
            "{history:?}"
        );
        while let Some(event) = again
            .next_event_within(std::time::Duration::from_millis(200))
            .await
        {
            assert!(!matches!(event, Event::Warning { .. }), "{event:?}");
        }
    }
}

#[test]
fn a_wrong_or_missing_passphrase_is_refused_clearly_and_touches_nothing() {
    let root = tempfile::tempdir().unwrap();
    let fingerprint = {
        let dir = StateDir::open_encrypted(root.path(), PASSPHRASE).unwrap();
        dir.identity_or_create().unwrap().fingerprint()
    };
    let before = files(root.path());

    let wrong = StateDir::open_encrypted(root.path(), b"incorrect horse").unwrap_err();
    assert!(matches!(wrong, ClientError::WrongPassphrase));
    assert_eq!(
        wrong.to_string(),
        "wrong passphrase for this state directory"
    );
    let none = StateDir::open(root.path()).unwrap_err();
    assert!(matches!(none, ClientError::PassphraseNeeded));
    assert_eq!(
        none.to_string(),
        "this state directory is encrypted: set CAUCUS_PASSPHRASE or run from a terminal to be asked"
    );
    assert_eq!(files(root.path()), before);

    let dir = StateDir::open_encrypted(root.path(), PASSPHRASE).unwrap();
    assert_eq!(dir.identity().unwrap().unwrap().fingerprint(), fingerprint);
}

#[test]
fn a_directory_holding_unencrypted_state_is_not_opened_with_a_passphrase() {
    let root = tempfile::tempdir().unwrap();
    drop(
        StateDir::open(root.path())
            .unwrap()
            .identity_or_create()
            .unwrap(),
    );
    let before = files(root.path());
    let refused = StateDir::open_encrypted(root.path(), PASSPHRASE).unwrap_err();
    assert!(
        matches!(refused, ClientError::Usage(why) if why.contains("not encrypted")),
        "{refused}"
    );
    assert_eq!(files(root.path()), before);
    assert!(matches!(
        StateDir::open_encrypted(root.path(), b""),
        Err(ClientError::Usage(_))
    ));
}

/// A relay that lets its members post as fast as it answers, and a
/// mediator's session on it.
struct Busy {
    url: String,
    mediator: Client,
    session: caucus_protocol::ids::SessionId,
    parties: Vec<caucus_protocol::ids::PartyId>,
    /// The relay (stopped first) and the directories.
    _relay: (caucus_server::Running, tempfile::TempDir, tempfile::TempDir),
}

impl Busy {
    async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().display().to_string();
        let relay = caucus_server::Server::spawn(&[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--rate-per-sec",
            "100000",
            "--rate-burst",
            "100000",
        ])
        .await
        .unwrap();
        let url = relay.url().to_string();
        let mediator_dir = tempfile::tempdir().unwrap();
        let mediator = Client::open(StateDir::open(mediator_dir.path()).unwrap(), &url)
            .await
            .unwrap();
        let (session, parties) = mediator
            .create_session("Ms Mediator", &["Partner A", "Partner B"])
            .await
            .unwrap();
        Self {
            url,
            mediator,
            session,
            parties,
            _relay: (relay, data, mediator_dir),
        }
    }
}

/// Two members of one party, one keeping its state in the clear and one
/// encrypted, catch up on the same `CAUCUS_CATCHUP_N` messages (default 200):
/// the encrypted log is longer by a nonce and a tag (40 bytes) a record.
/// How long each took is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_catch_up_writes_a_nonce_and_a_tag_more_per_record() {
    let n: u64 = std::env::var("CAUCUS_CATCHUP_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let Busy {
        url,
        mediator,
        session,
        parties,
        _relay: _running,
        ..
    } = Busy::start().await;
    let devices = [None, Some(PASSPHRASE)].map(|p| (tempfile::tempdir().unwrap(), p));
    for (i, (root, passphrase)) in devices.iter().enumerate() {
        let link = mediator
            .invite(
                &session,
                &parties[0],
                &format!("Dr {i}"),
                caucus_client::now() + 600,
                caucus_client::Admission::Automatic,
            )
            .await
            .unwrap();
        let (member, _) = Client::join(reopen(root.path(), *passphrase).await, &link)
            .await
            .unwrap();
        while !matches!(member.next_event().await, Some(Event::Joined { .. })) {}
        member.sync(&session).await.unwrap();
    }
    let room = mediator.party_room(&session, &parties[0]).unwrap();
    let text = "x".repeat(200);
    for _ in 0..n {
        mediator
            .send(&session, &room, &text, Sharing::MayShare)
            .await
            .unwrap();
    }

    let mut logs = Vec::new();
    for (root, passphrase) in &devices {
        let dir = reopen(root.path(), *passphrase).await;
        let started = std::time::Instant::now();
        let member = Client::open(dir, &url).await.unwrap();
        let took = started.elapsed();
        let held = member
            .history(&session)
            .iter()
            .filter(|e| matches!(e, Event::Message { text: t, .. } if *t == text))
            .count();
        assert_eq!(held as u64, n);
        let size = |ext: &str| {
            let path = root
                .path()
                .join("sessions")
                .join(format!("{session}.{ext}"));
            std::fs::metadata(path).unwrap().len()
        };
        let (log, snapshot) = (size("log"), size("state"));
        eprintln!(
            "catch-up of {n} messages, {}: {took:?}; log {log} bytes, snapshot {snapshot}",
            if passphrase.is_some() {
                "encrypted"
            } else {
                "in the clear"
            },
        );
        logs.push(log);
    }
    assert_eq!(logs[1], logs[0] + 40 * n);
}

/// An encrypted directory's key is derived with Argon2id at OWASP's
/// parameters (46 MiB, one pass, one lane) from a salt of its own, all kept
/// in its keyfile. How long an open takes (the derivation) is printed.
#[test]
fn an_encrypted_directory_keeps_its_argon2id_parameters_and_salt_in_its_keyfile() {
    let keyfile = |root: &std::path::Path| {
        drop(StateDir::open_encrypted(root, PASSPHRASE).unwrap());
        std::fs::read(root.join("keyfile")).unwrap()
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one_keyfile, two_keyfile) = (keyfile(one.path()), keyfile(two.path()));
    // u16 version || u32 m_cost (KiB) || u32 t_cost || u32 p_cost || salt[16]
    // || verifier: nonce[24] || tag[16]
    assert_eq!(one_keyfile.len(), 2 + 12 + 16 + 40);
    let mut header = 1u16.to_be_bytes().to_vec();
    for param in [46 * 1024u32, 1, 1] {
        header.extend_from_slice(&param.to_be_bytes());
    }
    assert_eq!(one_keyfile[..14], header);
    assert_eq!(two_keyfile[..14], header);
    assert_ne!(one_keyfile[14..30], two_keyfile[14..30]);

    let fastest = (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            drop(StateDir::open_encrypted(one.path(), PASSPHRASE).unwrap());
            started.elapsed()
        })
        .min()
        .unwrap();
    eprintln!("opening an encrypted state directory: {fastest:?} (fastest of 3)");
}

/// A member erases a session while its messages pour in, pages of them
/// saved on another thread while the next is read: the session's files are
/// gone for good, not written again by a save that was under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_erased_while_its_messages_pour_in_stays_erased_on_disk() {
    let Busy {
        mediator,
        session,
        parties,
        _relay: _running,
        ..
    } = Busy::start().await;
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "Dr A",
            caucus_client::now() + 600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let (member, _) = Client::join(StateDir::open(root.path()).unwrap(), &link)
        .await
        .unwrap();
    while !matches!(member.next_event().await, Some(Event::Joined { .. })) {}
    member.sync(&session).await.unwrap();
    let room = mediator.party_room(&session, &parties[0]).unwrap();
    let text = "x".repeat(200);
    let sending = futures_util::future::join_all(
        (0..1500).map(|_| mediator.send(&session, &room, &text, Sharing::MayShare)),
    );
    let erasing = async {
        while !matches!(member.next_event().await, Some(Event::Message { .. })) {}
        member.erase(&session).unwrap();
    };
    let (sent, ()) = tokio::join!(sending, erasing);
    assert!(sent.iter().all(Result::is_ok));
    // What was still coming has come, and been passed over.
    while member
        .next_event_within(std::time::Duration::from_millis(500))
        .await
        .is_some()
    {}
    drop(member);
    let dir = reopen(root.path(), None).await;
    assert_eq!(dir.sessions().unwrap(), Vec::new());
    for ext in ["log", "state"] {
        let path = root
            .path()
            .join("sessions")
            .join(format!("{session}.{ext}"));
        assert!(!path.exists(), "{} is back", path.display());
    }
}
