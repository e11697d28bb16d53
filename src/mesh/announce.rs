//! The one loop that mirrors this node's holdings into the DHT: it wakes when the store changes
//! (and on a timer, as a safety net), provides what is new and withdraws what is gone. Nothing
//! else announces or withdraws. It tells the store when each announcement ran its course
//! ([`LocalStore::note_announced`]): a blob's first Hub request waits for that (see
//! [`super::pull::pullers_settled`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::LocalStore;
use crate::discovery::{ContentKey, Discovery, DiscoveryError};

/// Announcements (DHT queries) under way at once.
const ANNOUNCING: usize = 16;
/// Longest time between two passes even without a change notice.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How long after a failed announcement the key is tried again, at the earliest.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// An announcement under way: the key (encoded, and as it is) and how it ended.
type Announcing = BoxFuture<'static, (Vec<u8>, ContentKey, Result<(), DiscoveryError>)>;

/// Runs until `stop` is cancelled.
pub async fn run(store: Arc<LocalStore>, discovery: Arc<dyn Discovery>, stop: CancellationToken) {
    let mut announced: BTreeSet<Vec<u8>> = BTreeSet::new();
    // New keys are announced side by side, and a key that appears while others are under way
    // starts at once rather than after them: each announcement is a DHT query that can take
    // over a second on a loaded host, and one after another the last of a node's blobs showed
    // up in lookups seconds after the first, so co-pullers that looked in between missed it and
    // disagreed on who fetches which stripe from the Hub. At most `ANNOUNCING` at once: a node
    // that starts holding thousands of blobs does not start thousands of DHT queries together.
    let mut running: FuturesUnordered<Announcing> = FuturesUnordered::new();
    let mut under_way: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut failed: HashMap<Vec<u8>, Instant> = HashMap::new();
    loop {
        let keys: Vec<(Vec<u8>, ContentKey)> = store
            .content_keys()
            .into_iter()
            .map(|k| (encode(&k), k))
            .collect();
        let wanted: BTreeSet<&Vec<u8>> = keys.iter().map(|(bytes, _)| bytes).collect();
        let now = Instant::now();
        failed.retain(|k, t| wanted.contains(k) && now < *t + RETRY_AFTER);
        let gone: Vec<Vec<u8>> = announced
            .iter()
            .filter(|bytes| !wanted.contains(bytes))
            .cloned()
            .collect();
        for (bytes, key) in keys {
            if running.len() >= ANNOUNCING {
                break;
            }
            if announced.contains(&bytes)
                || under_way.contains(&bytes)
                || failed.contains_key(&bytes)
            {
                continue;
            }
            under_way.insert(bytes.clone());
            let directory = discovery.clone();
            running.push(
                async move {
                    let result = directory.provide(key.clone()).await;
                    (bytes, key, result)
                }
                .boxed(),
            );
        }
        // Keys still under way are withdrawn, if gone, once their announcement has ended.
        for bytes in gone {
            if let Ok(key) = postcard::from_bytes::<ContentKey>(&bytes) {
                if let Err(e) = discovery.withdraw(key.clone()).await {
                    tracing::warn!(?key, error = %e, "could not withdraw");
                    continue;
                }
                store.note_withdrawn(&key);
            }
            announced.remove(&bytes);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = store.changed().notified() => {}
            Some(first) = running.next(), if !running.is_empty() => {
                // Every announcement that has ended by now, for one pass over the keys.
                let mut ended = vec![first];
                while let Some(Some(more)) = running.next().now_or_never() {
                    ended.push(more);
                }
                for (bytes, key, result) in ended {
                    under_way.remove(&bytes);
                    match result {
                        Ok(()) => {
                            announced.insert(bytes);
                        }
                        Err(e) => {
                            tracing::warn!(?key, error = %e, "could not announce");
                            failed.insert(bytes, Instant::now());
                        }
                    }
                    store.note_announced(&key, Instant::now());
                }
            }
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
    use tokio::sync::Notify;

    /// What a test directory's announcement of a key waits for before it is recorded.
    type Wait = Box<dyn Fn(&ContentKey) -> BoxFuture<'static, ()> + Send + Sync>;

    /// A directory whose announcements each wait for `wait`, then are recorded in `provided`.
    struct Held {
        wait: Wait,
        provided: Mutex<Vec<ContentKey>>,
    }

    impl Held {
        fn new(wait: Wait) -> Arc<Held> {
            Arc::new(Held {
                wait,
                provided: Mutex::default(),
            })
        }
    }

    #[async_trait::async_trait]
    impl Discovery for Held {
        fn local(&self) -> NodeInfo {
            NodeInfo {
                id: crate::node::NodeKey::from_secret([1; 32]).id(),
                addr: ([127, 0, 0, 1], 1).into(),
                topology: Default::default(),
            }
        }
        async fn provide(&self, key: ContentKey) -> Result<(), DiscoveryError> {
            (self.wait)(&key).await;
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
    async fn a_key_that_appears_during_an_announcement_goes_at_once_and_the_store_hears_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(LocalStore::open(&dir.path().join("hub"), &dir.path().join("state")).unwrap());
        let (first, second) = (
            crate::etag::sha256(b"first"),
            crate::etag::sha256(b"second"),
        );
        // The announcement of `first` waits until another key's announcement began.
        let (held, released) = (ContentKey::Blob(first.clone()), Arc::new(Notify::new()));
        let gate = Held::new(Box::new(move |key| {
            let (wait, released) = (*key == held, released.clone());
            async move {
                match wait {
                    true => released.notified().await,
                    false => released.notify_one(),
                }
            }
            .boxed()
        }));
        let stop = CancellationToken::new();
        store.complete_blob(&first, dir.path().join("x"), 1, Arc::new(vec![[0; 32]]));
        let task = tokio::spawn(run(store.clone(), gate.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(store.announced_at(&first), None, "under way");
        // The first announcement ends only once the second has begun: if the second waited for
        // the first, neither would ever end.
        store.complete_blob(&second, dir.path().join("y"), 1, Arc::new(vec![[0; 32]]));
        let both = async {
            while store.announced_at(&first).is_none() || store.announced_at(&second).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), both)
            .await
            .expect("both announcements ended");
        assert_eq!(gate.provided.lock().unwrap().len(), 2);
        stop.cancel();
        task.await.unwrap();
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
        let together = Arc::new(tokio::sync::Barrier::new(etags.len()));
        let slow = Held::new(Box::new(move |_| {
            let together = together.clone();
            async move {
                together.wait().await;
            }
            .boxed()
        }));
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
