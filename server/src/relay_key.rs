//! The relay's own identity: a device key pair kept in `relay.key` in the
//! data directory (mode 0600), made on first start. It signs the relay's
//! deletion statements; clients see its public half in the login challenge.
//! It is never logged; its fingerprint is.

use std::io::Write;
use std::path::Path;

use caucus_protocol::identity::DeviceKeys;

use crate::server::ServerError;

/// The file name, in the data directory.
const FILE: &str = "relay.key";

/// Load the relay's identity from `dir`, or make and store a new one.
pub(crate) fn load_or_create(dir: &Path) -> Result<DeviceKeys, ServerError> {
    let path = dir.join(FILE);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        ServerError::RelayKey(format!("{}: {what}: {e}", path.display()))
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            return DeviceKeys::from_secret_bytes(&bytes).map_err(|e| fail("unreadable", &e));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("read", &e)),
    }
    let keys = DeviceKeys::generate().map_err(|e| fail("generate", &e))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| fail("create", &e))?;
    file.write_all(&keys.to_secret_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", &e))?;
    Ok(keys)
}
