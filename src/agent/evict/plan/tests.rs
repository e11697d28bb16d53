use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};

use super::*;
use crate::repo::CommitId;

fn etag(n: u32) -> Etag {
    Etag::parse(&format!("{n:040x}")).unwrap()
}

/// A snapshot of `repo` at commit `n`, last used at `t`, naming blobs `(etag number, size)`.
fn snap(repo: &str, n: u32, t: u64, blobs: &[(u32, u64)]) -> Candidate {
    Candidate {
        id: (
            RepoKind::Model,
            RepoId::parse(repo).unwrap(),
            CommitId::parse(&format!("{n:040x}")).unwrap(),
        ),
        blobs: blobs.iter().map(|&(e, s)| (etag(e), s)).collect(),
        last_used_ms: t,
        protection: None,
    }
}

fn protect(mut c: Candidate, p: Protection) -> Candidate {
    c.protection = Some(p);
    c
}

fn limits(high: u64, low: u64) -> Limits {
    Limits {
        max_bytes: high + 1,
        high_bytes: high,
        low_bytes: low,
    }
}

/// (index, frees) of each planned removal.
fn order(p: &Plan) -> Vec<(usize, u64)> {
    p.evict.iter().map(|e| (e.index, e.frees)).collect()
}

#[test]
fn watermarks_are_fractions_of_the_quota_rounded_down() {
    let q = Quota {
        max_bytes: 1001,
        high_watermark: 0.9,
        low_watermark: 0.8,
    };
    assert_eq!(
        Limits::of(&q),
        Limits {
            max_bytes: 1001,
            high_bytes: 900,
            low_bytes: 800
        }
    );
}

#[test]
fn nothing_happens_at_or_below_the_high_watermark() {
    let c = vec![snap("a/x", 1, 1, &[(1, 50)]), snap("a/y", 2, 2, &[(2, 50)])];
    let p = plan(&c, 100, limits(100, 10));
    assert_eq!(
        p,
        Plan {
            triggered: false,
            evict: vec![],
            usage_after: 100,
            shortfall: 0
        }
    );
    assert!(plan(&c, 101, limits(100, 10)).triggered);
}

#[test]
fn least_recently_used_go_first_until_the_low_watermark() {
    // Listed out of order: the plan follows last use, not the input.
    let c = vec![
        snap("a/c", 3, 30, &[(3, 10)]),
        snap("a/a", 1, 10, &[(1, 10)]),
        snap("a/d", 4, 40, &[(4, 10)]),
        snap("a/b", 2, 20, &[(2, 10)]),
    ];
    let p = plan(&c, 40, limits(35, 20));
    assert_eq!(order(&p), vec![(1, 10), (3, 10)]);
    assert_eq!((p.usage_after, p.shortfall), (20, 0));
    // One byte lower a low watermark needs one more.
    assert_eq!(
        order(&plan(&c, 40, limits(35, 19))),
        vec![(1, 10), (3, 10), (0, 10)]
    );
}

#[test]
fn pinned_preloaded_in_use_and_just_pulled_snapshots_stay() {
    let c = vec![
        protect(snap("a/p", 1, 1, &[(1, 10)]), Protection::Pinned),
        protect(snap("a/q", 2, 2, &[(2, 10)]), Protection::Preloaded),
        protect(snap("a/r", 3, 3, &[(3, 10)]), Protection::InUse),
        snap("a/s", 4, 4, &[(4, 10)]),
        protect(snap("a/t", 5, 5, &[(5, 10)]), Protection::JustPulled),
    ];
    let p = plan(&c, 50, limits(45, 0));
    assert_eq!(order(&p), vec![(3, 10)]);
    assert_eq!(
        (p.usage_after, p.shortfall),
        (40, 40),
        "what could not be freed"
    );
}

#[test]
fn a_shared_blob_frees_its_bytes_with_the_last_snapshot_of_its_repository() {
    let c = vec![
        snap("a/m", 1, 1, &[(1, 5), (9, 100)]),
        snap("a/m", 2, 2, &[(9, 100), (2, 7)]),
        // Same content in another repository folder: a separate file, counted on its own.
        snap("a/other", 3, 3, &[(9, 100)]),
    ];
    let p = plan(&c, 212, limits(200, 100));
    assert_eq!(order(&p), vec![(0, 5), (1, 107)]);
    assert_eq!(p.usage_after, 100);
}

#[test]
fn a_snapshot_whose_blobs_a_protected_one_keeps_is_skipped() {
    let c = vec![
        snap("a/m", 1, 1, &[(9, 100)]),
        protect(snap("a/m", 2, 2, &[(9, 100), (2, 1)]), Protection::Pinned),
        snap("a/n", 3, 3, &[(3, 50)]),
        snap("a/e", 4, 0, &[]),
    ];
    let p = plan(&c, 151, limits(150, 100));
    assert_eq!(
        order(&p),
        vec![(2, 50)],
        "removing the oldest would free nothing"
    );
}

#[test]
fn an_impossible_target_evicts_everything_it_may_and_reports_the_shortfall() {
    let c = vec![
        snap("a/x", 1, 1, &[(1, 30)]),
        protect(snap("a/y", 2, 2, &[(2, 60)]), Protection::Pinned),
    ];
    // 20 bytes of blobs no snapshot names count too.
    let p = plan(&c, 110, limits(100, 50));
    assert_eq!(order(&p), vec![(0, 30)]);
    assert_eq!((p.triggered, p.usage_after, p.shortfall), (true, 80, 30));
}

/// Bytes of the distinct (repo, blob) pairs named by the snapshots `keep` selects.
fn named_bytes(c: &[Candidate], keep: impl Fn(usize) -> bool) -> u64 {
    let set: BTreeSet<(RepoId, &Etag, u64)> = (0..c.len())
        .filter(|&i| keep(i))
        .flat_map(|i| {
            c[i].blobs
                .iter()
                .map(move |(e, s)| (c[i].id.1.clone(), e, *s))
        })
        .collect();
    set.iter().map(|(_, _, s)| s).sum()
}

#[test]
fn random_caches_agree_with_a_naive_model() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut reached, mut short) = (0, 0);
    for round in 0..500 {
        let n = rng.random_range(0..12u32);
        let c: Vec<Candidate> = (0..n)
            .map(|i| {
                let repo = ["a/one", "a/two", "a/three"][rng.random_range(0..3)];
                let blobs: Vec<(u32, u64)> = (0..rng.random_range(0..4u32))
                    .map(|_| rng.random_range(0..8u32))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|e| (e, 1 + u64::from(e) * 10))
                    .collect();
                let mut s = snap(repo, i, rng.random_range(0..5), &blobs);
                if rng.random_bool(0.25) {
                    s.protection = Some(Protection::Pinned);
                }
                s
            })
            .collect();
        let orphans = rng.random_range(0..20);
        let usage = named_bytes(&c, |_| true) + orphans;
        let high = rng.random_range(0..=usage + 5);
        let low = rng.random_range(0..=high);
        let p = plan(&c, usage, limits(high, low));
        let gone: BTreeSet<usize> = p.evict.iter().map(|e| e.index).collect();
        let ctx = format!("round {round}: {c:?} usage {usage} high {high} low {low} {p:?}");
        if usage <= high {
            assert!(p.evict.is_empty() && !p.triggered, "{ctx}");
            continue;
        }
        // What the plan says it frees is what the blobs of the removed snapshots free.
        let freed: u64 = p.evict.iter().map(|e| e.frees).sum();
        let kept_bytes = named_bytes(&c, |i| !gone.contains(&i));
        assert_eq!(usage - freed, kept_bytes + orphans, "{ctx}");
        assert_eq!(p.usage_after, usage - freed, "{ctx}");
        assert_eq!(p.shortfall, p.usage_after.saturating_sub(low), "{ctx}");
        for w in p.evict.windows(2) {
            let (a, b) = (&c[w[0].index], &c[w[1].index]);
            assert!(a.last_used_ms <= b.last_used_ms, "LRU order: {ctx}");
        }
        assert!(gone.iter().all(|&i| c[i].protection.is_none()), "{ctx}");
        // It stops as soon as the low watermark is reached...
        if let Some(last) = p.evict.last() {
            assert!(
                p.usage_after + last.frees > low,
                "one removal too many: {ctx}"
            );
        }
        // ...and falls short only when every unprotected snapshot that frees anything is gone.
        if p.shortfall == 0 && !p.evict.is_empty() {
            reached += 1;
        }
        if p.shortfall > 0 {
            short += 1;
            for i in (0..c.len()).filter(|i| !gone.contains(i) && c[*i].protection.is_none()) {
                let without = named_bytes(&c, |j| !gone.contains(&j) && j != i);
                assert_eq!(without, kept_bytes, "{i} could have freed more: {ctx}");
            }
        }
    }
    assert!(
        reached > 50 && short > 50,
        "both outcomes are exercised: {reached} {short}"
    );
}
