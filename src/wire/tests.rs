use super::*;
use crate::etag::Etag;
use crate::manifest::SignedManifest;
use crate::node::{NodeKey, Topology};
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::bitmap::{Bitmap, MAX_CHUNKS};

fn etag() -> Etag {
    Etag::parse(&"ab".repeat(32)).unwrap()
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        node: NodeKey::from_secret([3; 32]).id(),
        topology: Topology {
            zone: Some("z1".into()),
            rack: None,
        },
        mac: [9; MAC_LEN],
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::Hello(hello()),
        Request::Manifest {
            kind: RepoKind::Dataset,
            repo: RepoId::parse("acme/data").unwrap(),
            commit: CommitId::parse(&"c".repeat(40)).unwrap(),
        },
        Request::Have { etag: etag() },
        Request::Hashes { etag: etag() },
        Request::Chunks {
            etag: etag(),
            first: 7,
            count: MAX_CHUNKS_PER_REQUEST,
        },
        Request::Holdings,
        Request::Swarm {
            etag: etag(),
            listed: true,
        },
        Request::Ask {
            items: vec![ask_item(); MAX_ASK_ITEMS],
        },
    ]
}

fn ask_item() -> AskItem {
    AskItem {
        etag: etag(),
        listed: false,
        hashes: true,
    }
}

fn held_snapshot(repo: &str) -> HeldSnapshot {
    HeldSnapshot {
        kind: RepoKind::Model,
        repo: RepoId::parse(repo).unwrap(),
        commit: CommitId::parse(&"c".repeat(40)).unwrap(),
        files: 3,
        bytes: 12345,
    }
}

fn held_blob(byte: &str, present: u64) -> HeldBlob {
    HeldBlob {
        etag: Etag::parse(&byte.repeat(32)).unwrap(),
        size: 3 * CHUNK_SIZE + 1,
        present,
        chunks: 4,
    }
}

fn responses() -> Vec<Response> {
    let mut bits = Bitmap::empty(20);
    bits.set(3);
    vec![
        Response::Hello(hello()),
        Response::Manifest(None),
        Response::Manifest(Some(SignedManifest {
            body: vec![1, 2, 3],
            signer: NodeKey::from_secret([4; 32]).id(),
            signature: vec![5; 64],
        })),
        Response::Have(None),
        Response::Hashes(None),
        Response::Hashes(Some(vec![None, Some([7; 32])])),
        Response::Have(Some(bits)),
        Response::Have(Some(Bitmap::full(MAX_CHUNKS))),
        Response::Chunk {
            index: 5,
            len: CHUNK_SIZE as u32,
        },
        Response::Missing { index: 6 },
        Response::Holdings(Holdings::default()),
        Response::Swarm {
            have: None,
            others: vec![],
        },
        Response::Swarm {
            have: Some(Bitmap::full(9)),
            others: vec![hint(1); MAX_PEER_HINTS],
        },
        Response::Holdings(Holdings {
            snapshots: vec![held_snapshot("acme/x")],
            blobs: vec![held_blob("ab", 4), held_blob("cd", 1)],
            truncated: true,
        }),
        Response::Error {
            code: ErrorCode::Internal,
            message: "disk on fire".into(),
        },
        Response::Ask(vec![
            Asked {
                have: None,
                hashes: None,
                others: vec![],
            },
            Asked {
                have: Some(Bitmap::full(2)),
                hashes: Some(vec![Some([1; 32]), None]),
                others: vec![hint(3); MAX_PEER_HINTS],
            },
        ]),
    ]
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug + Clone>(m: &M) {
    let bytes = encode(m).unwrap();
    assert_eq!(
        decode::<M>(&bytes).unwrap(),
        Decoded::Frame {
            message: m.clone(),
            consumed: bytes.len()
        }
    );
    // Every proper prefix asks for more, and never for more than the frame.
    for cut in 0..bytes.len() {
        match decode::<M>(&bytes[..cut]).unwrap() {
            Decoded::NeedMore(n) => assert!(n > cut && n <= bytes.len()),
            Decoded::Frame { .. } => panic!("a prefix of {cut} bytes decoded"),
        }
    }
    // Two frames back to back decode one at a time.
    let mut two = bytes.clone();
    two.extend_from_slice(&bytes);
    let Decoded::Frame { consumed, .. } = decode::<M>(&two).unwrap() else {
        panic!("no frame");
    };
    assert_eq!(consumed, bytes.len());
}

#[test]
fn every_message_round_trips() {
    requests().iter().for_each(round_trip);
    responses().iter().for_each(round_trip);
}

#[test]
fn directions_do_not_mix() {
    let req = encode(&Request::Have { etag: etag() }).unwrap();
    assert!(matches!(
        decode::<Response>(&req),
        Err(WireError::UnknownKind(_))
    ));
    let resp = encode(&Response::Missing { index: 1 }).unwrap();
    assert!(matches!(
        decode::<Request>(&resp),
        Err(WireError::UnknownKind(_))
    ));
}

#[test]
fn oversized_frames_are_refused_from_the_header_alone() {
    // Only the 5 header bytes exist: the decoder must refuse, not wait for (or allocate) 4 GiB.
    let mut head = [0x01u8, 0, 0, 0, 0];
    head[1..].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode::<Request>(&head),
        Err(WireError::TooLarge { .. })
    ));
    head[1..].copy_from_slice(&((MAX_CONTROL_FRAME + 1) as u32).to_be_bytes());
    assert!(matches!(
        parse_header::<Request>(&head),
        Err(WireError::TooLarge { .. })
    ));
    let mut have = [0x83u8, 0, 0, 0, 0];
    have[1..].copy_from_slice(&((MAX_HAVE_FRAME + 1) as u32).to_be_bytes());
    assert!(parse_header::<Response>(&have).is_err());
    let mut manifest = [0x82u8, 0, 0, 0, 0];
    manifest[1..].copy_from_slice(&((MAX_MANIFEST_FRAME + 1) as u32).to_be_bytes());
    assert!(parse_header::<Response>(&manifest).is_err());
    manifest[1..].copy_from_slice(&(MAX_MANIFEST_FRAME as u32).to_be_bytes());
    assert!(parse_header::<Response>(&manifest).is_ok());
}

#[test]
fn encoder_refuses_what_a_decoder_would_refuse() {
    assert!(encode(&Request::Chunks {
        etag: etag(),
        first: 0,
        count: 0
    })
    .is_err());
    let huge = Response::Manifest(Some(SignedManifest {
        body: vec![0; crate::manifest::MAX_MANIFEST_BYTES + 1],
        signer: NodeKey::from_secret([4; 32]).id(),
        signature: vec![5; 64],
    }));
    assert!(encode(&huge).is_err());
    let long = Response::Error {
        code: ErrorCode::BadRequest,
        message: "é".repeat(MAX_ERROR_MESSAGE),
    };
    let Decoded::Frame {
        message: Response::Error { message, .. },
        ..
    } = decode::<Response>(&encode(&long).unwrap()).unwrap()
    else {
        panic!("not an error");
    };
    assert!(message.len() <= MAX_ERROR_MESSAGE);
}

fn raw_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn counts_and_indices_beyond_their_bounds_are_refused() {
    let chunks = |first: u64, count: u32| {
        raw_frame(0x04, &postcard::to_stdvec(&(etag(), first, count)).unwrap())
    };
    assert!(decode::<Request>(&chunks(0, 1)).is_ok());
    for (first, count) in [
        (0, MAX_CHUNKS_PER_REQUEST + 1),
        (0, 0),
        (MAX_CHUNKS, 1),
        (MAX_CHUNKS - 1, 2),
        (u64::MAX, 1),
    ] {
        assert!(
            matches!(
                decode::<Request>(&chunks(first, count)),
                Err(WireError::Invalid(_))
            ),
            "{first}+{count}"
        );
    }
    let chunk =
        |index: u64, len: u32| raw_frame(0x84, &postcard::to_stdvec(&(index, len)).unwrap());
    assert!(decode::<Response>(&chunk(MAX_CHUNKS, 1)).is_err());
    assert!(decode::<Response>(&chunk(0, CHUNK_SIZE as u32 + 1)).is_err());
    // A bitmap claiming more chunks than its bits hold, or more than MAX_CHUNKS.
    let lying = raw_frame(
        0x83,
        &postcard::to_stdvec(&Some((1000u64, vec![0u8; 2]))).unwrap(),
    );
    assert!(decode::<Response>(&lying).is_err());
    let too_many = raw_frame(
        0x83,
        &postcard::to_stdvec(&Some((
            MAX_CHUNKS + 8,
            vec![0u8; (MAX_CHUNKS / 8 + 1) as usize],
        )))
        .unwrap(),
    );
    assert!(decode::<Response>(&too_many).is_err());
    for version in MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION {
        let mut known = hello();
        known.version = version;
        let frame = raw_frame(0x01, &postcard::to_stdvec(&known).unwrap());
        assert!(decode::<Request>(&frame).is_ok(), "version {version}");
    }
    for version in [MIN_PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
        let mut other = hello();
        other.version = version;
        let frame = raw_frame(0x01, &postcard::to_stdvec(&other).unwrap());
        assert!(decode::<Request>(&frame).is_err(), "version {version}");
    }
    // More peer hints than an answer may carry.
    let crowd = Response::Swarm {
        have: None,
        others: vec![hint(2); MAX_PEER_HINTS + 1],
    };
    let body = postcard::to_stdvec(&(None::<Bitmap>, vec![hint(2); MAX_PEER_HINTS + 1])).unwrap();
    assert!(crowd.validate().is_err());
    assert!(decode::<Response>(&raw_frame(0x89, &body)).is_err());
    // An ask about no blob or about more than its limit, either way.
    for n in [0, MAX_ASK_ITEMS + 1] {
        let ask = Request::Ask {
            items: vec![ask_item(); n],
        };
        assert!(ask.validate().is_err(), "{n} items");
        let body = postcard::to_stdvec(&vec![ask_item(); n]).unwrap();
        assert!(decode::<Request>(&raw_frame(0x08, &body)).is_err(), "{n}");
        let answer = Response::Ask(vec![
            Asked {
                have: None,
                hashes: None,
                others: vec![],
            };
            n
        ]);
        assert!(answer.validate().is_err(), "{n} answers");
    }
    // An answer about a blob with too many peer hints or a lying bitmap.
    let crowded = Asked {
        have: None,
        hashes: None,
        others: vec![hint(2); MAX_PEER_HINTS + 1],
    };
    assert!(Response::Ask(vec![crowded]).validate().is_err());
    let body = postcard::to_stdvec(&vec![(
        Some((1000u64, vec![0u8; 2])),
        None::<()>,
        Vec::<u8>::new(),
    )]);
    assert!(decode::<Response>(&raw_frame(0x8a, &body.unwrap())).is_err());
}

#[test]
fn alpns_name_the_versions_spoken() {
    assert_eq!(version_of_alpn(ALPN), Some(PROTOCOL_VERSION));
    assert_eq!(version_of_alpn(b"hfmesh/2"), Some(2));
    for other in [
        &b"hfmesh/1"[..],
        b"hfmesh/4",
        b"hfmesh/",
        b"hfmesh/x",
        b"h3",
        b"",
    ] {
        assert_eq!(version_of_alpn(other), None, "{other:?}");
    }
    let versions: Vec<u16> = ALPNS.iter().filter_map(|a| version_of_alpn(a)).collect();
    assert_eq!(
        versions,
        (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION)
            .rev()
            .collect::<Vec<_>>()
    );
}

fn hint(n: u8) -> PeerHint {
    PeerHint {
        node: NodeKey::from_secret([n; 32]).id(),
        addr: ([10, 0, 0, n], 4002).into(),
        topology: Topology {
            zone: Some("z1".into()),
            rack: Some(format!("r{n}")),
        },
    }
}

#[test]
fn garbage_and_truncation_are_errors_never_panics() {
    // Bodies that are not the message, or have bytes left over.
    assert!(decode::<Request>(&raw_frame(0x03, b"not an etag at all")).is_err());
    let mut trailing = postcard::to_stdvec(&etag()).unwrap();
    trailing.push(0);
    assert!(matches!(
        decode::<Request>(&raw_frame(0x03, &trailing)),
        Err(WireError::Malformed(_))
    ));
    // Truncated bodies (header says less than the message needs).
    let good = encode(&Request::Have { etag: etag() }).unwrap();
    let body = &good[HEADER_LEN..good.len() - 1];
    assert!(decode::<Request>(&raw_frame(0x03, body)).is_err());
    // Unknown kinds.
    assert!(matches!(
        decode::<Request>(&[0x7f, 0, 0, 0, 0]),
        Err(WireError::UnknownKind(0x7f))
    ));
    // A deterministic pseudo-random fuzz over every kind: any outcome but a panic is fine.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 96) as usize;
        let kinds = [
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
        ];
        let mut body = Vec::with_capacity(len);
        let mut y = x;
        for _ in 0..len {
            y = y
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            body.push((y >> 56) as u8);
        }
        let frame = raw_frame(kinds[(x >> 40) as usize % kinds.len()], &body);
        let _ = decode::<Request>(&frame);
        let _ = decode::<Response>(&frame);
        let _ = decode::<Response>(&body);
    }
}

#[test]
fn close_codes_round_trip() {
    for c in [
        CloseCode::Done,
        CloseCode::BadHello,
        CloseCode::Protocol,
        CloseCode::Shutdown,
    ] {
        assert_eq!(CloseCode::from_u32(c as u32), Some(c));
    }
    assert_eq!(CloseCode::from_u32(999), None);
}

#[test]
fn the_largest_holdings_answer_fits_its_frame() {
    let repo = format!("{}/{}", "o".repeat(40), "n".repeat(55));
    assert_eq!(repo.len(), crate::repo::MAX_REPO_ID_LEN);
    let big = Holdings {
        snapshots: vec![
            HeldSnapshot {
                files: u64::MAX,
                bytes: u64::MAX,
                ..held_snapshot(&repo)
            };
            MAX_HELD_SNAPSHOTS
        ],
        blobs: vec![
            HeldBlob {
                etag: etag(),
                size: MAX_CHUNKS * CHUNK_SIZE,
                present: MAX_CHUNKS,
                chunks: MAX_CHUNKS,
            };
            MAX_HELD_BLOBS
        ],
        truncated: true,
    };
    let bytes = encode(&Response::Holdings(big)).unwrap();
    assert!(bytes.len() - HEADER_LEN <= MAX_HOLDINGS_FRAME);
    let mut head = [0x88u8, 0, 0, 0, 0];
    head[1..].copy_from_slice(&((MAX_HOLDINGS_FRAME + 1) as u32).to_be_bytes());
    assert!(matches!(
        parse_header::<Response>(&head),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn holdings_beyond_their_bounds_are_refused() {
    let frame = |h: &Holdings| raw_frame(0x88, &postcard::to_stdvec(h).unwrap());
    let ok = Holdings {
        snapshots: vec![held_snapshot("acme/x")],
        blobs: vec![held_blob("ab", 4)],
        truncated: false,
    };
    assert!(decode::<Response>(&frame(&ok)).is_ok());
    let lying = [
        HeldBlob {
            present: 5,
            ..held_blob("ab", 0)
        },
        HeldBlob {
            chunks: 3,
            present: 3,
            ..held_blob("ab", 0)
        },
        HeldBlob {
            size: (MAX_CHUNKS + 1) * CHUNK_SIZE,
            chunks: MAX_CHUNKS + 1,
            present: 0,
            ..held_blob("ab", 0)
        },
    ];
    for blob in lying {
        let h = Holdings {
            blobs: vec![blob.clone()],
            ..ok.clone()
        };
        assert!(
            matches!(decode::<Response>(&frame(&h)), Err(WireError::Invalid(_))),
            "{blob:?}"
        );
        assert!(encode(&Response::Holdings(h)).is_err(), "{blob:?}");
    }
    let too_many = Holdings {
        snapshots: vec![held_snapshot("acme/x"); MAX_HELD_SNAPSHOTS + 1],
        ..Holdings::default()
    };
    assert!(matches!(
        decode::<Response>(&frame(&too_many)),
        Err(WireError::Invalid(_))
    ));
    // A holdings request carries no body: any byte is left over.
    assert!(matches!(
        decode::<Request>(&raw_frame(0x06, &[0])),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn holdings_are_capped_with_partial_blobs_first() {
    let snapshots = (0..MAX_HELD_SNAPSHOTS + 2)
        .map(|i| held_snapshot(&format!("acme/m{i}")))
        .collect();
    let mut blobs = vec![held_blob("ab", 4); MAX_HELD_BLOBS];
    blobs.push(held_blob("cd", 2));
    let h = Holdings::capped(snapshots, blobs);
    assert!(h.truncated);
    assert_eq!(h.snapshots.len(), MAX_HELD_SNAPSHOTS);
    assert_eq!(h.snapshots[0].repo.as_str(), "acme/m0");
    assert_eq!(h.blobs.len(), MAX_HELD_BLOBS);
    assert_eq!(
        h.blobs[0],
        held_blob("cd", 2),
        "the partial blob survives the cut"
    );
    assert!(!h.blobs[0].is_complete() && h.blobs[1].is_complete());
    let small = Holdings::capped(vec![held_snapshot("acme/x")], vec![held_blob("ab", 1)]);
    assert!(!small.truncated);
    assert!(small.validate().is_ok());
}
