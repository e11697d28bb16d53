//! The mesh: pull snapshots from peers first and from the Hub only for what no peer can supply,
//! serve what this node holds, and keep the DHT in step with the holdings.

/// The loop that mirrors holdings into the DHT.
pub mod announce;
/// This node's holdings, served to peers.
pub mod local;
/// How often a blob's fetch looks its providers up in the DHT.
pub mod pace;
/// Requests to other nodes, behind a trait.
pub mod peers;
/// The multi-peer pull with Hub fallback.
pub mod pull;

pub use local::LocalStore;
pub use peers::{MemoryPeers, Peers};
pub use pull::{Mesh, MeshConfig, MeshCounters, MeshReport};
