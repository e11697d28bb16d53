//! The serving half: accept connections, require the client's hello before anything else, then
//! answer one request per stream from the [`ChunkSource`](super::ChunkSource).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::config::{FRAME_TIMEOUT, HANDSHAKE_TIMEOUT, HELLO_TIMEOUT};
use super::hello::{self, Role};
use super::stats::Counters;
use super::{io, tls, ChunkSource, Shared, TransferError};
use crate::node::{NodeId, Topology};
use crate::wire::{
    AskItem, Asked, CloseCode, ErrorCode, PeerHint, Request, Response, CHUNK_SIZE,
    MAX_ASK_HASH_BYTES, MAX_PEER_HINTS,
};

/// Accepts connections until shutdown; each is served on its own task.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            incoming = shared.endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { break };
        let s = shared.clone();
        shared
            .tracker
            .spawn(async move { serve_connection(s, incoming).await });
    }
}

fn close(conn: &quinn::Connection, code: CloseCode, reason: &str) {
    conn.close(quinn::VarInt::from_u32(code as u32), reason.as_bytes());
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return debug!(%remote, "handshake failed: {e}"),
        Err(_) => return debug!(%remote, "handshake timed out"),
    };
    let Some(peer) = tls::peer_id(&conn) else {
        return close(&conn, CloseCode::BadHello, "no ed25519 certificate");
    };
    let Some(version) = tls::negotiated_version(&conn) else {
        return close(&conn, CloseCode::BadHello, "no protocol version agreed");
    };
    let hello = server_hello(&shared, &conn, peer, version);
    let topology = match timeout(HELLO_TIMEOUT, hello).await {
        Ok(Ok(topology)) => topology,
        Ok(Err(e)) => {
            warn!(%peer, %remote, "refusing peer: {e}");
            return close(&conn, CloseCode::BadHello, "bad hello");
        }
        Err(_) => return close(&conn, CloseCode::BadHello, "no hello in time"),
    };
    // Who the client is, as peer exchange names it to others: one endpoint both dials and
    // serves, so the address it dials from is the one it serves on.
    let asker = Arc::new(PeerHint {
        node: peer,
        addr: conn.remote_address(),
        topology,
    });
    let counters = shared.stats.get(peer);
    counters.sample(&conn);
    loop {
        let (mut send, mut recv) = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            stream = conn.accept_bi() => match stream {
                Ok(s) => s,
                Err(e) => { debug!(%peer, "connection ended: {e}"); break }
            },
        };
        let (s, c, k, a) = (
            shared.clone(),
            conn.clone(),
            counters.clone(),
            asker.clone(),
        );
        shared.tracker.spawn(async move {
            // The streams outlive the close: dropping a send stream first would finish it cleanly.
            if let Err(e) = serve_stream(&s, &c, &a, &k, &mut send, &mut recv).await {
                if e.is_peer_fault() {
                    warn!(%peer, "closing connection: {e}");
                    close(&c, CloseCode::Protocol, &e.to_string());
                } else {
                    debug!(%peer, "request failed: {e}");
                }
            }
            k.sample(&c);
        });
    }
}

/// Reads the client's hello from the first stream and answers with ours once it verifies;
/// returns the client's topology.
async fn server_hello(
    shared: &Shared,
    conn: &quinn::Connection,
    peer: NodeId,
    version: u16,
) -> Result<Topology, TransferError> {
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| TransferError::connection(peer, e))?;
    let result = hello_exchange(shared, conn, (peer, version), &mut send, &mut recv).await;
    if result.is_err() {
        // Close while the streams live: dropping them first would end them cleanly.
        close(conn, CloseCode::BadHello, "bad hello");
    }
    result
}

async fn hello_exchange(
    shared: &Shared,
    conn: &quinn::Connection,
    (peer, version): (NodeId, u16),
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<Topology, TransferError> {
    let hello = match io::read_frame::<Request>(recv, peer).await? {
        Some((Request::Hello(h), _)) => h,
        _ => {
            return Err(TransferError::BadHello {
                peer,
                reason: "the first request was not a hello".into(),
            })
        }
    };
    hello::check(conn, &shared.hello_key, Role::Client, &hello, peer, version)
        .map_err(|reason| TransferError::BadHello { peer, reason })?;
    let ours = hello::make(
        conn,
        &shared.hello_key,
        Role::Server,
        shared.node,
        &shared.topology,
        version,
    )?;
    io::write_frame(send, peer, &Response::Hello(ours)).await?;
    let _ = send.finish();
    Ok(hello.topology)
}

/// Answers the one request of a stream.
async fn serve_stream(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    asker: &Arc<PeerHint>,
    counters: &Counters,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<(), TransferError> {
    let peer = asker.node;
    let request = match timeout(FRAME_TIMEOUT, io::read_frame::<Request>(recv, peer)).await {
        Err(_) => {
            return Err(TransferError::Timeout {
                what: "reading a request",
                after: FRAME_TIMEOUT,
            })
        }
        Ok(r) => r?,
    };
    let Some((request, size)) = request else {
        return Ok(()); // an empty stream: nothing asked
    };
    counters.received(size);
    let blobs = match &request {
        Request::Have { .. } | Request::Hashes { .. } | Request::Swarm { .. } => 1,
        Request::Ask { items } => items.len() as u64,
        _ => 0,
    };
    if blobs > 0 {
        shared.questions.fetch_add(1, Ordering::Relaxed);
        shared.question_blobs.fetch_add(blobs, Ordering::Relaxed);
    }
    let source = shared.source.clone();
    let response = match request {
        Request::Hello(_) => {
            close(conn, CloseCode::Protocol, "a second hello");
            return Ok(());
        }
        Request::Manifest { kind, repo, commit } => {
            blocking(move || source.manifest(kind, &repo, &commit))
                .await
                .map(Response::Manifest)
        }
        Request::Have { etag } => blocking(move || source.have(&etag))
            .await
            .map(Response::Have),
        Request::Hashes { etag } => blocking(move || source.chunk_hashes(&etag))
            .await
            .map(Response::Hashes),
        Request::Holdings => blocking(move || source.holdings())
            .await
            .map(Response::Holdings),
        Request::Swarm { etag, listed } => {
            let asker = asker.clone();
            blocking(move || source.swarm(&etag, &asker, listed))
                .await
                .map(|(have, mut others)| {
                    others.truncate(MAX_PEER_HINTS);
                    Response::Swarm { have, others }
                })
        }
        Request::Ask { items } => {
            let asker = asker.clone();
            blocking(move || Response::Ask(answer_ask(&*source, &asker, items))).await
        }
        Request::Chunks { etag, first, count } => {
            // Held until the peer has every byte: a slot is a request on the wire.
            let Ok(_slot) = shared.upload_slots().clone().try_acquire_owned() else {
                shared.refused_busy.fetch_add(1, Ordering::Relaxed);
                let busy = Response::Error {
                    code: ErrorCode::Unavailable,
                    message: "busy: every upload slot is taken".into(),
                };
                counters.sent(io::write_frame(send, peer, &busy).await?);
                finish(send).await;
                return Ok(());
            };
            send_chunks(shared, peer, counters, send, etag, first, count).await?;
            finish(send).await;
            if tracing::enabled!(tracing::Level::TRACE) {
                let stats = conn.stats();
                tracing::trace!(
                    %peer,
                    first,
                    count,
                    rtt_us = stats.path.rtt.as_micros() as u64,
                    cwnd = stats.path.cwnd,
                    mtu = stats.path.current_mtu,
                    lost = stats.path.lost_packets,
                    congestion_events = stats.path.congestion_events,
                    "chunks served"
                );
            }
            return Ok(());
        }
    };
    let response = response.unwrap_or_else(|e| Response::Error {
        code: ErrorCode::Internal,
        message: e,
    });
    let n = match io::write_frame(send, peer, &response).await {
        Err(TransferError::Local(e)) => {
            let err = Response::Error {
                code: ErrorCode::Internal,
                message: format!("cannot encode the answer: {e}"),
            };
            io::write_frame(send, peer, &err).await?
        }
        other => other?,
    };
    counters.sent(n);
    finish(send).await;
    Ok(())
}

/// The answers to an `Ask`, in the order asked: what [`ChunkSource::swarm`] says of each blob,
/// with its hashes where asked while they fit [`MAX_ASK_HASH_BYTES`] (postcard spends at most 33
/// bytes on a hash); the asker fetches the rest with `Hashes` requests.
fn answer_ask(source: &dyn ChunkSource, asker: &PeerHint, items: Vec<AskItem>) -> Vec<Asked> {
    let mut budget = MAX_ASK_HASH_BYTES;
    items
        .into_iter()
        .map(|item| {
            let (have, mut others) = source.swarm(&item.etag, asker, item.listed);
            others.truncate(MAX_PEER_HINTS);
            let hashes = match item.hashes && have.is_some() {
                true => source.chunk_hashes(&item.etag),
                false => None,
            };
            let hashes = hashes.filter(|h| match budget.checked_sub(h.len() * 33) {
                Some(left) => {
                    budget = left;
                    true
                }
                None => false,
            });
            Asked {
                have,
                hashes,
                others,
            }
        })
        .collect()
}

/// Ends the answer and waits (bounded) until the peer has it all, so that a node shutting down
/// closes its connections only after the uploads it started were delivered.
async fn finish(send: &mut quinn::SendStream) {
    if send.finish().is_ok() {
        let _ = timeout(FRAME_TIMEOUT, send.stopped()).await;
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the store task failed: {e}"))
}

type ChunkRead = JoinHandle<std::io::Result<Option<Bytes>>>;

/// Streams chunks `first..first + count`, reading the next chunk from disk while the current one
/// is being sent. Bytes are counted as they are written.
async fn send_chunks(
    shared: &Shared,
    peer: NodeId,
    counters: &Counters,
    send: &mut quinn::SendStream,
    etag: crate::etag::Etag,
    first: u64,
    count: u32,
) -> Result<(), TransferError> {
    let etag = Arc::new(etag);
    let read = |index: u64| -> ChunkRead {
        let (source, etag) = (shared.source.clone(), etag.clone());
        tokio::task::spawn_blocking(move || source.read_chunk(&etag, index))
    };
    let end = first + u64::from(count);
    let mut next = Some(read(first));
    for index in first..end {
        let Some(pending) = next.take() else { break };
        if index + 1 < end {
            next = Some(read(index + 1));
        }
        let chunk = pending
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let n = match chunk {
            Ok(Some(bytes)) if bytes.len() as u64 <= CHUNK_SIZE => {
                if let Some(limit) = shared.upload_limit.get() {
                    limit.acquire(bytes.len() as u64).await;
                }
                io::write_chunk(send, peer, index, bytes).await?
            }
            Ok(None) => io::write_frame(send, peer, &Response::Missing { index }).await?,
            Ok(Some(bytes)) => {
                let message = format!("chunk {index} is {} bytes, over the limit", bytes.len());
                return error(send, peer, counters, message).await;
            }
            Err(e) => {
                let message = format!("reading chunk {index} failed: {e}");
                return error(send, peer, counters, message).await;
            }
        };
        counters.sent(n);
    }
    Ok(())
}

/// Ends a chunk stream with an error frame (the store failed, not the peer).
async fn error(
    send: &mut quinn::SendStream,
    peer: NodeId,
    counters: &Counters,
    message: String,
) -> Result<(), TransferError> {
    warn!(%peer, "{message}");
    let e = Response::Error {
        code: ErrorCode::Internal,
        message,
    };
    counters.sent(io::write_frame(send, peer, &e).await?);
    Ok(())
}
