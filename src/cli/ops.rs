//! Ops commands over the local agent's control API: `status`, `peers`, `holdings`, `who-has`
//! (the quota's commands are in `evict.rs`).
//! Each prints a human table, or stable JSON with `--json`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::agent::control::{ErrorReport, PeerReport, StatusReport, WhoHasReport};
use crate::agent::evict::HoldingReport;
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
    let stream = tokio::net::UnixStream::connect(socket).await.with_context(|| {
        format!("no agent answers at {} (is `hfmesh agent` running? set --socket or HFMESH_CONTROL_SOCKET)", socket.display())
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "hfmesh-agent")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender
        .send_request(req)
        .await
        .context("the agent closed the connection")?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
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
        let msg = serde_json::from_slice::<ErrorReport>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        anyhow::bail!("{msg}");
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

/// `hfmesh holdings` (this node's snapshots).
pub async fn holdings(args: &OpsArgs) -> anyhow::Result<()> {
    let held: Vec<HoldingReport> = call(&args.socket_path(), "GET", "/v1/holdings", None).await?;
    if args.json {
        println!("{}", serde_json::to_string(&held)?);
        return Ok(());
    }
    println!(
        "{:<8} {:<40} {:<40} {:>10} {:<6} LAST USED",
        "KIND", "REPO", "COMMIT", "SIZE", "PINNED"
    );
    for h in held {
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
    Ok(())
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
