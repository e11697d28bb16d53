//! The identify `agent_version` string that carries what a node advertises beyond its libp2p
//! identity: its QUIC transfer endpoint (port, and IP when it has a specific one) and its
//! topology labels. Pure: encoding and a strict parser for what peers send.
//!
//! Format: `hfmesh/<crate version>;quic=<port | ip:port>[;zone=<label>][;rack=<label>]`.
//! Labels are percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`), so `;` and `=` never
//! appear inside a value. Unknown `key=value` fields are ignored (room for later versions);
//! everything else that does not fit is refused.

use std::net::{IpAddr, SocketAddr};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::node::Topology;

/// What every hfmesh agent version starts with.
const PREFIX: &str = "hfmesh/";
/// Longest agent version accepted from a peer, in bytes.
pub(super) const MAX_AGENT_LEN: usize = 512;
/// Longest decoded zone or rack label, in bytes.
pub(super) const MAX_LABEL_LEN: usize = 64;
/// Longest software version token, in bytes.
const MAX_VERSION_LEN: usize = 32;

/// Bytes that are escaped in labels: all but the RFC 3986 unreserved set.
const LABEL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Advert {
    /// The peer's software version.
    pub version: String,
    /// The QUIC IP the peer named, if it named one.
    pub quic_ip: Option<IpAddr>,
    /// The QUIC port (never 0).
    pub quic_port: u16,
    /// Zone and rack labels.
    pub topology: Topology,
}

/// Why a peer's agent version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum AdvertError {
    /// Longer than [`MAX_AGENT_LEN`].
    #[error("agent version longer than {MAX_AGENT_LEN} bytes")]
    TooLong,
    /// Not an hfmesh node (or a malformed version token).
    #[error("not an hfmesh agent version")]
    NotHfmesh,
    /// A field without `=`, or the same field twice.
    #[error("malformed or repeated field {0:?}")]
    BadField(String),
    /// The `quic` field is missing or not a port / socket address with a non-zero port.
    #[error("missing or invalid quic endpoint")]
    BadQuic,
    /// A label that is badly escaped, not UTF-8, too long or holds control characters.
    #[error("invalid {0} label")]
    BadLabel(&'static str),
}

/// The agent version for a node whose QUIC endpoint is `quic` (the IP is included only when it
/// is a specific one) and whose labels are `topology`.
pub(super) fn encode(quic: SocketAddr, topology: &Topology) -> String {
    let mut s = format!("{PREFIX}{}", env!("CARGO_PKG_VERSION"));
    if quic.ip().is_unspecified() {
        s.push_str(&format!(";quic={}", quic.port()));
    } else {
        s.push_str(&format!(";quic={quic}"));
    }
    for (name, value) in [("zone", &topology.zone), ("rack", &topology.rack)] {
        if let Some(v) = value {
            s.push_str(&format!(";{name}={}", utf8_percent_encode(v, LABEL_ESCAPE)));
        }
    }
    s
}

/// Parses a peer's agent version, refusing anything that is not exactly what [`encode`] makes
/// (apart from unknown fields).
pub(super) fn parse(s: &str) -> Result<Advert, AdvertError> {
    if s.len() > MAX_AGENT_LEN {
        return Err(AdvertError::TooLong);
    }
    let rest = s.strip_prefix(PREFIX).ok_or(AdvertError::NotHfmesh)?;
    let mut fields = rest.split(';');
    let version = fields.next().unwrap_or_default();
    if version.is_empty()
        || version.len() > MAX_VERSION_LEN
        || !version.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
    {
        return Err(AdvertError::NotHfmesh);
    }
    let mut quic: Option<(Option<IpAddr>, u16)> = None;
    let mut zone: Option<Option<String>> = None;
    let mut rack: Option<Option<String>> = None;
    for field in fields {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| AdvertError::BadField(truncated(field)))?;
        let repeated = match name {
            "quic" => quic.replace(parse_quic(value)?).is_some(),
            "zone" => zone.replace(Some(parse_label(value, "zone")?)).is_some(),
            "rack" => rack.replace(Some(parse_label(value, "rack")?)).is_some(),
            _ => false,
        };
        if repeated {
            return Err(AdvertError::BadField(truncated(name)));
        }
    }
    let (quic_ip, quic_port) = quic.ok_or(AdvertError::BadQuic)?;
    Ok(Advert {
        version: version.to_string(),
        quic_ip,
        quic_port,
        topology: Topology {
            zone: zone.flatten(),
            rack: rack.flatten(),
        },
    })
}

impl Advert {
    /// The peer's QUIC endpoint, given the IP its libp2p connection comes from. The advertised
    /// IP wins, except a loopback one seen over a non-loopback connection (a misconfigured
    /// peer would otherwise send us to ourselves).
    pub(super) fn quic_addr(&self, seen: IpAddr) -> SocketAddr {
        let ip = match self.quic_ip {
            Some(ip) if !ip.is_loopback() || seen.is_loopback() => ip,
            _ => seen,
        };
        SocketAddr::new(ip, self.quic_port)
    }
}

fn parse_quic(value: &str) -> Result<(Option<IpAddr>, u16), AdvertError> {
    let (ip, port) = if value.contains(':') {
        let addr: SocketAddr = value.parse().map_err(|_| AdvertError::BadQuic)?;
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(AdvertError::BadQuic);
        }
        (Some(addr.ip()), addr.port())
    } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        (None, value.parse().map_err(|_| AdvertError::BadQuic)?)
    } else {
        return Err(AdvertError::BadQuic);
    };
    if port == 0 {
        return Err(AdvertError::BadQuic);
    }
    Ok((ip, port))
}

fn parse_label(value: &str, which: &'static str) -> Result<String, AdvertError> {
    let bad = || AdvertError::BadLabel(which);
    let escaped_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b));
    if !escaped_ok {
        return Err(bad());
    }
    let decoded = percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| bad())?
        .into_owned();
    if decoded.len() > MAX_LABEL_LEN || decoded.chars().any(char::is_control) {
        return Err(bad());
    }
    // A stray `%` not followed by two hex digits decodes to itself; refuse it.
    if utf8_percent_encode(&decoded, LABEL_ESCAPE).to_string() != value {
        return Err(bad());
    }
    Ok(decoded)
}

fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(zone: Option<&str>, rack: Option<&str>) -> Topology {
        Topology {
            zone: zone.map(str::to_string),
            rack: rack.map(str::to_string),
        }
    }

    #[test]
    fn round_trips() {
        let cases = [
            ("0.0.0.0:7000", topo(Some("eu-west-1a"), Some("r12"))),
            ("10.1.2.3:7000", topo(None, Some("rack;=7 ü/%"))),
            ("[fd00::1]:9", topo(Some(""), None)),
            ("[::]:65535", topo(None, None)),
        ];
        for (addr, topology) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            let s = encode(addr, &topology);
            assert!(s.starts_with("hfmesh/"), "{s}");
            let a = parse(&s).unwrap();
            assert_eq!(a.topology, topology, "{s}");
            assert_eq!(a.quic_port, addr.port());
            assert_eq!(a.quic_ip, (!addr.ip().is_unspecified()).then(|| addr.ip()));
            assert_eq!(a.version, env!("CARGO_PKG_VERSION"));
        }
    }

    #[test]
    fn format_is_readable() {
        let s = encode(
            "0.0.0.0:7000".parse().unwrap(),
            &topo(Some("z1"), Some("r 2")),
        );
        assert_eq!(
            s,
            format!(
                "hfmesh/{};quic=7000;zone=z1;rack=r%202",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn quic_address_prefers_the_advertised_ip_unless_it_is_loopback_from_afar() {
        let seen: IpAddr = "10.0.0.9".parse().unwrap();
        let a = parse("hfmesh/1;quic=7000").unwrap();
        assert_eq!(a.quic_addr(seen), "10.0.0.9:7000".parse().unwrap());
        let a = parse("hfmesh/1;quic=10.0.0.5:7000").unwrap();
        assert_eq!(a.quic_addr(seen), "10.0.0.5:7000".parse().unwrap());
        let a = parse("hfmesh/1;quic=127.0.0.1:7000").unwrap();
        assert_eq!(a.quic_addr(seen), "10.0.0.9:7000".parse().unwrap());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(a.quic_addr(lo), "127.0.0.1:7000".parse().unwrap());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let a = parse("hfmesh/9.9.9;quic=1;gpu=h100;zone=a").unwrap();
        assert_eq!(a.topology, topo(Some("a"), None));
    }

    #[test]
    fn garbage_is_refused() {
        let long_label = "x".repeat(MAX_LABEL_LEN + 1);
        let too_long = format!("hfmesh/1;quic=1;zone={}", "y".repeat(MAX_AGENT_LEN));
        let bad: &[(&str, AdvertError)] = &[
            ("", AdvertError::NotHfmesh),
            ("rust-libp2p/0.56", AdvertError::NotHfmesh),
            ("hfmesh/", AdvertError::NotHfmesh),
            ("hfmesh/;quic=1", AdvertError::NotHfmesh),
            ("hfmesh/1 2;quic=1", AdvertError::NotHfmesh),
            ("hfmesh/1", AdvertError::BadQuic),
            ("hfmesh/1;quic=0", AdvertError::BadQuic),
            ("hfmesh/1;quic=70000", AdvertError::BadQuic),
            ("hfmesh/1;quic=+80", AdvertError::BadQuic),
            ("hfmesh/1;quic=", AdvertError::BadQuic),
            ("hfmesh/1;quic=0.0.0.0:80", AdvertError::BadQuic),
            ("hfmesh/1;quic=224.0.0.1:80", AdvertError::BadQuic),
            ("hfmesh/1;quic=host:80", AdvertError::BadQuic),
            (
                "hfmesh/1;quic=1;quic=2",
                AdvertError::BadField("quic".into()),
            ),
            (
                "hfmesh/1;quic=1;zone=a;zone=b",
                AdvertError::BadField("zone".into()),
            ),
            ("hfmesh/1;quic=1;junk", AdvertError::BadField("junk".into())),
            ("hfmesh/1;quic=1;", AdvertError::BadField(String::new())),
            ("hfmesh/1;quic=1;zone=a b", AdvertError::BadLabel("zone")),
            ("hfmesh/1;quic=1;zone=a=b", AdvertError::BadLabel("zone")),
            ("hfmesh/1;quic=1;rack=%0A", AdvertError::BadLabel("rack")),
            ("hfmesh/1;quic=1;rack=%ff", AdvertError::BadLabel("rack")),
            ("hfmesh/1;quic=1;rack=%zz", AdvertError::BadLabel("rack")),
            ("hfmesh/1;quic=1;rack=%41", AdvertError::BadLabel("rack")),
            ("hfmesh/1;quic=1;rack=ü", AdvertError::BadLabel("rack")),
        ];
        for (s, want) in bad {
            assert_eq!(parse(s).as_ref(), Err(want), "{s:?}");
        }
        let s = format!("hfmesh/1;quic=1;zone={long_label}");
        assert_eq!(parse(&s), Err(AdvertError::BadLabel("zone")));
        assert_eq!(parse(&too_long), Err(AdvertError::TooLong));
        let nul = "hfmesh/1;quic=1;zone=%00";
        assert_eq!(parse(nul), Err(AdvertError::BadLabel("zone")));
    }
}
