//! A document through the relay: the time to add a file of `--document-mib`
//! MiB (read and hashed, sealed, uploaded chunk by chunk with each chunk
//! committed durably, then posted) and to save it on another device
//! (downloaded, every chunk opened, the SHA-256 checked, written), with the
//! native client (`caucus-client`) and the Caucus relay as a child process;
//! against copying the same file over a plain websocket on the same machine
//! (64 KiB binary frames written to a file and synced at the far end, then
//! read back and written).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow};
use caucus_client::{Admission, Client, Event, StateDir};
use caucus_protocol::content::Sharing;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::procs::{Bins, Kind, Relay};

/// One measurement: MiB per second each way.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Transfer {
    pub(crate) mib: u64,
    pub(crate) caucus_upload_mib_s: f64,
    pub(crate) caucus_download_mib_s: f64,
    pub(crate) plain_upload_mib_s: f64,
    pub(crate) plain_download_mib_s: f64,
}

/// A file of `mib` MiB that does not compress.
fn write_file(path: &Path, mib: u64) -> anyhow::Result<()> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, bytes)?;
    Ok(())
}

fn rate(mib: u64, since: Instant) -> f64 {
    mib as f64 / since.elapsed().as_secs_f64()
}

pub(crate) async fn measure(bins: &Bins, scratch: &Path, mib: u64) -> anyhow::Result<Transfer> {
    let dir = scratch.join("documents");
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("bundle.pdf");
    write_file(&source, mib)?;
    let (caucus_upload_mib_s, caucus_download_mib_s) =
        through_caucus(bins, &dir, &source, mib).await?;
    let (plain_upload_mib_s, plain_download_mib_s) = plain_websocket(&dir, &source, mib).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Transfer {
        mib,
        caucus_upload_mib_s,
        caucus_download_mib_s,
        plain_upload_mib_s,
        plain_download_mib_s,
    })
}

async fn through_caucus(
    bins: &Bins,
    dir: &Path,
    source: &Path,
    mib: u64,
) -> anyhow::Result<(f64, f64)> {
    let relay = Relay::start(Kind::Caucus, bins, dir).await?;
    let result = async {
        let state = |name: &str| -> anyhow::Result<StateDir> {
            let path = dir.join(name);
            std::fs::create_dir_all(&path)?;
            Ok(StateDir::open(path)?)
        };
        let mediator = Client::open(state("mediator")?, &relay.url).await?;
        let (session, parties) = mediator
            .create_session("The mediator", &["Claimant"])
            .await?;
        let link = mediator
            .invite(
                &session,
                &parties[0],
                "Ms C",
                caucus_client::now() + 3600,
                Admission::Automatic,
            )
            .await?;
        let (claimant, _) = Client::join(state("claimant")?, &link).await?;
        loop {
            match mediator.next_event().await {
                Some(Event::Admitted { .. }) => break,
                Some(_) => {}
                None => return Err(anyhow!("the mediator's client stopped")),
            }
        }
        claimant.sync(&session).await?;
        let room = claimant.my_room(&session)?;
        let started = Instant::now();
        let sent = claimant
            .send_document(
                &session,
                &room,
                source,
                Some("Trial bundle"),
                Sharing::MayShare,
            )
            .await?;
        let upload = rate(mib, started);
        mediator.sync(&session).await?;
        let out = dir.join("saved.pdf");
        let started = Instant::now();
        mediator
            .save_document(&session, &sent.message, &out)
            .await?;
        let download = rate(mib, started);
        anyhow::ensure!(
            std::fs::metadata(&out)?.len() == mib * 1024 * 1024,
            "the saved copy has the wrong size"
        );
        Ok((upload, download))
    }
    .await;
    relay.stop().await;
    result
}

/// The same file over a plain websocket: 64 KiB binary frames to a server in
/// this process that writes them to a file and syncs it, then back.
async fn plain_websocket(dir: &Path, source: &Path, mib: u64) -> anyhow::Result<(f64, f64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stored = dir.join("plain-stored");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut ws = tokio_tungstenite::accept_async(tcp).await?;
        let mut file = tokio::fs::File::create(&stored).await?;
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Binary(b) => file.write_all(&b).await?,
                Message::Text(t) if t.as_str() == "end" => {
                    file.sync_all().await?;
                    ws.send(Message::text("done")).await?;
                }
                Message::Text(t) if t.as_str() == "get" => {
                    send_file(&mut ws, &stored).await?;
                }
                _ => {}
            }
        }
        anyhow::Ok(())
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}")).await?;
    let started = Instant::now();
    send_file(&mut ws, source).await?;
    wait_for_text(&mut ws, "done").await?;
    let upload = rate(mib, started);
    let started = Instant::now();
    ws.send(Message::text("get")).await?;
    let mut out = tokio::fs::File::create(dir.join("plain-saved")).await?;
    loop {
        match ws.next().await.context("the plain server hung up")?? {
            Message::Binary(b) => out.write_all(&b).await?,
            Message::Text(t) if t.as_str() == "end" => break,
            _ => {}
        }
    }
    out.flush().await?;
    let download = rate(mib, started);
    drop(ws);
    server.abort();
    Ok((upload, download))
}

/// The file at `path` as 64 KiB binary frames, then the text frame `end`.
async fn send_file<S>(ws: &mut S, path: &Path) -> anyhow::Result<()>
where
    S: SinkExt<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let mut f = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        ws.feed(Message::binary(buf[..n].to_vec())).await?;
    }
    ws.send(Message::text("end")).await?;
    Ok(())
}

async fn wait_for_text<S>(ws: &mut S, want: &str) -> anyhow::Result<()>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await.context("the plain server hung up")?? {
            Message::Text(t) if t.as_str() == want => return Ok(()),
            _ => {}
        }
    }
}
