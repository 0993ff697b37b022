//! A whole three-party mediation through the `caucus` command alone, as a
//! mediator and three GP partners would run it: the mediator keeps `caucus
//! listen --follow` running from start to finish, and every other command
//! of theirs reaches the state directory through it. Every JSON line any
//! command prints, and every JSON-RPC line read from the daemon, is checked
//! against `docs/cli-json.schema.json`.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod json_schema;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--json".into(),
            "--state".into(),
            self.path().display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    }

    /// Run a command; its output, whether it succeeded or not.
    fn try_run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_caucus"))
            .args(self.args(args))
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
        json_lines(&String::from_utf8(out.stdout).unwrap())
    }

    /// Start a long-running command, its stdout to a file (and its stderr
    /// beside it).
    fn spawn(&self, args: &[&str], out: &Path) -> Running {
        Running(
            Command::new(env!("CARGO_BIN_EXE_caucus"))
                .args(self.args(args))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
                .spawn()
                .unwrap(),
        )
    }
}

/// A child process, killed if the test ends first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `ready` holds, checking every 100 ms, for up to 30 s.
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every line of a command's finished output, each checked against the
/// schema.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let line = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            json_schema::check_line(&line);
            line
        })
        .collect()
}

/// The whole lines of a file a running command writes to, so far.
fn lines_of(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Ask the process holding `state` over its socket, as an integrator's
/// script would; every line it answers.
fn rpc(state: &Path, request: &Value) -> Vec<Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(state.join("daemon.sock")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut answers = Vec::new();
    for line in BufReader::new(stream).lines() {
        let value: Value = serde_json::from_str(&line.unwrap()).unwrap();
        json_schema::check_rpc(&value);
        let done = value.get("id").is_some();
        answers.push(value);
        if done {
            break;
        }
    }
    answers
}

#[test]
fn a_three_party_mediation_runs_start_to_finish_through_the_command_line_alone() {
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
    let work: PathBuf = relay_dir.path().join("out");
    std::fs::create_dir_all(&work).unwrap();

    let mediator = Device::new();
    let partners = [Device::new(), Device::new(), Device::new()];
    let names = ["Dr Adeyemi", "Dr Brennan", "Dr Chowdhury"];
    let labels = ["Partner A", "Partner B", "Partner C"];

    let created = mediator.run(&[
        "session",
        "create",
        "--server",
        &url,
        "--name",
        "Ms Mediator",
        "--party",
        labels[0],
        "--party",
        labels[1],
        "--party",
        labels[2],
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
    let try_run = |device: &Device, args: &[&str]| {
        let args = with(args);
        device.try_run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // The mediator's client runs from here to the end.
    let followed = work.join("mediator-follow.jsonl");
    let mut follow = mediator.spawn(
        &with(&["listen", "--follow"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &followed,
    );
    eventually("the mediator's socket", || {
        mediator.path().join("daemon.sock").exists()
    });

    // Each partner opens their link and waits; the mediator compares safety
    // codes and lets them in.
    for ((partner, name), label) in partners.iter().zip(names).zip(labels) {
        let link = run(&mediator, &["invite", "--party", label, "--name", name]);
        let link = link[0]["link"].as_str().unwrap().to_owned();
        let joined = work.join(format!("{name}-join.jsonl"));
        let mut joining = partner.spawn(&["join", &link, "--wait", "60"], &joined);
        let mut knocker = Value::Null;
        eventually("the partner in the waiting room", || {
            let waiting = run(&mediator, &["waiting"]);
            knocker = waiting
                .into_iter()
                .find(|w| w["name"] == name)
                .unwrap_or(Value::Null);
            !knocker.is_null()
        });
        let mine = partner.run(&["whoami"]);
        assert_eq!(
            knocker["safety_code"], mine[0]["safety_code"],
            "the code to compare"
        );
        run(
            &mediator,
            &["admit", knocker["safety_code"].as_str().unwrap()],
        );
        assert!(joining.0.wait().unwrap().success());
        let joined = json_lines(&std::fs::read_to_string(&joined).unwrap());
        assert!(joined.iter().any(|l| l["joined"] == json!(session)));
    }
    // A party cannot do the mediator's work, and is told so in words.
    let refused = try_run(&partners[0], &["phase", "negotiation"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only the mediator"));

    // Private meetings: each partner writes in confidence.
    let said: Vec<String> = partners
        .iter()
        .zip([
            "I carried the on-call rota for two years.",
            "The accounts were never shared.",
            "I want to retire in March.",
        ])
        .map(|(p, text)| {
            let sent = run(p, &["send", text]);
            sent[0]["message"].as_str().unwrap().to_owned()
        })
        .collect();
    run(&partners[2], &["consent", "--message", &said[2]]);
    eventually("the consent at the mediator", || {
        lines_of(&followed).iter().any(|l| l["event"] == "consent")
    });
    let carried = run(
        &mediator,
        &["forward", "--message", &said[2], "--to", labels[0]],
    );
    assert!(
        carried[0]["message"].is_string(),
        "forward names the carried copy"
    );
    let refused = try_run(
        &mediator,
        &["forward", "--message", &said[0], "--to", labels[1]],
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("consent"));
    // Reframed or not, mediator-only words cross only with their author's
    // consent.
    run(&partners[0], &["consent", "--message", &said[0]]);
    eventually("the second consent at the mediator", || {
        lines_of(&followed)
            .iter()
            .filter(|l| l["event"] == "consent")
            .count()
            == 2
    });
    run(
        &mediator,
        &[
            "forward",
            "--message",
            &said[0],
            "--to",
            labels[1],
            "--reframe",
            "Partner A feels the rota fell on them.",
        ],
    );

    // The gates: every partner agrees to continue, then to meet.
    run(&mediator, &["phase", "individual-meetings"]);
    run(&partners[0], &["agree", "continue"]);
    run(&partners[1], &["agree", "continue"]);
    let missing = run(&mediator, &["not-agreed", "continue"]);
    assert_eq!(missing[0]["not_agreed"], json!(["Partner C"]));
    let refused = try_run(&mediator, &["phase", "negotiation"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Partner C has not agreed yet"));
    run(&partners[2], &["agree", "continue"]);
    for p in &partners {
        run(p, &["agree", "joint-meeting"]);
    }
    run(&mediator, &["phase", "negotiation"]);
    run(&mediator, &["joint", "open"]);
    run(&mediator, &["location", "joint"]);
    run(
        &partners[1],
        &["send", "--room", "joint", "Let's settle the rota first."],
    );

    // Offers, carried and restated by the mediator.
    let offer = run(
        &partners[0],
        &[
            "offer",
            "--amount",
            "80000",
            "--terms",
            "Buy-out of Dr C's share",
        ],
    );
    let offer_id = offer[0]["message"].as_str().unwrap().to_owned();
    let bad = try_run(&partners[0], &["offer", "--amount", "1.555"]);
    assert!(!bad.status.success(), "three decimals in pounds");
    run(
        &mediator,
        &[
            "forward",
            "--message",
            &offer_id,
            "--to",
            labels[2],
            "--amount",
            "82000",
        ],
    );
    let log = run(&partners[2], &["offers"]);
    assert!(log.iter().any(|e| e["direction"] == "received"));
    let received = log.iter().find(|e| e["direction"] == "received").unwrap();
    run(
        &partners[2],
        &[
            "offer",
            "--amount",
            "95000",
            "--counter-to",
            received["message"].as_str().unwrap(),
        ],
    );
    // One the mediator records for a party, at its request: the party's log
    // says so.
    run(
        &mediator,
        &["offer", "--for", labels[2], "--terms", "Costs shared"],
    );
    let log = run(&partners[2], &["offers"]);
    let recorded: Vec<bool> = log
        .iter()
        .map(|e| e["recorded_by_mediator"].as_bool().unwrap())
        .collect();
    assert_eq!(recorded, [false, false, true], "{log:?}");

    // The agreement: proposed, signed by every partner, countersigned.
    run(&mediator, &["phase", "agreement"]);
    let terms = "1. Dr Chowdhury retires on 31 March.\n2. Drs Adeyemi and Brennan pay GBP 85,000 within 28 days.";
    let proposed = run(
        &mediator,
        &[
            "agreement",
            "propose",
            "--title",
            "Partnership agreement",
            "--terms",
            terms,
            "--question",
            "Does the rota work from April?",
        ],
    );
    assert!(proposed[0]["proposed"].is_string());
    for (i, p) in partners.iter().enumerate() {
        let early = try_run(&mediator, &["agreement", "countersign"]);
        assert!(!early.status.success(), "not before partner {i} signs");
        assert!(String::from_utf8_lossy(&early.stderr).contains("still to sign"));
        run(p, &["agreement", "sign"]);
    }
    run(&mediator, &["agreement", "countersign"]);
    for (p, name) in partners.iter().zip(names) {
        eventually("the signed copy", || {
            p.try_run(
                &with(&["agreement", "export"])
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )
            .status
            .success()
        });
        // Exported as a person would: `caucus agreement export > copy.md`.
        let printed = Command::new(env!("CARGO_BIN_EXE_caucus"))
            .args(["--state", &p.path().display().to_string()])
            .args(with(&["agreement", "export"]))
            .output()
            .unwrap();
        assert!(printed.status.success());
        let copy = work.join(format!("{name}.md"));
        std::fs::write(&copy, &printed.stdout).unwrap();
        let exported = run(p, &["agreement", "export"]);
        assert_eq!(
            exported[0]["export"].as_str().unwrap().trim_end(),
            String::from_utf8(printed.stdout).unwrap().trim_end(),
            "the same document with or without --json"
        );
        let verified = p.run(&["agreement", "verify", &copy.display().to_string()]);
        assert_eq!(verified[0]["valid"], json!(true));
        // The readable terms changed: refused.
        let tampered = work.join(format!("{name}-tampered.md"));
        let text = std::fs::read_to_string(&copy)
            .unwrap()
            .replace("85,000", "58,000");
        std::fs::write(&tampered, text).unwrap();
        let out = p.try_run(&["agreement", "verify", &tampered.display().to_string()]);
        assert!(!out.status.success(), "a changed sum in the readable terms");
    }

    // An integrator's script speaks JSON-RPC to the same process.
    let answers = rpc(
        mediator.path(),
        &json!({"jsonrpc": "2.0", "id": 7, "method": "parties", "params": {"server": url, "session": session}}),
    );
    let (done, notes) = answers.split_last().unwrap();
    assert_eq!(done["id"], json!(7));
    assert_eq!(done["result"], json!(true));
    assert_eq!(notes.len(), 3);
    assert!(
        notes
            .iter()
            .all(|n| n["method"] == "output" && n["params"]["data"]["label"].is_string())
    );
    let bad = rpc(
        mediator.path(),
        &json!({"jsonrpc": "2.0", "id": 8, "method": "no-such-thing"}),
    );
    assert_eq!(bad[0]["error"]["code"], json!(-32601));
    let bad = rpc(
        mediator.path(),
        &json!({"jsonrpc": "2.0", "id": 9, "method": "phase", "params": {"server": url, "session": session, "phase": "sideways"}}),
    );
    assert_eq!(bad[0]["error"]["code"], json!(-32602));
    // Left-out params take the command line's defaults (`valid_hours`).
    let invited = rpc(
        mediator.path(),
        &json!({"jsonrpc": "2.0", "id": 10, "method": "invite",
                "params": {"server": url, "session": session, "party": labels[0], "name": "Dr Adeyemi's deputy"}}),
    );
    assert_eq!(
        invited.last().unwrap()["result"],
        json!(true),
        "{invited:?}"
    );

    // The roster as a script reads it (each line checked by `run`).
    let members = run(&mediator, &["members"]);
    assert_eq!(members.len(), 4);
    assert!(
        members
            .iter()
            .any(|m| m["role"] == "mediator" && m["you"] == json!(true))
    );
    assert_eq!(
        members
            .iter()
            .filter(|m| m["role"] == "party_member" && m["party_label"].is_string())
            .count(),
        3
    );
    let rooms = run(&mediator, &["rooms"]);
    assert!(rooms.iter().any(|r| r["label"] == "joint"));
    run(&partners[0], &["status", "on-break"]);

    // The mediator's `listen --follow` ran throughout and saw each thing once.
    assert!(follow.0.try_wait().unwrap().is_none(), "still running");
    run(&mediator, &["close"]);
    eventually("the close at the mediator", || {
        lines_of(&followed).iter().any(|l| {
            l["event"] == "system" && l["kind"] == "phase_changed" && l["detail"] == "closed"
        })
    });
    drop(follow);
    // Every line it printed, checked against the schema.
    let heard = json_lines(&std::fs::read_to_string(&followed).unwrap());
    for text in [
        "I carried the on-call rota for two years.",
        "The accounts were never shared.",
        "Let's settle the rota first.",
    ] {
        let times = heard
            .iter()
            .filter(|l| l["event"] == "message" && l["text"] == text)
            .count();
        assert_eq!(times, 1, "{text} printed {times} times");
    }
    assert_eq!(
        heard
            .iter()
            .filter(|l| l["event"] == "agreement_signed")
            .count(),
        3
    );
    assert!(heard.iter().any(|l| l["event"] == "knocking"));
    assert!(!heard.iter().any(|l| l["event"] == "warning"), "{heard:?}");
    drop(relay);
}

/// The check above can fail: the schema refuses what the CLI must not
/// print, and takes what it does.
#[test]
fn the_schema_refuses_a_line_that_does_not_match() {
    let schema = json_schema::lines();
    let session = "AAAAAAAAAAAAAAAAAAAAAA";
    let fingerprint = "jzaRPYrBH9SX_WEldmEeCHIRSaRQDh75jsFjp7dYqIk";
    let message = json!({
        "event": "message", "session": session, "room": session, "room_label": "joint",
        "index": 3, "sender": fingerprint, "sender_name": "Dr Brennan",
        "message": fingerprint, "sharing": "may_share", "text": "Let's settle the rota first.",
    });
    assert!(schema.is_valid(&message), "a whole message event");
    assert!(
        !schema.is_valid(&json!({"event": "message"})),
        "fields missing"
    );
    let mut extra = message.clone();
    extra["mood"] = json!("calm");
    assert!(!schema.is_valid(&extra), "a field not in the schema");
    let mut padded = message.clone();
    padded["session"] = json!("AAAAAAAAAAAAAAAAAAAAAA==");
    assert!(!schema.is_valid(&padded), "an id in padded base64");
    let mut sharing = message.clone();
    sharing["sharing"] = json!("may-share");
    assert!(!schema.is_valid(&sharing), "an enum value in kebab case");
    let mut unknown = message;
    unknown["event"] = json!("gossip");
    assert!(!schema.is_valid(&unknown), "an event kind not documented");
    let mut system = json!({
        "event": "system", "session": session, "room": session, "room_label": "joint",
        "what": "the mediation moved to negotiation", "kind": "phase_changed", "detail": "negotiation",
    });
    assert!(schema.is_valid(&system), "a whole system event");
    system["detail"] = json!(null);
    assert!(!schema.is_valid(&system), "a phase change names its phase");
    assert!(!schema.is_valid(&json!({"sent": "3"})), "a result mistyped");
    assert!(schema.is_valid(&json!({"erased": session})));
    assert!(!json_schema::rpc().is_valid(&json!({"jsonrpc": "2.0", "id": 1, "result": false})));
}
