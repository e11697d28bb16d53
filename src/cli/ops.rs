//! Ops commands over the local agent's control API: `status`, `peers`, `holdings` (this node's
//! snapshots, or live per-node holdings with `--peer` / `--all`), `who-has` (the quota's commands
//! are in `evict.rs`). Each prints a human table, or stable JSON with `--json`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::agent::control::{ErrorReport, PeerReport, StatusReport, WhoHasReport};
use crate::agent::evict::HoldingReport;
use crate::agent::holdings::NodeHoldingsReport;
use crate::progress::human_bytes;

/// Where the agent's control socket is, and the output form.
#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    /// The agent's control socket [default: HF_HOME/hfmesh/agent.sock].
    #[arg(
        long,
        env = "HFMESH_CONTROL_SOCKET",
        value_name = "PATH",
        global = true
    )]
    pub socket: Option<PathBuf>,
    /// Stable JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Flags of `hfmesh holdings`.
#[derive(Debug, clap::Args)]
pub struct HoldingsArgs {
    /// Ask this node what it holds, live: a node id, or a unique end of one (as tables show).
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub peer: Option<String>,
    /// Ask this node and every peer it knows what they hold, live (peers that do not answer are
    /// listed with their error).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub ops: OpsArgs,
}

impl OpsArgs {
    /// The socket path: the flag, else the agent's default.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            let env = |k: &str| std::env::var(k).ok();
            crate::cache::layout::hf_home(&env)
                .join("hfmesh")
                .join("agent.sock")
        })
    }
}

/// Sends one request to the agent at `socket`; returns the status and the body.
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, Bytes)> {
    let resp = open(socket, method, path, body, None).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Sends one request to the agent at `socket` (asking for the media type `accept`, if any) and
/// returns the answer with its body unread, for answers that stream.
pub async fn open(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<String>,
    accept: Option<&str>,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let stream = tokio::net::UnixStream::connect(socket).await.with_context(|| {
        format!("no agent answers at {} (is `hfmesh agent` running? set --socket or HFMESH_CONTROL_SOCKET)", socket.display())
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "hfmesh-agent")
        .header("content-type", "application/json");
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    sender
        .send_request(req)
        .await
        .context("the agent closed the connection")
}

/// The sentence of an error answer: its `{"error": ...}`, else its text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorReport>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

/// Sends a request and decodes a JSON answer, turning `{"error": ...}` answers into errors.
pub async fn call<T: serde::de::DeserializeOwned>(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<T> {
    let (status, bytes) = request(socket, method, path, body).await?;
    if !(200..300).contains(&status) {
        anyhow::bail!("{}", error_message(&bytes));
    }
    serde_json::from_slice(&bytes).context("the agent's answer is not what this version expects")
}

/// `hfmesh status`.
pub async fn status(args: &OpsArgs) -> anyhow::Result<()> {
    let socket = args.socket_path();
    if args.json {
        let (_, body) = request(&socket, "GET", "/v1/status", None).await?;
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let s: StatusReport = call(&socket, "GET", "/v1/status", None).await?;
    let rows = [
        ("node", s.id.clone()),
        ("p2p", s.p2p_addr.clone()),
        ("quic", s.quic_addr.clone()),
        (
            "zone/rack",
            format!(
                "{}/{}",
                s.zone.as_deref().unwrap_or("-"),
                s.rack.as_deref().unwrap_or("-")
            ),
        ),
        ("ready", s.ready.to_string()),
        ("peers", s.peers.to_string()),
        ("snapshots", s.snapshots.to_string()),
        ("pulls in flight", s.pulls_in_flight.to_string()),
        ("from peers", human_bytes(s.bytes_from_peers)),
        ("from hub", human_bytes(s.bytes_from_hub)),
        ("served", human_bytes(s.bytes_served)),
        (
            "cache",
            format!("{} in {}", human_bytes(s.cache_bytes), s.cache_dir),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<16} {v}");
    }
    for p in &s.preload {
        let err = p
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        println!(
            "{:<16} {} {} after {} tries{err}",
            "preload", p.what, p.state, p.attempts
        );
    }
    Ok(())
}

/// `hfmesh peers`.
pub async fn peers(args: &OpsArgs) -> anyhow::Result<()> {
    let peers: Vec<PeerReport> = call(&args.socket_path(), "GET", "/v1/peers", None).await?;
    if args.json {
        println!("{}", serde_json::to_string(&peers)?);
        return Ok(());
    }
    print_peers(&peers);
    Ok(())
}

fn print_peers(peers: &[PeerReport]) {
    println!(
        "{:<54} {:<22} {:<12} {:<8} {:>9} {:>10} {:>10}",
        "PEER", "ADDRESS", "ZONE", "RACK", "RTT", "SENT", "RECEIVED"
    );
    for p in peers {
        println!(
            "{:<54} {:<22} {:<12} {:<8} {:>9} {:>10} {:>10}",
            p.id,
            p.addr,
            p.zone.as_deref().unwrap_or("-"),
            p.rack.as_deref().unwrap_or("-"),
            p.rtt_ms
                .map(|r| format!("{r:.2} ms"))
                .unwrap_or_else(|| "-".into()),
            human_bytes(p.bytes_sent),
            human_bytes(p.bytes_received)
        );
    }
}

/// `hfmesh holdings`: this node's snapshots, or with `--peer` / `--all` what nodes hold, asked
/// live of the cluster.
pub async fn holdings(args: &HoldingsArgs) -> anyhow::Result<()> {
    let socket = args.ops.socket_path();
    if let Some(peer) = &args.peer {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("peer", peer)
            .finish();
        let path = format!("/v1/holdings?{query}");
        let node: NodeHoldingsReport = call(&socket, "GET", &path, None).await?;
        return print_json_or(args.ops.json, &node, || print_node_holdings(&node));
    }
    if args.all {
        let nodes: Vec<NodeHoldingsReport> =
            call(&socket, "GET", "/v1/holdings?all=true", None).await?;
        return print_json_or(args.ops.json, &nodes, || {
            nodes.iter().for_each(print_node_holdings)
        });
    }
    let held: Vec<HoldingReport> = call(&socket, "GET", "/v1/holdings", None).await?;
    print_json_or(args.ops.json, &held, || {
        println!(
            "{:<8} {:<40} {:<40} {:>10} {:<6} LAST USED",
            "KIND", "REPO", "COMMIT", "SIZE", "PINNED"
        );
        for h in &held {
            let s = &h.snapshot;
            println!(
                "{:<8} {:<40} {:<40} {:>10} {:<6} {}",
                s.kind,
                s.repo,
                s.commit,
                human_bytes(h.size_bytes),
                if h.pinned { "yes" } else { "no" },
                super::evict::age(h.last_used_ms)
            );
        }
    })
}

/// Prints `value` as one line of JSON when `json`, else calls `table`.
fn print_json_or<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce(),
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        table();
    }
    Ok(())
}

/// One node's holdings: a header line, its snapshots, its partial blobs one per line and its
/// complete blobs in one summary line (`--json` lists each).
fn print_node_holdings(n: &NodeHoldingsReport) {
    let place = format!(
        "{}/{}",
        n.zone.as_deref().unwrap_or("-"),
        n.rack.as_deref().unwrap_or("-")
    );
    let me = if n.local { " (this node)" } else { "" };
    println!("NODE {} {} {place}{me}", n.id, n.addr);
    if let Some(e) = &n.error {
        println!("  no answer: {e}");
        return;
    }
    println!(
        "  {:<8} {:<40} {:<40} {:>6} {:>10}",
        "KIND", "REPO", "COMMIT", "FILES", "SIZE"
    );
    for s in &n.snapshots {
        println!(
            "  {:<8} {:<40} {:<40} {:>6} {:>10}",
            s.kind,
            s.repo,
            s.commit,
            s.files,
            human_bytes(s.bytes)
        );
    }
    let (complete, partial): (Vec<_>, Vec<_>) = n.blobs.iter().partition(|b| b.complete);
    for b in partial {
        println!(
            "  partial blob {} {}/{} chunks of {}",
            b.etag,
            b.chunks_present,
            b.chunks_total,
            human_bytes(b.size)
        );
    }
    let bytes: u64 = complete.iter().map(|b| b.size).sum();
    println!(
        "  {} complete blob(s), {}{}",
        complete.len(),
        human_bytes(bytes),
        if n.truncated {
            " (more not listed: the node holds more than one answer carries)"
        } else {
            ""
        }
    );
}

/// `hfmesh who-has REPO[:REV]`.
pub async fn who_has(args: &OpsArgs, repo: &str, dataset: bool) -> anyhow::Result<()> {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("repo", repo)
        .append_pair("dataset", if dataset { "true" } else { "false" })
        .finish();
    let r: WhoHasReport = call(
        &args.socket_path(),
        "GET",
        &format!("/v1/who-has?{query}"),
        None,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "{} {}@{}: {} provider(s)",
        r.snapshot.kind,
        r.snapshot.repo,
        r.snapshot.commit,
        r.providers.len()
    );
    print_peers(&r.providers);
    Ok(())
}
