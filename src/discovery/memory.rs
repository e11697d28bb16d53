//! An in-process directory standing in for the DHT: every [`MemoryDiscovery`] made from one
//! [`MemoryDirectory`] sees the others' records at once. For tests and the simulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ContentKey, Discovery, DiscoveryError, NodeInfo};
use crate::node::NodeId;

/// The shared directory.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    inner: Arc<Mutex<Directory>>,
}

#[derive(Debug, Default)]
struct Directory {
    nodes: HashMap<NodeId, NodeInfo>,
    /// Per key, its providers in the order they announced.
    records: HashMap<[u8; 32], Vec<NodeId>>,
    /// Provider records kept per key (`None`: all), as a DHT's record store caps them.
    cap: Option<usize>,
    /// How long each node's announcements take (absent: none), as DHT queries on a loaded host.
    announce_delay: HashMap<NodeId, Duration>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty directory that keeps only the first `cap` providers of each key (libp2p's
    /// Kademlia store keeps 20), to test what the nodes beyond them do.
    pub fn with_providers_per_key(cap: usize) -> Self {
        let d = Self::default();
        d.lock().cap = Some(cap);
        d
    }

    /// Provider records kept per key, if capped.
    pub fn providers_per_key(&self) -> Option<usize> {
        self.lock().cap
    }

    /// From now on, each announcement of node `id` takes `delay`: its record is stored, and its
    /// `provide` returns, only then (a DHT query on a loaded host can take seconds).
    pub fn slow_announcements(&self, id: NodeId, delay: Duration) {
        self.lock().announce_delay.insert(id, delay);
    }

    /// A member of the directory for `node`.
    pub fn join(&self, node: NodeInfo) -> MemoryDiscovery {
        self.lock().nodes.insert(node.id, node.clone());
        MemoryDiscovery {
            directory: self.clone(),
            local: node,
        }
    }

    /// Removes a node and all of its records (as if it died and its records expired).
    pub fn remove(&self, id: &NodeId) {
        let mut d = self.lock();
        d.nodes.remove(id);
        for holders in d.records.values_mut() {
            holders.retain(|h| h != id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One node's view of a [`MemoryDirectory`].
#[derive(Debug, Clone)]
pub struct MemoryDiscovery {
    directory: MemoryDirectory,
    local: NodeInfo,
}

#[async_trait::async_trait]
impl Discovery for MemoryDiscovery {
    fn local(&self) -> NodeInfo {
        self.local.clone()
    }

    async fn provide(&self, key: ContentKey) -> Result<(), DiscoveryError> {
        let delay = self
            .directory
            .lock()
            .announce_delay
            .get(&self.local.id)
            .copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut d = self.directory.lock();
        let cap = d.cap.unwrap_or(usize::MAX);
        let holders = d.records.entry(key.digest()).or_default();
        if !holders.contains(&self.local.id) && holders.len() < cap {
            holders.push(self.local.id);
        }
        Ok(())
    }

    async fn withdraw(&self, key: ContentKey) -> Result<(), DiscoveryError> {
        if let Some(holders) = self.directory.lock().records.get_mut(&key.digest()) {
            holders.retain(|h| *h != self.local.id);
        }
        Ok(())
    }

    async fn providers(
        &self,
        key: ContentKey,
        limit: usize,
    ) -> Result<Vec<NodeInfo>, DiscoveryError> {
        let d = self.directory.lock();
        let mut found: Vec<NodeInfo> = d
            .records
            .get(&key.digest())
            .into_iter()
            .flatten()
            .filter(|id| **id != self.local.id)
            .filter_map(|id| d.nodes.get(id).cloned())
            .collect();
        found.sort_by_key(|n| n.id);
        found.truncate(limit);
        Ok(found)
    }

    async fn peers(&self) -> Vec<NodeInfo> {
        let d = self.directory.lock();
        d.nodes
            .values()
            .filter(|n| n.id != self.local.id)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etag::git_blob_id;
    use crate::node::{NodeKey, Topology};

    fn node(port: u16) -> NodeInfo {
        NodeInfo {
            id: NodeKey::generate().id(),
            addr: ([127, 0, 0, 1], port).into(),
            topology: Topology::default(),
        }
    }

    #[tokio::test]
    async fn providers_see_each_other_but_not_themselves() {
        let dir = MemoryDirectory::new();
        let (a, b) = (dir.join(node(1)), dir.join(node(2)));
        let key = ContentKey::Blob(git_blob_id(b"x"));
        a.provide(key.clone()).await.unwrap();
        assert_eq!(b.providers(key.clone(), 10).await.unwrap(), vec![a.local()]);
        assert!(a.providers(key.clone(), 10).await.unwrap().is_empty());
        a.withdraw(key.clone()).await.unwrap();
        assert!(b.providers(key.clone(), 10).await.unwrap().is_empty());
        b.provide(key.clone()).await.unwrap();
        dir.remove(&b.local().id);
        assert!(a.providers(key, 10).await.unwrap().is_empty());
    }
}
