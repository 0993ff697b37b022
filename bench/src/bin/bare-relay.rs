//! `bare-relay`: the ceiling of the Caucus stack for the benchmark. The same
//! tokio and tokio-tungstenite, the same websocket buffer settings and the
//! same writer as the Caucus relay, routing the same fan-out, with no
//! authentication, no store, no cryptography and no acknowledgements.
//! Framing: `caucus_bench::bare`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use caucus_bench::bare::{Frame, parse};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
#[command(about = "The bare websocket relay baseline of the Caucus benchmark")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: String,
}

type Outbox = mpsc::Sender<Arc<str>>;

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Vec<(u64, Outbox)>>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    println!("bare-relay listening on ws://{}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    let ids = AtomicU64::new(1);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let id = ids.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(stream, id, rooms.clone()));
            }
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, id: u64, rooms: Arc<Rooms>) {
    // The Caucus relay's websocket settings.
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(2 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(1024);
    let mut followed: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                // Write what is queued in one go, as the Caucus relay does.
                if sink.feed(Message::text(frame.as_ref())).await.is_err() {
                    break;
                }
                let mut failed = false;
                while let Ok(more) = rx.try_recv() {
                    if sink.feed(Message::text(more.as_ref())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || sink.flush().await.is_err() {
                    break;
                }
            }
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => match parse(text.as_str()) {
                    Some(Frame::Subscribe(list)) => {
                        let mut map = rooms.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        for room in list {
                            map.entry(room.to_owned()).or_default().push((id, tx.clone()));
                            followed.push(room.to_owned());
                        }
                        let _ = tx.try_send("K".into());
                    }
                    Some(Frame::Publish { room, payload }) => {
                        let frame: Arc<str> = payload.into();
                        let map = rooms.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        for (other, outbox) in map.get(room).into_iter().flatten() {
                            if *other != id {
                                let _ = outbox.try_send(frame.clone());
                            }
                        }
                    }
                    None => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    let mut map = rooms
        .rooms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for room in followed {
        if let Some(list) = map.get_mut(&room) {
            list.retain(|(other, _)| *other != id);
        }
    }
}
