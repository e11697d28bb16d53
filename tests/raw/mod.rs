//! A hand-made protocol client, independent of `hfmesh::transfer`, that can break the rules:
//! skip the hello, use another cluster's secret, send garbage frames.

use std::net::SocketAddr;
use std::sync::Arc;

use hfmesh::etag::Etag;
use hfmesh::node::{ClusterSecret, NodeId, Topology};
use hfmesh::wire::{self, Decoded, Hello, Request, Response, ALPN, PROTOCOL_VERSION};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Close code of a refused hello (`CloseCode::BadHello`).
pub const BAD_HELLO: u64 = wire::CloseCode::BadHello as u64;
/// Close code of a protocol violation (`CloseCode::Protocol`).
pub const PROTOCOL: u64 = wire::CloseCode::Protocol as u64;

#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A raw QUIC connection to a server, authenticated by TLS only.
pub struct RawPeer {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    node: NodeId,
}

impl RawPeer {
    /// Handshakes with a fresh ed25519 identity.
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let node = NodeId(key.public_key_raw().try_into().unwrap());
        let cert = rcgen::CertificateParams::new(vec!["raw".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
            .with_client_auth_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let conn = endpoint
            .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), addr, "hfmesh")
            .unwrap()
            .await
            .unwrap();
        RawPeer {
            _endpoint: endpoint,
            conn,
            node,
        }
    }

    fn hello(&self, secret: &ClusterSecret) -> Request {
        let mut exported = [0u8; 32];
        self.conn
            .export_keying_material(&mut exported, b"hfmesh hello v1", b"client")
            .unwrap();
        Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            node: self.node,
            topology: Topology::default(),
            mac: *blake3::keyed_hash(&secret.hello_key(), &exported).as_bytes(),
        })
    }

    /// Sends `bytes` on a new stream and reads the whole answer (an error if the connection
    /// closes first).
    async fn exchange(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(bytes).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())
    }

    async fn close_code(&self) -> Option<u64> {
        match self.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code.into_inner()),
            _ => None,
        }
    }

    /// Does the hello under `secret`; panics unless the server answered with a hello.
    async fn good_hello(&self, secret: &ClusterSecret) {
        let answer = self
            .exchange(&wire::encode(&self.hello(secret)).unwrap())
            .await
            .unwrap();
        assert!(matches!(
            wire::decode::<Response>(&answer),
            Ok(Decoded::Frame {
                message: Response::Hello(_),
                ..
            })
        ));
    }

    /// Asks for a bitmap on the first stream, without a hello. Returns the close code; panics
    /// if any byte of an answer arrived.
    pub async fn request_without_hello(&self, etag: Etag) -> Option<u64> {
        let req = wire::encode(&Request::Have { etag }).unwrap();
        let answer = self.exchange(&req).await;
        assert!(answer.is_err(), "answered without a hello: {answer:?}");
        self.close_code().await
    }

    /// Sends a hello with the MAC of `secret`, then (if still open) a request. Returns the close
    /// code; panics if any answer arrived.
    pub async fn hello_then_request(&self, secret: &ClusterSecret, etag: Etag) -> Option<u64> {
        let hello = self
            .exchange(&wire::encode(&self.hello(secret)).unwrap())
            .await;
        assert!(hello.is_err(), "the server answered a bad hello: {hello:?}");
        let req = wire::encode(&Request::Have { etag }).unwrap();
        assert!(self.exchange(&req).await.is_err());
        self.close_code().await
    }

    /// A good hello, then `frame` on a new stream. Returns the close code.
    pub async fn hello_then_frame(&self, secret: &ClusterSecret, frame: &[u8]) -> Option<u64> {
        self.good_hello(secret).await;
        let answer = self.exchange(frame).await;
        assert!(answer.is_err(), "answered garbage: {answer:?}");
        self.close_code().await
    }

    /// A good hello, then a `Have` request; whether it was answered with a bitmap frame.
    pub async fn hello_then_have(&self, secret: &ClusterSecret, etag: Etag) -> bool {
        self.good_hello(secret).await;
        let answer = self
            .exchange(&wire::encode(&Request::Have { etag }).unwrap())
            .await
            .unwrap();
        matches!(
            wire::decode::<Response>(&answer),
            Ok(Decoded::Frame {
                message: Response::Have(_),
                ..
            })
        )
    }
}
