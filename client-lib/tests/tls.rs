//! The native client over `wss://` against a real relay whose certificate a
//! private certificate authority, made here, issued: trusted with
//! `Tls::with_ca_file`, refused (quickly, saying why) without it or for
//! another host name.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use caucus_client::{Admission, Client, ClientError, Event, StateDir, Tls};
use caucus_protocol::content::Sharing;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A private certificate authority: its PEM file in `dir`, and its issuer.
fn authority(dir: &Path) -> (PathBuf, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, cert.pem()).unwrap();
    (path, Issuer::new(params, key))
}

/// A relay serving TLS with a certificate for `names` that `ca` issued.
async fn relay(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    names: &[&str],
) -> caucus_server::Running {
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    let (cert_path, key_path) = (dir.join("relay.pem"), dir.join("relay.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let data = dir.join("data");
    let running = caucus_server::Server::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert!(
        running.url().starts_with("wss://127.0.0.1:"),
        "{}",
        running.url()
    );
    running
}

fn state(dir: &Path) -> StateDir {
    StateDir::open(dir).unwrap()
}

async fn wait_for(client: &mut Client, want: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match client.next_event().await {
                Some(e) if want(&e) => return e,
                Some(_) => {}
                None => panic!("the client stopped"),
            }
        }
    })
    .await
    .unwrap()
}

/// Open a client on `url` with `tls`: the error, and how long it took.
async fn refused(url: &str, tls: Tls) -> (ClientError, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = Client::open_with(state(dir.path()), url, tls)
        .await
        .err()
        .unwrap();
    (err, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_trusting_the_private_authority_talk_over_wss() {
    let pki = tempfile::tempdir().unwrap();
    let (ca_file, ca) = authority(pki.path());
    let relay = relay(pki.path(), &ca, &["localhost", "127.0.0.1"]).await;
    let tls = Tls::with_ca_file(&ca_file).unwrap();
    let (mediator_dir, claimant_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let mediator = Client::open_with(state(mediator_dir.path()), relay.url(), tls.clone())
        .await
        .unwrap();
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant", "Defendant"])
        .await
        .unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "A. Claimant",
            caucus_client::now() + 3600,
            Admission::Automatic,
        )
        .await
        .unwrap();
    let (mut claimant, joined) = Client::join_with(state(claimant_dir.path()), &link, tls)
        .await
        .unwrap();
    assert_eq!(joined, session);
    wait_for(&mut claimant, |e| matches!(e, Event::Joined { .. })).await;
    claimant.sync(&session).await.unwrap();

    let room = mediator.party_room(&session, &parties[0]).unwrap();
    let said = "Sent over TLS.";
    mediator
        .send(&session, &room, said, Sharing::MayShare)
        .await
        .unwrap();
    match wait_for(&mut claimant, |e| matches!(e, Event::Message { .. })).await {
        Event::Message { text, .. } => assert_eq!(text, said),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_authority_is_refused_at_once() {
    let pki = tempfile::tempdir().unwrap();
    let (_, ca) = authority(pki.path());
    let relay = relay(pki.path(), &ca, &["localhost", "127.0.0.1"]).await;
    // The system's roots only.
    let (err, took) = refused(relay.url(), Tls::default()).await;
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    let said = err.to_string();
    assert_eq!(
        said,
        "the relay's certificate was refused (unknown issuer: if the relay uses a private \
         certificate authority, pass --ca-cert FILE)"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_name_is_refused_saying_so() {
    let pki = tempfile::tempdir().unwrap();
    let (ca_file, ca) = authority(pki.path());
    let relay = relay(pki.path(), &ca, &["relay.invalid"]).await;
    let (err, took) = refused(relay.url(), Tls::with_ca_file(&ca_file).unwrap()).await;
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the relay's certificate was refused (the host name does not match: it is for \
         relay.invalid, not 127.0.0.1)"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_ca_file_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = Tls::with_ca_file(&empty).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "certificate authority {}: no certificate in the file",
            empty.display()
        )
    );
    let missing = dir.path().join("missing.pem");
    let err = Tls::with_ca_file(&missing).err().unwrap();
    assert!(matches!(err, ClientError::CaFile { .. }), "{err:?}");
}

/// The `caucus` command against the same relay: `--ca-cert` makes it
/// trusted; without it the command fails at once, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caucus_command_takes_a_private_authority_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, issuer) = authority(dir.path());
    let running = relay(dir.path(), &issuer, &["127.0.0.1"]).await;
    let url = running.url().to_string();
    let state = dir.path().join("mediator");
    let create = move |ca_cert: Option<PathBuf>| {
        let (url, state) = (url.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_caucus"));
            command.arg("--state").arg(&state);
            if let Some(ca) = ca_cert {
                command.arg("--ca-cert").arg(ca);
            }
            let started = Instant::now();
            let out = command
                .args(["session", "create", "--server", &url, "--party", "Claimant"])
                .env_remove("CAUCUS_CA_CERT")
                .output()
                .unwrap();
            (out, started.elapsed())
        })
    };
    let (out, took) = create.clone()(None).await.unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("certificate was refused"), "{said}");
    assert!(said.contains("--ca-cert"), "{said}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (out, _) = create(Some(ca)).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("session "));
}
