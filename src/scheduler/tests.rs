use super::*;
use crate::node::NodeKey;

fn id(n: u8) -> NodeId {
    NodeKey::from_secret([n; 32]).id()
}

fn sched(chunks: u64) -> Scheduler {
    let mut s = Scheduler::new(
        SchedConfig::default(),
        id(0),
        b"etag",
        Bitmap::empty(chunks),
    );
    (0..chunks).for_each(|i| s.set_verifiable(i));
    s
}

/// Of two pullers `id(1)` and `id(2)` of a blob of `chunks` chunks, a scheduler for the one that
/// does not own stripe 0, told only the owner pulls with it; and the owner.
fn non_owner_of_stripe_0(cfg: &SchedConfig, chunks: u64) -> (Scheduler, NodeId) {
    let (a, b) = (id(1), id(2));
    let mut probe = Scheduler::new(cfg.clone(), a, b"etag", Bitmap::empty(chunks));
    probe.set_pullers(vec![a, b], true);
    let (owner, other) = if probe.stripe_owner(0) == a {
        (a, b)
    } else {
        (b, a)
    };
    let mut s = Scheduler::new(cfg.clone(), other, b"etag", Bitmap::empty(chunks));
    s.set_pullers(vec![owner], true);
    (s, owner)
}

/// The default configuration with 64-chunk stripes: a 64-chunk blob is one stripe.
fn one_stripe_of_64() -> SchedConfig {
    SchedConfig {
        stripe_chunks: 64,
        ..SchedConfig::default()
    }
}

fn complete_all(s: &mut Scheduler, reqs: &[Request]) {
    for r in reqs {
        for c in r.chunks.clone() {
            s.completed(c, r.source);
        }
    }
}

#[test]
fn nearest_peer_first_and_consecutive_chunks_grouped() {
    let now = Instant::now();
    let mut s = sched(8);
    s.update_peer(id(1), Bitmap::full(8), 2, Duration::from_micros(100));
    s.update_peer(id(2), Bitmap::full(8), 0, Duration::from_millis(5));
    let reqs = s.plan(now);
    assert_eq!(
        reqs[0].source,
        Source::Peer(id(2)),
        "same rack beats lower RTT"
    );
    assert_eq!(reqs[0].chunks.end - reqs[0].chunks.start, 4, "{reqs:?}");
    assert!(
        reqs.iter().all(|r| r.source != Source::Hub),
        "peers hold everything: no Hub request"
    );
    complete_all(&mut s, &reqs);
    assert!(s.is_done());
}

#[test]
fn proximity_from_labels() {
    let t = |z: &str, r: &str| Topology {
        zone: Some(z.into()),
        rack: Some(r.into()),
    };
    assert_eq!(proximity(&t("a", "1"), &t("a", "1")), 0);
    assert_eq!(proximity(&t("a", "1"), &t("a", "2")), 1);
    assert_eq!(proximity(&t("a", "1"), &t("b", "1")), 2);
    assert_eq!(
        proximity(&Topology::default(), &Topology::default()),
        2,
        "no labels: no claim of nearness"
    );
}

#[test]
fn unverifiable_chunks_are_not_asked_of_peers() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig::default(), id(0), b"etag", Bitmap::empty(4));
    s.set_hub_allowed(false);
    s.update_peer(id(1), Bitmap::full(4), 0, Duration::ZERO);
    assert!(s.plan(now).is_empty(), "no hash known yet: wait");
    s.set_verifiable(2);
    assert_eq!(
        s.plan(now),
        vec![Request {
            source: Source::Peer(id(1)),
            chunks: 2..3
        }]
    );
}

#[test]
fn a_bad_chunk_bans_the_peer_and_its_work_goes_elsewhere() {
    let now = Instant::now();
    let mut s = sched(8);
    s.set_hub_allowed(false);
    s.update_peer(id(1), Bitmap::full(8), 0, Duration::ZERO);
    s.update_peer(id(2), Bitmap::full(8), 2, Duration::ZERO);
    let first = s.plan(now);
    assert!(first.iter().all(|r| r.source == Source::Peer(id(1))));
    s.failed(
        first[0].chunks.clone(),
        Source::Peer(id(1)),
        Fault::BadChunk,
    );
    assert!(s.is_banned(&id(1)));
    let again = s.plan(now);
    assert!(
        !again.is_empty() && again.iter().all(|r| r.source == Source::Peer(id(2))),
        "{again:?}"
    );
    let mut covered: Vec<u64> = again.iter().flat_map(|r| r.chunks.clone()).collect();
    covered.sort_unstable();
    assert_eq!(
        covered,
        (0..8).collect::<Vec<_>>(),
        "everything the banned peer owed is re-asked"
    );
}

#[test]
fn stalled_requests_are_reasked_and_repeat_stallers_banned() {
    let t0 = Instant::now();
    let mut s = sched(4);
    s.set_hub_allowed(false);
    s.update_peer(id(1), Bitmap::full(4), 0, Duration::ZERO);
    s.update_peer(id(2), Bitmap::full(4), 1, Duration::ZERO);
    let reqs = s.plan(t0);
    assert_eq!(
        reqs,
        vec![Request {
            source: Source::Peer(id(1)),
            chunks: 0..4
        }]
    );
    assert_eq!(
        s.next_deadline(),
        Some(t0 + SchedConfig::default().stall_timeout)
    );
    let later = t0 + SchedConfig::default().stall_timeout;
    assert_eq!(s.expire_stalled(later).len(), 4);
    // One strike each time; the slow peer is still nearest, until the third strike bans it.
    for _ in 0..2 {
        let r = s.plan(later);
        assert_eq!(r[0].source, Source::Peer(id(1)));
        s.failed(r[0].chunks.clone(), r[0].source, Fault::Failed);
    }
    assert!(s.is_banned(&id(1)));
    assert_eq!(s.plan(later)[0].source, Source::Peer(id(2)));
}

#[test]
fn a_busy_peer_is_left_alone_for_its_backoff_without_a_strike() {
    let t0 = Instant::now();
    let backoff = SchedConfig::default().busy_backoff;
    let mut s = sched(4);
    // Only peer 1 holds chunks 0..2; peers 1 and 2 hold 2..4 (peer 1 nearer).
    let mut first_half = Bitmap::empty(4);
    (0..2).for_each(|c| first_half.set(c));
    let mut second_half = Bitmap::empty(4);
    (2..4).for_each(|c| second_half.set(c));
    s.update_peer(id(1), Bitmap::full(4), 0, Duration::ZERO);
    s.update_peer(id(2), second_half, 1, Duration::ZERO);
    let r = s.plan(t0);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].source, r[0].chunks.clone()),
        (Source::Peer(id(1)), 0..4)
    );
    // Refused more often than a failing peer may fail: still no strike, no ban.
    for _ in 0..SchedConfig::default().max_strikes + 1 {
        s.failed(r[0].chunks.clone(), r[0].source, Fault::Busy);
    }
    assert!(!s.is_banned(&id(1)));
    // Meanwhile its chunks go to the other holder, and what only it holds waits for it: never the
    // Hub (which is allowed), and not before the backoff.
    let r = s.plan(t0);
    assert_eq!(
        r,
        vec![Request {
            source: Source::Peer(id(2)),
            chunks: 2..4
        }]
    );
    assert!(s.plan(t0 + backoff / 2).is_empty());
    assert_eq!(s.next_deadline(), Some(t0 + backoff));
    let r = s.plan(t0 + backoff);
    assert_eq!(
        r,
        vec![Request {
            source: Source::Peer(id(1)),
            chunks: 0..2
        }]
    );
    s.assert_holders_counted();
}

#[test]
fn pullers_split_the_hub_and_each_stripe_has_exactly_one_owner() {
    let now = Instant::now();
    let nodes: Vec<NodeId> = (0..4).map(id).collect();
    let chunks = 64;
    let mut owned = vec![0u32; chunks as usize];
    for me in &nodes {
        let mut s = Scheduler::new(
            SchedConfig {
                hub_requests: usize::MAX,
                ..SchedConfig::default()
            },
            *me,
            b"etag",
            Bitmap::empty(chunks),
        );
        s.set_pullers(nodes.clone(), true);
        for r in s.plan(now) {
            assert_eq!(r.source, Source::Hub);
            for c in r.chunks {
                owned[c as usize] += 1;
            }
        }
    }
    assert!(
        owned.iter().all(|&n| n == 1),
        "each chunk fetched from the Hub by exactly one node: {owned:?}"
    );
    let per_node: Vec<usize> = nodes
        .iter()
        .map(|me| {
            let mut s = Scheduler::new(SchedConfig::default(), *me, b"etag", Bitmap::empty(chunks));
            s.set_pullers(nodes.clone(), true);
            (0..chunks).filter(|&c| s.stripe_owner(c) == *me).count()
        })
        .collect();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every puller owns some stripes: {per_node:?}"
    );
}

#[test]
fn a_non_owner_waits_for_the_owner_then_takes_over_after_the_grace() {
    let t0 = Instant::now();
    let cfg = one_stripe_of_64();
    let grace = cfg.origin_grace;
    let (mut s, owner) = non_owner_of_stripe_0(&cfg, 64);
    assert!(
        s.plan(t0).is_empty(),
        "the owner fetches this stripe from the Hub; we wait"
    );
    assert_eq!(s.next_deadline(), Some(t0 + grace));
    // The owner's chunks appear: take them from it.
    let mut have = Bitmap::empty(64);
    have.set(0);
    s.update_peer(owner, have, 2, Duration::ZERO);
    s.set_verifiable(0);
    assert_eq!(
        s.plan(t0),
        vec![Request {
            source: Source::Peer(owner),
            chunks: 0..1
        }]
    );
    // The rest never comes: after the grace, fetch it from the Hub ourselves.
    let late = s.plan(t0 + grace);
    assert_eq!(
        late,
        vec![Request {
            source: Source::Hub,
            chunks: 1..64
        }]
    );
}

#[test]
fn a_peer_that_leaves_hands_its_work_back_once_its_requests_end() {
    let now = Instant::now();
    let mut s = sched(4);
    s.update_peer(id(1), Bitmap::full(4), 0, Duration::ZERO);
    assert_eq!(s.plan(now)[0].source, Source::Peer(id(1)));
    s.remove_peer(&id(1));
    assert!(
        s.plan(now).is_empty(),
        "its running request may still deliver"
    );
    s.failed(0..4, Source::Peer(id(1)), Fault::Failed);
    assert_eq!(
        s.plan(now),
        vec![Request {
            source: Source::Hub,
            chunks: 0..4
        }]
    );
}

/// Against a naive model: whatever the peers hold and however requests fail (or are refused as
/// busy), the scheduler never
/// asks for a chunk that is here or already asked, only asks peers for chunks they hold, and
/// finishes.
#[test]
fn random_swarms_always_finish_without_double_asking() {
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    let mut rand = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    for _case in 0..200 {
        let n = 1 + rand() % 40;
        let now = Instant::now();
        let mut s = sched(n);
        let peers: Vec<(NodeId, Bitmap)> = (1..=(rand() % 4) as u8)
            .map(|p| {
                let mut b = Bitmap::empty(n);
                (0..n).filter(|_| rand() % 2 == 0).for_each(|c| b.set(c));
                (id(p), b)
            })
            .collect();
        for (p, b) in &peers {
            s.update_peer(
                *p,
                b.clone(),
                (rand() % 3) as u8,
                Duration::from_micros(rand() % 1000),
            );
        }
        for round in 0..1000 {
            if s.is_done() {
                break;
            }
            // Each round is one busy backoff later: a peer refused in one is asked in the next.
            let now = now + SchedConfig::default().busy_backoff * round;
            let reqs = s.plan(now);
            assert!(
                !reqs.is_empty(),
                "stuck with chunks missing and nothing in flight"
            );
            let mut this_round = std::collections::HashSet::new();
            for r in &reqs {
                for c in r.chunks.clone() {
                    assert!(!s.local().get(c), "asked for a chunk already here");
                    assert!(this_round.insert(c), "chunk {c} asked twice at once");
                    if let Source::Peer(p) = r.source {
                        assert!(
                            peers.iter().any(|(q, b)| *q == p && b.get(c)),
                            "asked a peer for a chunk it lacks"
                        );
                    }
                }
            }
            // Planning again while those are in flight must not ask for any of them again.
            let more = s.plan(now);
            for r in &more {
                assert!(
                    r.chunks.clone().all(|c| !this_round.contains(&c)),
                    "re-asked a chunk in flight"
                );
            }
            for r in reqs.into_iter().chain(more) {
                match rand() % 20 {
                    0..=3 => s.failed(r.chunks.clone(), r.source, Fault::Failed),
                    4 => s.failed(r.chunks.clone(), r.source, Fault::Missing),
                    5 => s.failed(r.chunks.clone(), r.source, Fault::BadChunk),
                    6..=7 => s.failed(r.chunks.clone(), r.source, Fault::Busy),
                    _ => r.chunks.clone().for_each(|c| s.completed(c, r.source)),
                }
            }
            s.assert_holders_counted();
        }
        assert!(s.is_done(), "did not finish");
    }
}

#[test]
fn busy_holders_are_waited_for_not_bypassed_to_the_hub() {
    let now = Instant::now();
    let mut s = sched(64);
    s.update_peer(id(1), Bitmap::full(64), 0, Duration::ZERO);
    let reqs = s.plan(now);
    let cfg = SchedConfig::default();
    assert_eq!(
        reqs.len(),
        cfg.requests_per_peer,
        "the peer's request slots fill up: {reqs:?}"
    );
    assert!(
        reqs.iter().all(|r| r.source == Source::Peer(id(1))),
        "nothing goes to the Hub while a peer holds it: {reqs:?}"
    );
    assert!(s.plan(now).is_empty());
}

#[test]
fn a_slow_owner_that_keeps_making_progress_is_never_duplicated() {
    let t0 = Instant::now();
    let cfg = SchedConfig {
        stripe_chunks: 8,
        ..SchedConfig::default()
    };
    let grace = cfg.origin_grace;
    let (mut s, owner) = non_owner_of_stripe_0(&cfg, 8);
    (0..8).for_each(|c| s.set_verifiable(c));
    assert!(s.plan(t0).is_empty(), "the owner's stripe: wait");
    // The owner draws one chunk from a slow Hub every grace minus a second: the whole stripe
    // takes far longer than the grace, yet every step restarts the wait.
    let step = grace - Duration::from_secs(1);
    let mut have = Bitmap::empty(8);
    for k in 0..7u64 {
        let now = t0 + step * (k as u32 + 1);
        have.set(k);
        s.update_peer(owner, have.clone(), 2, Duration::ZERO);
        let reqs = s.plan(now);
        assert!(
            reqs.iter().all(|r| r.source != Source::Hub),
            "step {k}: the owner is progressing, no Hub request: {reqs:?}"
        );
        complete_all(&mut s, &reqs);
        let deadline = s.next_deadline().expect("still waiting for chunk 7");
        assert!(deadline > now + step, "step {k}: the wait restarted");
    }
    // The gaps were `step` long, so the grace is now 3 × step: still waiting just before it ends,
    // and the last chunk comes from the Hub only once it does.
    let last = t0 + step * 7;
    assert!(s
        .plan(last + step * 3 - Duration::from_millis(1))
        .is_empty());
    assert_eq!(
        s.plan(last + step * 3),
        vec![Request {
            source: Source::Hub,
            chunks: 7..8
        }]
    );
}

#[test]
fn a_node_the_other_pullers_cannot_see_owns_no_stripe() {
    let t0 = Instant::now();
    let others: Vec<NodeId> = (1..4).map(id).collect();
    let mut unseen = sched(64);
    unseen.set_pullers(others.clone(), false);
    assert!(
        (0..64).all(|c| unseen.stripe_owner(c) != id(0)),
        "every stripe belongs to a node the others know"
    );
    assert!(unseen.plan(t0).is_empty(), "it waits for the owners");
    // It comes last in every stripe's order: after the three pullers' turns.
    let grace = SchedConfig::default().origin_grace;
    assert!(unseen
        .plan(t0 + grace * 3 - Duration::from_millis(1))
        .is_empty());
    let later = unseen.plan(t0 + grace * 3);
    assert!(
        later.iter().all(|r| r.source == Source::Hub) && !later.is_empty(),
        "after three graces with no progress it fetches from the Hub itself: {later:?}"
    );

    // Seen by the others, it owns its share; alone, it owns everything.
    let mut seen = sched(64);
    seen.set_pullers(others, true);
    let owned = (0..64).filter(|&c| seen.stripe_owner(c) == id(0)).count();
    assert!(owned > 0 && owned < 64, "{owned} of 64");
    let mut alone = sched(64);
    alone.set_pullers(Vec::new(), false);
    assert!((0..64).all(|c| alone.stripe_owner(c) == id(0)));
    assert!(!alone.plan(t0).is_empty());
}

#[test]
fn a_request_slot_frees_when_that_request_ends() {
    let t0 = Instant::now();
    let cfg = SchedConfig {
        chunks_per_request: 2,
        requests_per_peer: 2,
        hub_requests: 2,
        stripe_chunks: 2,
        ..SchedConfig::default()
    };
    // From the Hub: two requests, then a third as soon as the first is over.
    let mut s = Scheduler::new(cfg.clone(), id(0), b"etag", Bitmap::empty(16));
    let first = s.plan(t0);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(s.plan(t0).is_empty(), "both Hub slots are taken");
    complete_all(&mut s, &first[..1]);
    let next = s.plan(t0);
    assert_eq!(next.len(), 1, "one slot was freed: {next:?}");
    assert_eq!(next[0].source, Source::Hub);

    // From a peer: the same, and a failed request frees its slot too.
    let mut s = Scheduler::new(cfg, id(0), b"etag", Bitmap::empty(16));
    (0..16).for_each(|i| s.set_verifiable(i));
    s.update_peer(id(1), Bitmap::full(16), 0, Duration::from_micros(100));
    let first = s.plan(t0);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(s.plan(t0).is_empty(), "both slots at the peer are taken");
    s.failed(first[1].chunks.clone(), first[1].source, Fault::Failed);
    let next = s.plan(t0);
    assert_eq!(
        next.len(),
        1,
        "the failed request's slot was freed: {next:?}"
    );
    // Half of a request done does not free its slot.
    s.completed(first[0].chunks.start, first[0].source);
    assert!(s.plan(t0).is_empty());
    s.completed(first[0].chunks.start + 1, first[0].source);
    assert_eq!(s.plan(t0).len(), 1);
}

#[test]
fn bits_a_peer_sets_past_the_last_chunk_are_ignored() {
    let now = Instant::now();
    let mut s = sched(10);
    let odd = Bitmap::from_bits(10, vec![0x00, 0xfe]).unwrap();
    s.update_peer(id(1), odd, 0, Duration::from_micros(100));
    s.assert_holders_counted();
    let reqs = s.plan(now);
    assert!(reqs
        .iter()
        .any(|r| r.source == Source::Peer(id(1)) && r.chunks == (9..10)));
    s.update_peer(id(1), Bitmap::empty(10), 0, Duration::from_micros(100));
    s.assert_holders_counted();
}

#[test]
fn nodes_choosing_among_equal_peers_spread_over_them() {
    let now = Instant::now();
    let holders: Vec<NodeId> = (1..=8).map(id).collect();
    let mut picked = std::collections::HashMap::<NodeId, usize>::new();
    for n in 100..164u8 {
        let mut s = Scheduler::new(SchedConfig::default(), id(n), b"etag", Bitmap::empty(4));
        (0..4).for_each(|i| s.set_verifiable(i));
        for h in &holders {
            s.update_peer(
                *h,
                Bitmap::full(4),
                2,
                Duration::from_micros(300 + u64::from(n % 7)),
            );
        }
        let reqs = s.plan(now);
        let Source::Peer(p) = reqs[0].source else {
            panic!("asked the Hub: {reqs:?}")
        };
        *picked.entry(p).or_default() += 1;
    }
    // 64 nodes over 8 equal peers: every peer gets some, none gets a crowd.
    assert_eq!(picked.len(), 8, "{picked:?}");
    assert!(picked.values().all(|&k| k <= 20), "{picked:?}");
}

#[test]
fn nodes_following_one_peer_ask_it_for_different_chunks_first() {
    let now = Instant::now();
    let firsts: std::collections::HashSet<u64> = (10..30u8)
        .map(|n| {
            let mut s = Scheduler::new(SchedConfig::default(), id(n), b"etag", Bitmap::empty(64));
            (0..64).for_each(|i| s.set_verifiable(i));
            s.set_hub_allowed(false);
            s.set_pullers((10..30u8).map(id).collect(), true);
            s.update_peer(id(1), Bitmap::full(64), 2, Duration::from_micros(300));
            let reqs = s.plan(now);
            assert_eq!(reqs.len(), 4, "{reqs:?}");
            reqs[0].chunks.start
        })
        .collect();
    assert!(firsts.len() >= 8, "20 nodes start at {firsts:?}");
}

#[test]
fn a_node_pulling_alone_asks_in_order() {
    let now = Instant::now();
    for n in 10..30u8 {
        let mut s = Scheduler::new(SchedConfig::default(), id(n), b"etag", Bitmap::empty(64));
        (0..64).for_each(|i| s.set_verifiable(i));
        s.set_hub_allowed(false);
        s.update_peer(id(1), Bitmap::full(64), 2, Duration::from_micros(300));
        let mut asked = Vec::new();
        while !s.is_done() {
            let reqs = s.plan(now);
            assert!(!reqs.is_empty(), "node {n} stalled");
            asked.extend(reqs.iter().flat_map(|r| r.chunks.clone()));
            complete_all(&mut s, &reqs);
        }
        assert_eq!(asked, (0..64).collect::<Vec<u64>>(), "node {n}");
    }
}

#[test]
fn a_stuck_stripe_passes_to_one_successor_per_grace_not_to_every_waiting_node() {
    let t0 = Instant::now();
    let cfg = one_stripe_of_64();
    let grace = cfg.origin_grace;
    let nodes: Vec<NodeId> = (1..=4).map(id).collect();
    let scheds: Vec<Scheduler> = nodes
        .iter()
        .map(|&n| {
            let mut s = Scheduler::new(cfg.clone(), n, b"etag", Bitmap::empty(64));
            s.set_pullers(nodes.clone(), true);
            s
        })
        .collect();
    // The stripe's order: its owner, then who takes over after one grace, then after two.
    let owner = scheds[0].stripe_owner(0);
    let mut waiting: Vec<Scheduler> = scheds.into_iter().filter(|s| s.me != owner).collect();
    assert_eq!(waiting.len(), 3);
    // The owner never makes progress. Nobody fetches before the grace; after one grace exactly
    // one node does; after two, one more; after three, the last.
    for s in &mut waiting {
        assert!(s.plan(t0).is_empty());
    }
    let mut fetching = 0;
    for k in 1..=3u32 {
        let t = t0 + grace * k;
        assert!(
            waiting
                .iter_mut()
                .all(|s| s.plan(t - Duration::from_millis(1)).is_empty()),
            "before grace {k}"
        );
        let now_fetching = waiting
            .iter_mut()
            .map(|s| {
                let reqs = s.plan(t);
                assert!(reqs.iter().all(|r| r.source == Source::Hub));
                !reqs.is_empty()
            })
            .filter(|fetches| *fetches)
            .count();
        fetching += now_fetching;
        assert_eq!(
            now_fetching, 1,
            "grace {k}: one more node takes the stripe over"
        );
    }
    assert_eq!(fetching, 3);
}

#[test]
fn a_new_owner_gets_a_whole_grace_of_its_own() {
    let t0 = Instant::now();
    let cfg = one_stripe_of_64();
    let grace = cfg.origin_grace;
    let (mut s, owner) = non_owner_of_stripe_0(&cfg, 64);
    assert!(s.plan(t0).is_empty());
    // Just before the grace runs out, the owner is replaced (say it was cut off and a new node
    // came): the wait starts again for the new owner.
    let others: Vec<NodeId> = (3..40).map(id).filter(|n| *n != owner).collect();
    let new = others
        .iter()
        .copied()
        .find(|&n| {
            let mut probe = Scheduler::new(cfg.clone(), s.me, b"etag", Bitmap::empty(64));
            probe.set_pullers(vec![n], true);
            probe.stripe_owner(0) == n
        })
        .expect("some node outranks this one for stripe 0");
    let swap = t0 + grace - Duration::from_secs(1);
    s.set_pullers(vec![new], true);
    assert!(s.plan(swap).is_empty(), "the new owner is waited for");
    assert!(s.plan(t0 + grace).is_empty(), "not the old owner's grace");
    assert!(
        !s.plan(swap + grace).is_empty(),
        "the new owner's grace ran out"
    );
}
