//! Interoperability: `tests/interop/caucus_interop.py`, a Python client
//! written from `docs/protocol.md` alone (with only the `websockets` and
//! `cryptography` packages), joins a session that the Rust mediator client
//! runs through the reference relay, and the two exchange verified messages.
//!
//! The interpreter is `$CAUCUS_PYTHON` if set, or a virtual environment the
//! suite makes under `target/interop-venv` with pinned `websockets` and
//! `cryptography` from PyPI. If neither works, these tests fail (they are
//! never skipped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caucus_client::{Client, Event};
use caucus_protocol::content::Sharing;
use caucus_tests::Relay;

/// How long the Python client may take in all (its own timeout is 30 s).
const PYTHON_WAIT: Duration = Duration::from_secs(45);
/// How long the mediator waits for each step of the Python client.
const EVENT_WAIT: Duration = Duration::from_secs(20);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/caucus_interop.py")
}

/// The packages the Python client needs, pinned.
const PACKAGES: [&str; 2] = ["websockets==17.4", "cryptography==50.0.2"];

/// The interpreter for the Python client: `$CAUCUS_PYTHON` if set (it must
/// have the packages), or else a virtual environment under `target/` that
/// the suite makes itself, once, with the pinned packages from PyPI. Fails,
/// loudly, if neither works: these tests are never skipped.
fn python() -> String {
    static READY: Mutex<Option<String>> = Mutex::new(None);
    let mut ready = READY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(py) = ready.as_ref() {
        return py.clone();
    }
    let has_packages = |py: &str| {
        std::process::Command::new(py)
            .args(["-c", "import websockets, cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(py) = std::env::var("CAUCUS_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    {
        assert!(
            has_packages(&py),
            "CAUCUS_PYTHON={py} cannot `import websockets, cryptography`"
        );
        *ready = Some(py.clone());
        return py;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv");
    let py = venv.join("bin/python").display().to_string();
    if !has_packages(&py) {
        let run = |program: &str, args: &[&str]| {
            let out = std::process::Command::new(program)
                .args(args)
                .output()
                .unwrap_or_else(|e| {
                    panic!("the interop tests need python3 (with venv and pip): {e}")
                });
            assert!(
                out.status.success(),
                "`{program} {}` failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run("python3", &["-m", "venv", &venv.display().to_string()]);
        let mut install = vec![
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ];
        install.extend(PACKAGES);
        run(&py, &install);
        assert!(has_packages(&py), "the packages did not install into {py}");
    }
    *ready = Some(py.clone());
    py
}

/// The JSON lines the Python client printed.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The Python client, running, with its output collected as it comes.
struct Python {
    child: tokio::process::Child,
    stdout: (Arc<Mutex<String>>, tokio::task::JoinHandle<()>),
    stderr: (Arc<Mutex<String>>, tokio::task::JoinHandle<()>),
}

impl Python {
    fn spawn(args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(python())
            .arg(script())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// What it has written to stderr so far, for a failure message.
    fn so_far(&self) -> String {
        format!(
            "the Python client's stderr so far:\n{}",
            self.stderr.0.lock().unwrap()
        )
    }

    /// Wait for it to exit: its status, stdout and stderr.
    async fn finish(mut self) -> (ExitStatus, String, String) {
        let status = match tokio::time::timeout(PYTHON_WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the Python client did not finish; {}", self.so_far()),
        };
        self.stdout.1.await.unwrap();
        self.stderr.1.await.unwrap();
        let text = |s: &Arc<Mutex<String>>| s.lock().unwrap().clone();
        (status, text(&self.stdout.0), text(&self.stderr.0))
    }
}

fn collect(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncBufReadExt;
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let task = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    (text, task)
}

/// The mediator's first event matching `pred`; on a timeout, a panic that
/// shows what the Python client said.
async fn next(client: &mut Client, py: &Python, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_event_within(left).await {
            Some(e) if pred(&e) => return e,
            Some(_) => continue,
            None => panic!("the mediator saw no matching event; {}", py.so_far()),
        }
    }
}

#[test]
fn the_python_client_reproduces_the_documents_examples() {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(script()).arg("--self-test");
    // The RFC 9180 vectors too, when named (relative to the workspace root).
    if let Ok(path) = std::env::var("CAUCUS_HPKE_VECTORS") {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        if path.is_file() {
            cmd.arg("--hpke-vectors").arg(path);
        }
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "self-test failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = json_lines(&stdout).pop().unwrap();
    assert_eq!(
        (&last["event"], &last["ok"]),
        (&"self_test".into(), &true.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_party_joins_sends_and_receives_from_the_rust_mediator() {
    let relay = Relay::start(&[]).await;
    let (mut mediator, _dir) = relay.device().await;
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant", "Respondent"])
        .await
        .unwrap();
    let room = mediator.party_room(&session, &parties[0]).unwrap();
    // A word in the joint room before the party joins: the roster that
    // admits them ends the joint room's epoch 1 at the mediator's chain head
    // there (protocol.md 7.2), from which the party follows that chain
    // (10.6): the mediator's next joint message is no gap to it.
    let joint = mediator.joint_room(&session).unwrap();
    let before = "Before the parties arrive";
    mediator
        .send(&session, &joint, before, Sharing::MayShare)
        .await
        .unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "Py Claimant",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();

    // The Python party sends *may share*: the mediator client's forward
    // carries *mediator only* text only with the author's consent (9.2),
    // reframed or not.
    let said = "From Python: we could settle at 50k";
    let py = Python::spawn(&[&relay.url, &link, said, "--sharing", "MayShare"]);

    // The mediator admits the joiner (its proof verifies) by itself...
    let member = match next(&mut mediator, &py, |e| matches!(e, Event::Admitted { .. })).await {
        Event::Admitted { member, .. } => member,
        _ => unreachable!(),
    };
    // ... and receives, verified, what the Python client sealed.
    let hash = match next(
        &mut mediator,
        &py,
        |e| matches!(e, Event::Message { sender, .. } if *sender == member),
    )
    .await
    {
        Event::Message {
            room: r,
            text,
            sharing,
            hash,
            ..
        } => {
            assert_eq!((r, text.as_str(), sharing), (room, said, Sharing::MayShare));
            hash
        }
        _ => unreachable!(),
    };
    // In the joint room, the mediator's second message; a reply in the
    // private room, and the party's message reframed.
    let welcome = "Welcome to the joint room";
    mediator
        .send(&session, &joint, welcome, Sharing::MayShare)
        .await
        .unwrap();
    let reply = "From Rust: thank you, I will take that to the other side";
    mediator
        .send(&session, &room, reply, Sharing::MayShare)
        .await
        .unwrap();
    let reframed = "The claimant is open to settling";
    mediator
        .forward(&session, &hash, &room, Some(reframed.to_string()))
        .await
        .unwrap();

    let (status, stdout, stderr) = py.finish().await;
    assert!(
        status.success(),
        "the Python client failed ({status}):\n{stderr}\nstdout:\n{stdout}"
    );
    eprintln!("the Python client's stdout:\n{stdout}stderr:\n{stderr}"); // with --nocapture
    let lines = json_lines(&stdout);
    let find = |event: &str| {
        lines
            .iter()
            .find(|l| l["event"] == event)
            .unwrap_or_else(|| panic!("no {event} line in:\n{stdout}"))
    };
    let b64 = caucus_protocol::b64::encode;
    // Both sides name the party's message by the same envelope hash (10.4).
    let sent = find("sent");
    assert_eq!(sent["text"], said);
    assert_eq!(sent["hash"], b64(&hash.0));
    let in_room = |room: &caucus_protocol::ids::RoomId| {
        lines
            .iter()
            .find(|l| l["event"] == "message" && l["room"] == b64(&room.0))
            .unwrap_or_else(|| panic!("no message line for the room in:\n{stdout}"))
    };
    let message = in_room(&room);
    assert_eq!(message["text"], reply);
    let later = in_room(&joint);
    assert_eq!(
        (&later["text"], &later["seq"], later.get("gap")),
        (&welcome.into(), &2.into(), None),
        "the party follows the mediator's joint chain from the admitting roster's head"
    );
    assert!(!stdout.contains(before), "sent before the party joined");
    assert_eq!(message["sender"], b64(&mediator.fingerprint().0));
    let forward = find("forward");
    assert_eq!(forward["mode"], "Reframed");
    assert_eq!(forward["text"], reframed);
    assert_eq!(forward["source_message"], b64(&hash.0));
    assert_eq!(forward["author_consented"], false);
}

/// A file of `len` bytes, all different from the start of another.
fn a_file(dir: &std::path::Path, name: &str, len: usize, seed: u8) -> (PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ seed).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_party_and_the_rust_mediator_exchange_documents() {
    let relay = Relay::start(&[]).await;
    let (mut mediator, _dir) = relay.device().await;
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant", "Respondent"])
        .await
        .unwrap();
    let room = mediator.party_room(&session, &parties[0]).unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "Py Claimant",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // 100,000 bytes: two chunks (protocol.md 9.6), padded to 100352.
    let (py_path, py_bytes) = a_file(scratch.path(), "position.bin", 100_000, 7);
    let py = Python::spawn(&[
        &relay.url,
        &link,
        "A document follows",
        "--sharing",
        "MediatorOnly",
        "--document",
        &py_path.display().to_string(),
    ]);

    let member = match next(&mut mediator, &py, |e| matches!(e, Event::Admitted { .. })).await {
        Event::Admitted { member, .. } => member,
        _ => unreachable!(),
    };
    // The Python party's document, verified, then downloaded and opened by
    // the Rust client: the same bytes.
    let (hash, document) = match next(
        &mut mediator,
        &py,
        |e| matches!(e, Event::Document { sender, .. } if *sender == member),
    )
    .await
    {
        Event::Document {
            room: r,
            hash,
            sharing,
            document,
            ..
        } => {
            assert_eq!((r, sharing), (room, Sharing::MediatorOnly));
            (hash, document)
        }
        _ => unreachable!(),
    };
    assert_eq!(
        (
            document.title.as_str(),
            document.name.as_str(),
            document.media_type.as_str(),
            document.size,
            document.sha256
        ),
        (
            "position.bin",
            "position.bin",
            "application/octet-stream",
            100_000,
            caucus_protocol::document::Hasher::digest(&py_bytes)
        )
    );
    let saved = scratch.path().join("saved.bin");
    mediator
        .save_document(&session, &hash, &saved)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), py_bytes);

    // The Rust mediator's document, three chunks, which the Python party
    // downloads and opens.
    let (rust_path, rust_bytes) = a_file(scratch.path(), "mediator-note.txt", 150_000, 3);
    let sent = mediator
        .send_document(
            &session,
            &room,
            &rust_path,
            Some("A note from the mediator"),
            Sharing::MayShare,
        )
        .await
        .unwrap();

    let (status, stdout, stderr) = py.finish().await;
    assert!(
        status.success(),
        "the Python client failed ({status}):\n{stderr}\nstdout:\n{stdout}"
    );
    eprintln!("the Python client's stdout:\n{stdout}stderr:\n{stderr}"); // with --nocapture
    let lines = json_lines(&stdout);
    let find = |event: &str| {
        lines
            .iter()
            .find(|l| l["event"] == event)
            .unwrap_or_else(|| panic!("no {event} line in:\n{stdout}"))
    };
    let b64 = caucus_protocol::b64::encode;
    let hex = |d: &caucus_protocol::crypto::Digest| {
        d.0.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    // Both sides name the Python party's document by the same envelope hash.
    let doc_sent = find("document_sent");
    assert_eq!(doc_sent["hash"], b64(&hash.0));
    assert_eq!(doc_sent["size"], 100_000);
    let rust_sha = hex(&caucus_protocol::document::Hasher::digest(&rust_bytes));
    let seen = lines
        .iter()
        .find(|l| l["event"] == "document" && l["sender"] == b64(&mediator.fingerprint().0))
        .unwrap_or_else(|| panic!("no document line from the mediator in:\n{stdout}"));
    assert_eq!(
        (
            &seen["title"],
            &seen["name"],
            &seen["sharing"],
            &seen["size"],
            &seen["sha256"],
            &seen["hash"]
        ),
        (
            &"A note from the mediator".into(),
            &"mediator-note.txt".into(),
            &"MayShare".into(),
            &150_000.into(),
            &rust_sha.as_str().into(),
            &b64(&sent.message.0).into()
        )
    );
    let opened = find("document_opened");
    assert_eq!(
        (&opened["message"], &opened["size"], &opened["sha256"]),
        (
            &b64(&sent.message.0).into(),
            &150_000.into(),
            &rust_sha.as_str().into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_refuses_rosters_not_signed_by_the_pinned_mediator() {
    let relay = Relay::start(&[]).await;
    let (mut mediator, _dir) = relay.device().await;
    let (session, parties) = mediator.create_session("M", &["P"]).await.unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "P",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    // The same invite, pinning another fingerprint. The admission token and
    // the join proof do not depend on it, so the mediator still admits.
    let prefix = "caucus:invite:v1:";
    let mut invite = caucus_protocol::b64::decode(link.strip_prefix(prefix).unwrap()).unwrap();
    let pinned_at = invite.len() - 8 - 32; // ... || mediator(32) || expires_at(8)
    invite[pinned_at] ^= 1;
    let link = format!("{prefix}{}", caucus_protocol::b64::encode(&invite));

    let py = Python::spawn(&[&relay.url, &link, "hello"]);
    next(&mut mediator, &py, |e| matches!(e, Event::Admitted { .. })).await;
    let (status, stdout, stderr) = py.finish().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unpinned_mediator"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}
