//! hfmesh: a peer-to-peer cache mesh that puts Hugging Face models and datasets on every host of a
//! GPU datacenter, in the standard Hugging Face cache tree.
//!
//! Map of the crate (one line per part; see `docs/ARCHITECTURE.md`):

/// The agent: the node composition root and the `hfmesh agent` daemon.
pub mod agent;
/// The Hugging Face cache tree: layout, locks, atomic snapshot assembly, refs.
pub mod cache;
/// The command line: argument parsing and the commands.
pub mod cli;
/// The agent's configuration: file, environment, flags, resolved once.
pub mod config;
/// Who holds what: the `Discovery` trait, its in-memory and libp2p Kademlia implementations.
pub mod discovery;
/// HF-compatible Hub emulator with fault injection, for tests and simulations.
pub mod emulator;
/// Etags (git blob SHA-1, SHA-256) and their streaming hashers. Pure.
pub mod etag;
/// The Hub client: revisions, listings, ranged downloads, auth, retries, clear errors.
pub mod hub;
/// What a snapshot holds: its files with sizes and etags.
pub mod manifest;
/// The mesh: local holdings, the announce loop, and the multi-peer pull.
pub mod mesh;
/// Node identity (ed25519 key, id), topology labels, and the cluster secret.
pub mod node;
/// Progress output: a bar on a terminal, plain lines otherwise.
pub mod progress;
/// Pull a snapshot from the Hub into the cache tree (standalone, no peers).
pub mod pull;
/// Repository ids, revisions, commit ids, in-repo paths, RunPod lists. Pure.
pub mod repo;
/// The scale model: thousands of hosts simulated with the real scheduler.
pub mod scale;
/// The pure multi-peer scheduler: which chunk to ask of which peer or of the Hub.
pub mod scheduler;
/// The cluster simulation harness: scenarios, the runner over real processes, reports.
pub mod sim;
/// The chunk store: partial blobs with persisted chunk records, etag verification.
pub mod store;
/// QUIC transfers between peers: TLS bound to node keys, cluster hello, serving and fetching chunks.
pub mod transfer;
/// The peer-to-peer wire protocol: messages, framing and size limits. Pure.
pub mod wire;
