//! Documents through the `caucus` command against a real relay: a party
//! sends a file for the mediator only, the mediator lists and saves it, may
//! carry it only once its author consents, carries it verbatim and as a
//! redacted copy of their own, and erasing the session removes the copies
//! kept on the device. Every JSON line is checked against
//! `docs/cli-json.schema.json`.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod json_schema;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A device: its state directory.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run a command; its output, whether it succeeded or not.
    fn try_run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_caucus"))
            .arg("--json")
            .arg("--state")
            .arg(self.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run a command that must succeed; its JSON lines, each checked
    /// against the schema.
    fn run(&self, args: &[&str]) -> Vec<Value> {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "caucus {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let line = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                json_schema::check_line(&line);
                line
            })
            .collect()
    }

    /// Start `caucus daemon` on this device's state directory: its other
    /// commands go through it (and it admits joiners automatically).
    fn daemon(&self, server: &str) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_caucus"))
            .arg("--state")
            .arg(self.path())
            .args(["daemon", "--server", server])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.path().join("daemon.sock").exists() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon(child)
    }

    /// Run a command that must fail; what it says on stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(!out.status.success(), "caucus {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }
}

/// A daemon, stopped when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `len` bytes that differ from place to place.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

#[test]
fn a_document_is_sent_listed_saved_carried_with_consent_and_erased_through_the_command_line() {
    let relay_dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime
        .block_on(caucus_server::Server::spawn(&[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &relay_dir.path().display().to_string(),
        ]))
        .unwrap();
    let url = relay.url().to_string();
    let files = tempfile::tempdir().unwrap();

    let mediator = Device::new();
    let claimant = Device::new();
    let created = mediator.run(&[
        "session",
        "create",
        "--server",
        &url,
        "--party",
        "Claimant",
        "--party",
        "Respondent",
    ]);
    let session = created[0]["session"].as_str().unwrap().to_owned();
    let at = ["--server", url.as_str(), "--session", session.as_str()];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(at.iter())
            .map(|a| (*a).to_owned())
            .collect()
    };
    let run = |device: &Device, args: &[&str]| {
        let args = with(args);
        device.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let refused = |device: &Device, args: &[&str]| {
        let args = with(args);
        device.refused(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The mediator's device stays up (to let the claimant in), and their
    // commands, paths included, go through it.
    let _daemon = mediator.daemon(&url);
    let link = run(
        &mediator,
        &[
            "invite",
            "--party",
            "Claimant",
            "--name",
            "Ms Claimant",
            "--auto-admit",
        ],
    );
    claimant.run(&["join", link[0]["link"].as_str().unwrap(), "--wait", "30"]);

    // The claimant sends a report (three chunks) for the mediator only.
    let report = bytes(2 * 65536 + 4321, 1);
    let report_path = files.path().join("report.pdf");
    std::fs::write(&report_path, &report).unwrap();
    let sent = run(
        &claimant,
        &[
            "file",
            "send",
            &report_path.display().to_string(),
            "--title",
            "Expert report",
        ],
    );
    assert_eq!(sent[0]["sharing"], "mediator_only");
    assert_eq!(sent[0]["document"]["media_type"], "application/pdf");
    let message = sent[0]["document_sent"].as_str().unwrap().to_owned();

    // A file over the limit is refused in words, before anything is sent.
    let big = files.path().join("scans.zip");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(63_200_000)
        .unwrap();
    let said = refused(&claimant, &["file", "send", &big.display().to_string()]);
    assert!(
        said.contains("scans.zip is 63.2 MB; documents can be at most 50 MB"),
        "{said}"
    );

    // The mediator sees it, and saves it checked.
    let listed = run(&mediator, &["file", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["file"], message.as_str());
    assert_eq!(listed[0]["document"]["title"], "Expert report");
    assert_eq!(listed[0]["document"]["size"], report.len());
    assert_eq!(listed[0]["sender_name"], "Ms Claimant");
    let saved_path = files.path().join("saved.pdf");
    let saved = run(
        &mediator,
        &[
            "file",
            "get",
            &message,
            "--out",
            &saved_path.display().to_string(),
        ],
    );
    assert_eq!(saved[0]["saved"], saved_path.display().to_string());
    assert_eq!(std::fs::read(&saved_path).unwrap(), report);
    // Kept on the device as the relay's sealed chunks, not as the file.
    let kept = mediator.path().join("documents").join(&session);
    let sealed: Vec<u8> = std::fs::read_dir(&kept)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .flat_map(|c| std::fs::read(c.unwrap().path()).unwrap())
        .collect();
    assert!(!sealed.is_empty());
    assert!(!sealed.windows(64).any(|w| w == &report[..64]));

    // Mediator only: carried only once its author consents.
    let said = refused(
        &mediator,
        &["file", "carry", &message, "--to", "Respondent"],
    );
    assert!(said.contains("consent"), "{said}");
    run(&claimant, &["consent", "--message", &message]);
    let verbatim = run(
        &mediator,
        &["file", "carry", &message, "--to", "Respondent"],
    );
    assert_eq!(verbatim[0]["mode"], "verbatim");
    let redacted = b"Expert report, redacted: the figures stand.".to_vec();
    let redacted_path = files.path().join("redacted.txt");
    std::fs::write(&redacted_path, &redacted).unwrap();
    let own = run(
        &mediator,
        &[
            "file",
            "carry",
            &message,
            "--to",
            "Respondent",
            "--own",
            &redacted_path.display().to_string(),
            "--title",
            "Report (redacted)",
        ],
    );
    assert_eq!(own[0]["mode"], "reframed");
    let copy = own[0]["message"].as_str().unwrap();
    let copy_path = files.path().join("copy.txt");
    run(
        &mediator,
        &[
            "file",
            "get",
            copy,
            "--out",
            &copy_path.display().to_string(),
        ],
    );
    assert_eq!(std::fs::read(&copy_path).unwrap(), redacted);

    // The author sees both receipts.
    let heard = run(&claimant, &["listen"]);
    let shared = heard.iter().filter(|l| l["event"] == "shared").count();
    assert_eq!(shared, 2, "{heard:?}");

    // Erasing the session removes the kept copies.
    run(&mediator, &["erase"]);
    assert!(!kept.exists());
    drop(relay);
}
