//! TLS identity bound to the node key: a self-signed certificate whose key *is* the node's
//! ed25519 key, TLS 1.3 only, client certificates required, and verifiers that accept exactly
//! one ed25519 certificate and return the peer's [`NodeId`] from its public key.
//!
//! What proves a peer's identity is the TLS 1.3 `CertificateVerify` signature over the handshake
//! transcript, checked with the certificate's key ([`rustls::crypto::verify_tls13_signature`]
//! with ring's algorithms): only the holder of the node key can make it. The certificate is just
//! the envelope of that key, so its self-signature, names and validity dates are not consulted
//! (no clock, no CA). Membership in the cluster is proven separately by the hello MAC.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::TransferError;
use crate::node::{NodeId, NodeKey};
use crate::wire::{version_of_alpn, ALPNS};

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an ed25519 PKCS#8 v1 private key (RFC 8410); the 32 secret bytes follow.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The server name a client puts in its hello (not checked: identity is the key).
pub(crate) const SERVER_NAME: &str = "hfmesh";

/// This node's certificate and key, as TLS wants them.
pub(crate) struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// The self-signed certificate of `key`.
    pub(crate) fn new(key: &NodeKey) -> Result<Identity, TransferError> {
        let tls = |e: &dyn std::fmt::Display| TransferError::Tls(e.to_string());
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&key.secret());
        let pkcs8 = PrivatePkcs8KeyDer::from(der);
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(|e| tls(&e))?;
        let mut params =
            rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(|e| tls(&e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, key.id().to_string());
        let cert = params.self_signed(&pair).map_err(|e| tls(&e))?;
        let cert = cert.der().clone();
        if node_id_of(&cert).ok() != Some(key.id()) {
            return Err(TransferError::Tls(
                "the certificate does not carry the node key".into(),
            ));
        }
        Ok(Identity { cert, key: pkcs8 })
    }

    fn chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }
}

/// The node id of an ed25519 certificate: its public key. Any other key type is refused.
pub(crate) fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    spki.as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX)
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(NodeId)
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))
}

/// The peer's node id on an established connection.
pub(crate) fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match certs.as_slice() {
        [one] => node_id_of(one).ok(),
        _ => None,
    }
}

/// ring's provider (key exchange, signatures, randomness) with aws-lc-rs's TLS 1.3 suites,
/// AES-128-GCM first. Every packet of a chunk is sealed on one end and opened on the other:
/// - AES-128-GCM instead of AES-256-GCM (rustls's first choice): 10 rounds per block against
///   14, and what QUIC's Initial packets use anyway.
/// - aws-lc-rs's AES-GCM uses AVX-512 (VAES) where the CPU has it; ring's stops at AVX2. On
///   this project's machine (AMD EPYC) it seals 65000-byte packets 1.23× as fast (12.3 against
///   10.0 GB/s on one core; the benchmark's "Packet sealing" row), and sealing fell from 21% to
///   15% of the serving agent's CPU in a profile of a 1 GiB pull.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// The ALPNs of the protocol versions up to `newest`, newest first.
fn alpns(newest: u16) -> Vec<Vec<u8>> {
    ALPNS
        .iter()
        .filter(|a| version_of_alpn(a).is_some_and(|v| v <= newest))
        .map(|a| a.to_vec())
        .collect()
}

/// The protocol version the handshake of `conn` settled on (from its ALPN).
pub(crate) fn negotiated_version(conn: &quinn::Connection) -> Option<u16> {
    let data = conn.handshake_data()?;
    let data = data.downcast_ref::<quinn::crypto::rustls::HandshakeData>()?;
    version_of_alpn(data.protocol.as_deref()?)
}

/// The server side: TLS 1.3, the ALPNs of the protocol versions up to `newest` (see
/// [`ALPNS`]), client certificates required, no resumption.
pub(crate) fn server_config(
    id: &Identity,
    newest: u16,
) -> Result<rustls::ServerConfig, TransferError> {
    let (chain, key) = id.chain();
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransferError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(None)))
        .with_single_cert(chain, key)
        .map_err(|e| TransferError::Tls(e.to_string()))?;
    c.alpn_protocols = alpns(newest);
    c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    c.send_tls13_tickets = 0;
    Ok(c)
}

/// The client side for dialling `expected`: the handshake fails unless the server's key is
/// `expected`. The returned verifier remembers whom it saw, to report a wrong identity.
pub(crate) fn client_config(
    id: &Identity,
    expected: NodeId,
    newest: u16,
) -> Result<(rustls::ClientConfig, Arc<PeerVerifier>), TransferError> {
    let (chain, key) = id.chain();
    let verifier = Arc::new(PeerVerifier::new(Some(expected)));
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransferError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(chain, key)
        .map_err(|e| TransferError::Tls(e.to_string()))?;
    c.alpn_protocols = alpns(newest);
    c.resumption = rustls::client::Resumption::disabled();
    Ok((c, verifier))
}

/// Accepts exactly one ed25519 certificate (of `expected`, when set) and checks the handshake
/// signature with its key.
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    expected: Option<NodeId>,
    seen: Mutex<Option<NodeId>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn new(expected: Option<NodeId>) -> PeerVerifier {
        PeerVerifier {
            expected,
            seen: Mutex::new(None),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    /// The node id of the last certificate presented, if one could be read.
    pub(crate) fn seen(&self) -> Option<NodeId> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        let id = node_id_of(end_entity)?;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
        match self.expected {
            Some(expected) if expected != id => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PROTOCOL_VERSION;

    #[test]
    fn certificates_carry_the_node_key() {
        let key = NodeKey::from_secret([11; 32]);
        let id = Identity::new(&key).unwrap();
        assert_eq!(node_id_of(&id.cert).unwrap(), key.id());
        let v = PeerVerifier::new(Some(NodeKey::from_secret([12; 32]).id()));
        assert!(v.check(&id.cert, &[]).is_err());
        assert_eq!(v.seen(), Some(key.id()));
        let v = PeerVerifier::new(Some(key.id()));
        assert!(v.check(&id.cert, &[]).is_ok());
        assert!(v.check(&id.cert, std::slice::from_ref(&id.cert)).is_err());
        assert!(node_id_of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }

    /// Two nodes agree on AES-128-GCM, with each other's keys checked both ways (a handshake
    /// over memory with the same configurations the QUIC endpoint uses).
    #[test]
    fn peers_agree_on_aes_128_gcm() {
        let (a, b) = (
            NodeKey::from_secret([21; 32]),
            NodeKey::from_secret([22; 32]),
        );
        let (ia, ib) = (Identity::new(&a).unwrap(), Identity::new(&b).unwrap());
        let server = Arc::new(server_config(&ib, PROTOCOL_VERSION).unwrap());
        let (client, _) = client_config(&ia, b.id(), PROTOCOL_VERSION).unwrap();
        let name = rustls::pki_types::ServerName::try_from("hfmesh").unwrap();
        let mut c = rustls::Connection::from(
            rustls::ClientConnection::new(Arc::new(client), name).unwrap(),
        );
        let mut s = rustls::Connection::from(rustls::ServerConnection::new(server).unwrap());
        /// Hands everything `from` has to send to `to`.
        fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) {
            let mut wire = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut wire).unwrap();
            }
            let mut rd = &wire[..];
            while !rd.is_empty() {
                to.read_tls(&mut rd).unwrap();
            }
            to.process_new_packets().unwrap();
        }
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
            pump(&mut c, &mut s);
            pump(&mut s, &mut c);
        }
        assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake done");
        for suite in [c.negotiated_cipher_suite(), s.negotiated_cipher_suite()] {
            assert_eq!(
                suite.unwrap().suite(),
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            );
        }
    }
}
