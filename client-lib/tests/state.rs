//! The state directory keeps secrets readable by the owner only.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_client::StateDir;

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
        Err(caucus_client::ClientError::Usage(_))
    ));
    drop(first);
    assert!(StateDir::open(root.path()).is_ok());
}
