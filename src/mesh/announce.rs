//! The one loop that mirrors this node's holdings into the DHT: it wakes when the store changes
//! (and on a timer, as a safety net), provides what is new and withdraws what is gone. Nothing
//! else announces or withdraws.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::LocalStore;
use crate::discovery::{ContentKey, Discovery};

/// Announcements (DHT queries) under way at once.
const ANNOUNCING: usize = 16;
/// Longest time between two passes even without a change notice.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Runs until `stop` is cancelled.
pub async fn run(store: Arc<LocalStore>, discovery: Arc<dyn Discovery>, stop: CancellationToken) {
    let mut announced: BTreeSet<Vec<u8>> = BTreeSet::new();
    loop {
        let keys = store.content_keys();
        let wanted: BTreeSet<Vec<u8>> = keys.iter().map(encode).collect();
        // New keys are announced side by side: each announcement is a DHT query that can take
        // over a second on a loaded host, and one after another the last of a node's blobs
        // showed up in lookups seconds after the first, so co-pullers that looked in between
        // missed it and disagreed on who fetches which stripe from the Hub.
        // At most `ANNOUNCING` at once: a node that starts holding thousands of blobs does not
        // start thousands of DHT queries together.
        let new: Vec<_> = keys
            .iter()
            .filter(|k| !announced.contains(&encode(k)))
            .map(|key| {
                let (directory, key) = (discovery.clone(), key.clone());
                async move {
                    let result = directory.provide(key.clone()).await;
                    (key, result)
                }
            })
            .collect();
        let done: Vec<_> = futures_util::stream::iter(new)
            .buffer_unordered(ANNOUNCING)
            .collect()
            .await;
        for (key, result) in done {
            match result {
                Ok(()) => {
                    announced.insert(encode(&key));
                }
                Err(e) => tracing::warn!(?key, error = %e, "could not announce"),
            }
        }
        let gone: Vec<Vec<u8>> = announced.difference(&wanted).cloned().collect();
        for bytes in gone {
            if let Ok(key) = postcard::from_bytes::<ContentKey>(&bytes) {
                if let Err(e) = discovery.withdraw(key.clone()).await {
                    tracing::warn!(?key, error = %e, "could not withdraw");
                    continue;
                }
            }
            announced.remove(&bytes);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = store.changed().notified() => {}
            _ = tokio::time::sleep(RESYNC_EVERY) => {}
        }
    }
}

fn encode(key: &ContentKey) -> Vec<u8> {
    postcard::to_stdvec(key).expect("keys encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{DiscoveryError, NodeInfo};
    use std::sync::Mutex;

    /// A directory whose announcements each wait until `together` of them are under way.
    struct Slow {
        together: tokio::sync::Barrier,
        provided: Mutex<Vec<ContentKey>>,
    }

    #[async_trait::async_trait]
    impl Discovery for Slow {
        fn local(&self) -> NodeInfo {
            NodeInfo {
                id: crate::node::NodeKey::from_secret([1; 32]).id(),
                addr: ([127, 0, 0, 1], 1).into(),
                topology: Default::default(),
            }
        }
        async fn provide(&self, key: ContentKey) -> Result<(), DiscoveryError> {
            self.together.wait().await;
            self.provided.lock().unwrap().push(key);
            Ok(())
        }
        async fn withdraw(&self, _key: ContentKey) -> Result<(), DiscoveryError> {
            Ok(())
        }
        async fn providers(
            &self,
            _key: ContentKey,
            _limit: usize,
        ) -> Result<Vec<NodeInfo>, DiscoveryError> {
            Ok(vec![])
        }
        async fn peers(&self) -> Vec<NodeInfo> {
            vec![]
        }
    }

    #[tokio::test]
    async fn new_keys_are_announced_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(LocalStore::open(&dir.path().join("hub"), &dir.path().join("state")).unwrap());
        let etags: Vec<_> = (0..3u8).map(|i| crate::etag::sha256(&[i])).collect();
        for e in &etags {
            store.complete_blob(e, dir.path().join("x"), 1, Arc::new(vec![[0; 32]]));
        }
        // Each announcement returns only once all three are under way: announced one after
        // another, the first would wait forever.
        let slow = Arc::new(Slow {
            together: tokio::sync::Barrier::new(etags.len()),
            provided: Mutex::default(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store, slow.clone(), stop.clone()));
        let all = async {
            while slow.provided.lock().unwrap().len() < etags.len() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every key announced");
        stop.cancel();
        task.await.unwrap();
        let provided = slow.provided.lock().unwrap().clone();
        for e in etags {
            assert!(provided.contains(&ContentKey::Blob(e)));
        }
    }
}
