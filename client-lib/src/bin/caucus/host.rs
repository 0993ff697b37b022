//! Who runs a command. One process holds a state directory (its lock) and
//! its connection: this one, or a `caucus daemon`, `caucus listen --follow`
//! or `caucus join` already running, which serves the others over `daemon.sock` in
//! the state directory: JSON-RPC 2.0, one object per line, each of the
//! command's output records a notification `output` before the response.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caucus_client::{Client, ClientError, Event, StateDir, Tls};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};

use crate::output::{self, Record};
use crate::{AgreementCommand, Command, Failure, commands, demo};

/// The socket's name in the state directory.
const SOCKET: &str = "daemon.sock";

/// How long a command waits for another short-lived command that holds the
/// state directory.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// How many events a slow reader may fall behind before it re-reads the
/// history instead.
const EVENT_BACKLOG: usize = 4096;

/// Where a command's output records go.
pub(crate) type Out = mpsc::UnboundedSender<Record>;

/// The process holding a state directory: its client, and its events for
/// every reader.
pub(crate) struct Host {
    pub(crate) client: Client,
    pub(crate) state: PathBuf,
    events: broadcast::Sender<Event>,
    /// The receiver subscribed before the client's first events (those of
    /// catching up), for the first reader.
    first: Mutex<Option<broadcast::Receiver<Event>>>,
}

/// How this process was asked to run.
pub(crate) struct Options {
    /// The state directory.
    pub state: PathBuf,
    /// `--json`.
    pub json: bool,
    /// `--ca-cert`: a certificate authority to trust besides the system's.
    pub ca_cert: Option<PathBuf>,
}

/// Open the state directory: encrypted with `CAUCUS_PASSPHRASE` if it is
/// set, or with a passphrase asked at the terminal if the directory turns
/// out to be encrypted.
fn open_dir(state: &Path) -> Result<StateDir, ClientError> {
    if let Some(passphrase) = std::env::var_os("CAUCUS_PASSPHRASE") {
        return StateDir::open_encrypted(state, passphrase.as_encoded_bytes());
    }
    match StateDir::open(state) {
        Err(ClientError::PassphraseNeeded) if std::io::stdin().is_terminal() => {
            let passphrase = zeroize::Zeroizing::new(rpassword::prompt_password(
                "passphrase for this device's state: ",
            )?);
            StateDir::open_encrypted(state, passphrase.as_bytes())
        }
        other => other,
    }
}

impl Host {
    async fn open(dir: StateDir, relay: &str, tls: Tls) -> Result<Arc<Self>, ClientError> {
        let state = dir.path().to_owned();
        let client = Client::open_with(dir, relay, tls).await?;
        let (events, first) = broadcast::channel(EVENT_BACKLOG);
        let host = Arc::new(Self {
            client,
            state,
            events,
            first: Mutex::new(Some(first)),
        });
        let pump = host.clone();
        tokio::spawn(async move {
            while let Some(event) = pump.client.next_event().await {
                // No reader at the moment is fine: history is kept anyway.
                let _ = pump.events.send(event);
            }
        });
        Ok(host)
    }

    /// Every event from now on (the first reader also gets those that came
    /// while the client caught up).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    /// Serve other `caucus` commands on the state directory's socket for as
    /// long as this process runs.
    fn serve(self: &Arc<Self>) -> Result<(), ClientError> {
        let path = self.state.join(SOCKET);
        // This process holds the directory's lock: a socket left there is
        // a dead process's.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(&path)?;
        let host = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(host.clone(), stream));
            }
        });
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.state.join(SOCKET));
    }
}

/// Run `command` where the state directory is held, printing its records.
pub(crate) async fn run(options: Options, command: Command) -> Result<(), Failure> {
    let Options {
        state,
        json: json_mode,
        ca_cert,
    } = options;
    match &command {
        Command::Agreement {
            command: AgreementCommand::Verify { file },
        } => return print_all(json_mode, commands::verify(file)).await,
        Command::Demo { server } => return Ok(demo::run(server, json_mode).await?),
        _ => {}
    }
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    let dir = loop {
        if let Ok(stream) = UnixStream::connect(state.join(SOCKET)).await {
            if let Command::Daemon { .. } = command {
                return Err(Failure::Daemon(format!(
                    "a caucus process is already serving {}",
                    state.display()
                )));
            }
            return ask(stream, &command, json_mode).await;
        }
        match open_dir(&state) {
            Ok(dir) => break dir,
            Err(ClientError::Busy) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(ClientError::Busy) => {
                return Err(Failure::Daemon(format!(
                    "another caucus process is using {}: run `caucus daemon` there so that commands can share it",
                    state.display()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let relay = match command.relay()? {
        Some(relay) => relay,
        // Only this device's identity is asked for.
        None => return print_all(json_mode, commands::identity(&dir, &command)).await,
    };
    let tls = match &ca_cert {
        Some(file) => Tls::with_ca_file(file)?,
        None => Tls::default(),
    };
    let host = Host::open(dir, &relay, tls).await?;
    // A command that runs a while serves the others meanwhile.
    let serves = matches!(
        command,
        Command::Daemon { .. } | Command::Listen { follow: true, .. } | Command::Join { .. }
    );
    if serves {
        host.serve()?;
    }
    let (out, records) = mpsc::unbounded_channel();
    let printing = tokio::spawn(print_records(json_mode, records));
    let result = tokio::select! {
        r = commands::execute(&host, command, out) => r,
        () = stopped(), if serves => Ok(()),
    };
    let _ = printing.await;
    drop(host);
    result
}

/// SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

async fn print_records(json_mode: bool, mut records: mpsc::UnboundedReceiver<Record>) {
    while let Some(record) = records.recv().await {
        output::print(json_mode, &record);
    }
}

async fn print_all(json_mode: bool, records: Result<Vec<Record>, Failure>) -> Result<(), Failure> {
    for record in records? {
        output::print(json_mode, &record);
    }
    Ok(())
}

/// Ask the process holding the state directory to run `command`, printing
/// its records as they come.
async fn ask(stream: UnixStream, command: &Command, json_mode: bool) -> Result<(), Failure> {
    let (read, mut write) = stream.into_split();
    let call = serde_json::to_value(command).map_err(|e| Failure::Daemon(e.to_string()))?;
    let request = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": call["method"],
        "params": call.get("params").cloned().unwrap_or_else(|| json!({})),
    });
    write.write_all(format!("{request}\n").as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let gone = || Failure::Daemon("the caucus process holding the state directory stopped".into());
    loop {
        let line = lines.next_line().await?.ok_or_else(gone)?;
        let message: Value =
            serde_json::from_str(&line).map_err(|e| Failure::Daemon(e.to_string()))?;
        if message.get("id").is_none() {
            if let Ok(record) = serde_json::from_value::<Record>(message["params"].clone()) {
                output::print(json_mode, &record);
            }
            continue;
        }
        return match message.get("error") {
            Some(error) => Err(Failure::Daemon(
                error["message"].as_str().unwrap_or("failed").to_owned(),
            )),
            None => Ok(()),
        };
    }
}

/// JSON-RPC error codes: the specification's, and one for a command that
/// failed.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const COMMAND_FAILED: i64 = 1;

/// Answer one connection's requests, in turn.
async fn answer(host: Arc<Host>, stream: UnixStream) {
    let (read, write) = stream.into_split();
    let (lines_tx, mut lines_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut write = write;
        while let Some(line) = lines_rx.recv().await {
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (id, result) = match parse_request(&line) {
            Ok((id, command)) => {
                let (out, mut records) = mpsc::unbounded_channel::<Record>();
                let forward = {
                    let lines_tx = lines_tx.clone();
                    tokio::spawn(async move {
                        while let Some(record) = records.recv().await {
                            let note =
                                json!({"jsonrpc": "2.0", "method": "output", "params": record});
                            if lines_tx.send(format!("{note}\n")).is_err() {
                                break;
                            }
                        }
                    })
                };
                let result = tokio::select! {
                    r = commands::execute(&host, command, out) => r,
                    // The asker went away (a `listen --follow` stopped).
                    () = lines_tx.closed() => break,
                };
                let _ = forward.await;
                (id, result.map_err(|e| (COMMAND_FAILED, output::error(&e))))
            }
            Err((id, code, message)) => (id, Err((code, message))),
        };
        // A request without an id is a notification: it is run, and its
        // output sent, but it is not answered.
        let Some(id) = id else { continue };
        let response = match result {
            Ok(()) => json!({"jsonrpc": "2.0", "id": id, "result": true}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        };
        if lines_tx.send(format!("{response}\n")).is_err() {
            break;
        }
    }
    drop(lines_tx);
    let _ = writer.await;
}

/// A JSON-RPC request as its id (none for a notification) and command, or
/// the error to answer.
type Parsed = Result<(Option<Value>, Command), (Option<Value>, i64, String)>;

fn parse_request(line: &str) -> Parsed {
    let request: Value = serde_json::from_str(line)
        .map_err(|e| (Some(Value::Null), PARSE_ERROR, format!("not JSON: {e}")))?;
    let id = request.get("id").cloned();
    let refuse = |code: i64, why: String| (id.clone(), code, why);
    if request.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(refuse(INVALID_REQUEST, "not a JSON-RPC 2.0 request".into()));
    }
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(INVALID_REQUEST, "no method".into()))?;
    let known = <crate::Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .any(|c| c.get_name() == method);
    if !known {
        return Err(refuse(
            METHOD_NOT_FOUND,
            format!("no such method: {method}"),
        ));
    }
    let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
    // A command without options (`init`) has no params to match.
    let command = serde_json::from_value(json!({"method": method, "params": params}))
        .or_else(|e| serde_json::from_value(json!({"method": method})).map_err(|_| e))
        .map_err(|e| refuse(INVALID_PARAMS, format!("{method}: {e}")))?;
    Ok((id, command))
}
