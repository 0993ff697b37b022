//! Throwaway servers for Caucus's tests: a PostgreSQL server and a
//! nats-server, each started from the installed packages on a free port of
//! 127.0.0.1, in a temporary directory, and stopped and removed when
//! dropped.
//!
//! ```
//! let postgres = caucus_testkit::Postgres::start();
//! // A fresh database, and another on the same server.
//! let (one, two) = (postgres.url().to_owned(), postgres.database());
//! assert!(one.starts_with("postgres://") && one != two);
//! let nats = caucus_testkit::Nats::start();
//! assert!(nats.url().starts_with("nats://127.0.0.1:"));
//! ```
//!
//! It is a crate of its own, used only as a dev-dependency, because the
//! relay's unit tests, its integration tests and the end-to-end tests in
//! `tests/` all need it.
//!
//! - **Binaries**: `initdb`, `postgres` and `psql` are looked for on `PATH`,
//!   else in the highest version's `/usr/lib/postgresql/<version>/bin`
//!   (where Debian's `postgresql` package puts them); `nats-server` on
//!   `PATH`, else in `/usr/sbin`.
//! - **As root** (CI): PostgreSQL refuses to run as root, so the kit runs
//!   `initdb` and the server as the unprivileged user `nobody`, which owns
//!   the server's temporary directory (so the temporary directory must be
//!   one `nobody` can reach, as `/tmp` is). Nothing needs setting up for it.
//! - **An existing server**: with `CAUCUS_TEST_POSTGRES` set to a
//!   `postgres://` URL whose user may create databases, no server is
//!   started; each fresh database is made there (and left there).
//! - **Stopping**: each server runs under a small shell that stops it (and
//!   removes its directory) when the test process lets go of the shell's
//!   standard input: on drop, and also when the process exits, so that a
//!   server shared in a `static` ([`Postgres::shared`]) does not outlive
//!   the tests.
//!
//! [`Cluster`] starts relay nodes as processes of the relay's binary on one
//! of each (docs/cluster.md), sharing the first node's relay key.
//!
//! [`Postgres::start`] and the other plain constructors panic, with the
//! error's message, when the server cannot be had: that is how a test
//! fails. The `try_` forms return the [`Error`].

mod relays;

pub use relays::{Cluster, Node};

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why a server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program is not installed.
    #[error("cannot find `{program}` (looked on PATH and in {looked}): install {install}")]
    Missing {
        /// The program.
        program: &'static str,
        /// Where else it was looked for.
        looked: &'static str,
        /// What to install.
        install: &'static str,
    },
    /// Running something failed.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A program ran but failed, or a server did not come up.
    #[error("{what}:\n{output}")]
    Failed {
        /// What failed.
        what: String,
        /// What it said.
        output: String,
    },
}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let doing = doing.into();
    move |source| Error::Io { doing, source }
}

/// How long a server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a starting server is looked at.
const POLL: Duration = Duration::from_millis(10);

/// Run "$@" (its output to the file "$2") until this shell's standard input
/// closes, then stop it with SIGINT (a fast shutdown for PostgreSQL, a
/// graceful one for nats-server), wait for it, and remove the directory
/// "$1". The shell also ends when the server ends by itself.
const SUPERVISE: &str = r#"
dir=$1 log=$2
shift 2
exec 3<&0
"$@" >>"$log" 2>&1 &
pid=$!
{ read -r _ <&3; kill -INT "$pid" 2>/dev/null; } &
wait "$pid"
status=$?
rm -rf "$dir"
exit "$status"
"#;

/// The user a server runs as, when not as ourselves.
#[derive(Clone, Copy)]
struct User {
    uid: u32,
    gid: u32,
}

impl User {
    /// `nobody`, from /etc/passwd.
    fn nobody() -> Result<Self, Error> {
        let passwd = std::fs::read_to_string("/etc/passwd").map_err(io("reading /etc/passwd"))?;
        passwd
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                match fields.as_slice() {
                    ["nobody", _, uid, gid, ..] => Some(Self {
                        uid: uid.parse().ok()?,
                        gid: gid.parse().ok()?,
                    }),
                    _ => None,
                }
            })
            .ok_or_else(|| Error::Failed {
                what: "running as root, PostgreSQL must run as another user".into(),
                output: "there is no user `nobody` in /etc/passwd".into(),
            })
    }

    fn apply(self, command: &mut Command) -> &mut Command {
        command.uid(self.uid).gid(self.gid)
    }
}

/// A temporary directory, and who should own what runs in it: ourselves,
/// or `nobody` if we are root.
fn workdir(
    prefix: &str,
    as_root_needs_user: bool,
) -> Result<(tempfile::TempDir, Option<User>), Error> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(io("making a temporary directory"))?;
    let owner = std::fs::metadata(dir.path())
        .map_err(io("reading the temporary directory"))?
        .uid();
    if owner != 0 || !as_root_needs_user {
        return Ok((dir, None));
    }
    let user = User::nobody()?;
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid))
        .map_err(io("handing the temporary directory to `nobody`"))?;
    Ok((dir, Some(user)))
}

/// `program` on PATH, else the first of `elsewhere` that exists.
fn find(program: &str, elsewhere: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(elsewhere)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Debian's PostgreSQL binary directories, highest version first.
fn debian_postgres_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// A PostgreSQL program.
fn postgres_program(program: &'static str) -> Result<PathBuf, Error> {
    find(program, debian_postgres_dirs()).ok_or(Error::Missing {
        program,
        looked: "/usr/lib/postgresql/*/bin",
        install: "PostgreSQL: apt-get install postgresql",
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io("finding a free port"))
}

/// A server running under [`SUPERVISE`]: stopped, waited for and removed
/// when dropped.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    fn spawn(
        dir: tempfile::TempDir,
        user: Option<User>,
        program: &Path,
        args: &[&OsStr],
    ) -> Result<Self, Error> {
        let log = dir.path().join("log");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISE)
            .arg("sh")
            .arg(dir.path())
            .arg(&log)
            .arg(program)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(user) = user {
            user.apply(&mut command);
        }
        let mut child = command
            .spawn()
            .map_err(io(format!("starting {}", program.display())))?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            log,
            _dir: dir,
        })
    }

    /// Wait until `ready` says so, failing if the server ends first or
    /// takes too long.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            let ended = self
                .child
                .try_wait()
                .map_err(io(format!("waiting for {what}")))?;
            if ended.is_some() || Instant::now() > deadline {
                return Err(Error::Failed {
                    what: format!("{what} did not start"),
                    output: std::fs::read_to_string(&self.log).unwrap_or_default(),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Run `command`, failing with its output if it fails.
fn run(what: &str, command: &mut Command) -> Result<(), Error> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io(what.to_owned()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Failed {
        what: format!("{what} ({})", output.status),
        output: String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned(),
    })
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    format!("{}/{name}{query}", &base[..end])
}

/// Where the databases are made.
enum Server {
    /// Our own server, and the URL of its `postgres` database.
    Own { _process: Process, admin: String },
    /// `CAUCUS_TEST_POSTGRES`.
    External { admin: String },
}

/// A PostgreSQL server for tests, and a fresh database on it.
pub struct Postgres {
    server: Server,
    psql: PathBuf,
    url: String,
}

impl Postgres {
    /// Start a throwaway server (or use `CAUCUS_TEST_POSTGRES`) and make a
    /// fresh database on it.
    ///
    /// # Panics
    ///
    /// If it cannot: the message says why (e.g. PostgreSQL not installed).
    #[allow(clippy::panic)] // The kit's failures fail the test.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// One server for the whole test process, started on first use. Each
    /// test takes a [`Postgres::database`] of its own from it.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// [`Postgres::start`], returning why not.
    pub fn try_start() -> Result<Self, Error> {
        let psql = postgres_program("psql")?;
        let server = match std::env::var("CAUCUS_TEST_POSTGRES") {
            Ok(admin) => Server::External { admin },
            Err(_) => Self::start_own()?,
        };
        let mut postgres = Self {
            server,
            psql,
            url: String::new(),
        };
        postgres.url = postgres.try_database()?;
        Ok(postgres)
    }

    fn start_own() -> Result<Server, Error> {
        let (initdb, server) = (postgres_program("initdb")?, postgres_program("postgres")?);
        let (dir, user) = workdir("caucus-postgres-", true)?;
        let data = dir.path().join("data");
        let mut command = Command::new(&initdb);
        command
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path());
        if let Some(user) = user {
            user.apply(&mut command);
        }
        run("initdb", &mut command)?;
        let port = free_port()?;
        let (port_arg, socket) = (port.to_string(), dir.path().to_owned());
        let args: [&OsStr; 12] = [
            "-D".as_ref(),
            data.as_os_str(),
            "-k".as_ref(),
            socket.as_os_str(),
            "-p".as_ref(),
            port_arg.as_ref(),
            "-c".as_ref(),
            "listen_addresses=127.0.0.1".as_ref(),
            "-c".as_ref(),
            "fsync=on".as_ref(),
            "-c".as_ref(),
            "max_connections=200".as_ref(),
        ];
        let mut process = Process::spawn(dir, user, &server, &args)?;
        // postgres marks its pid file "ready" once it accepts connections.
        let pid_file = data.join("postmaster.pid");
        process.wait_until("PostgreSQL", || {
            std::fs::read_to_string(&pid_file)
                .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|s| s.trim() == "ready"))
        })?;
        Ok(Server::Own {
            _process: process,
            admin: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        })
    }

    /// The URL of the fresh database made by [`Postgres::start`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Make a further fresh database on the same server, and give its URL.
    ///
    /// # Panics
    ///
    /// If it cannot, saying why.
    #[allow(clippy::panic)] // The kit's failures fail the test.
    pub fn database(&self) -> String {
        self.try_database().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Postgres::database`], returning why not.
    pub fn try_database(&self) -> Result<String, Error> {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let admin = match &self.server {
            Server::Own { admin, .. } | Server::External { admin } => admin,
        };
        // Unique on a shared server too: the process, the time, a count.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "caucus_test_{}_{nanos}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        run(
            "creating a test database",
            Command::new(&self.psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-c"])
                .arg(format!("CREATE DATABASE {name}")),
        )?;
        Ok(with_database(admin, &name))
    }
}

/// A nats-server for tests.
pub struct Nats {
    _process: Process,
    url: String,
}

impl Nats {
    /// Start a throwaway nats-server.
    ///
    /// # Panics
    ///
    /// If it cannot: the message says why (e.g. nats-server not installed).
    #[allow(clippy::panic)] // The kit's failures fail the test.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Nats::start`], returning why not.
    pub fn try_start() -> Result<Self, Error> {
        let server = find("nats-server", [PathBuf::from("/usr/sbin")]).ok_or(Error::Missing {
            program: "nats-server",
            looked: "/usr/sbin",
            install: "nats-server: apt-get install nats-server",
        })?;
        let (dir, _) = workdir("caucus-nats-", false)?;
        let port = free_port()?;
        let port_arg = port.to_string();
        let mut process = Process::spawn(
            dir,
            None,
            &server,
            &[
                "-a".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port_arg.as_ref(),
            ],
        )?;
        // A NATS server greets every client with an INFO line.
        process.wait_until("nats-server", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|stream| {
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO")
            })
        })?;
        Ok(Self {
            _process: process,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn psql(url: &str, sql: &str) -> String {
        let output = Command::new(postgres_program("psql").unwrap())
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn each_database_is_fresh_and_separate() {
        let postgres = Postgres::shared();
        let (one, two) = (postgres.url(), postgres.database());
        psql(one, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
        assert_eq!(psql(one, "SELECT count(*) FROM t"), "1");
        assert_eq!(
            psql(&two, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
            "0"
        );
        assert_eq!(psql(&two, "SHOW fsync"), "on");
    }

    #[test]
    fn a_dropped_server_is_stopped_and_removed() {
        let postgres = Postgres::start();
        let Server::Own {
            _process: process, ..
        } = &postgres.server
        else {
            return; // CAUCUS_TEST_POSTGRES: not ours to stop.
        };
        let dir = process.log.parent().unwrap().to_owned();
        let url = postgres.url().to_owned();
        assert!(dir.exists());
        drop(postgres);
        assert!(!dir.exists());
        let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
        assert!(TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
    }

    #[test]
    fn a_nats_server_greets_and_stops() {
        let nats = Nats::start();
        let addr = nats.url().trim_start_matches("nats://").to_owned();
        let mut line = String::new();
        BufReader::new(TcpStream::connect(&addr).unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("INFO"));
        drop(nats);
        assert!(TcpStream::connect(&addr).is_err());
    }

    #[test]
    fn a_url_names_another_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5/db?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
