//! The client's IP address, for the per-IP auth limit.
//!
//! The TCP peer, unless the peer is a configured trusted proxy (`FLOODGATE_TRUSTED_PROXIES`):
//! then the forwarding header (`FLOODGATE_CLIENT_IP_HEADER`, default `x-forwarded-for`) is
//! read from the right, skipping the entries that trusted proxies added, and the first
//! address no trusted proxy owns is the client. Everything left of it was written by the
//! client (or by a proxy nobody vouches for) and is never believed: proxies append the
//! address they saw after whatever the client sent, so the leftmost entries are the
//! client's choice. Without trusted proxies the header is never read.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};

use crate::error::ApiError;

/// The header read when trusted proxies are configured and no other is named.
pub const DEFAULT_HEADER: &str = "x-forwarded-for";

/// An address block such as `10.0.0.0/8`, `fd00::/8` or a single address (`127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-wide address.
fn masked(addr: u128, prefix: u8, bits: u32) -> u128 {
    let host_bits = bits - u32::from(prefix);
    addr.checked_shr(host_bits).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One entry of a forwarding header: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:80`); anything else is junk.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client address of a request from `peer` carrying these forwarding-header values
/// (in order; a header repeated on several lines counts as one list).
///
/// Walks from the peer leftwards through the list while the address in hand belongs to a
/// trusted proxy; the first address that does not is the client. A junk entry stops the
/// walk at the trusted proxy that passed it on (nothing left of junk can be attributed).
pub fn resolve<'a>(
    peer: IpAddr,
    header_values: impl IntoIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let entries: Vec<&str> = header_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// The proxy settings [`ClientIp`] reads from the router's state
/// (`FLOODGATE_TRUSTED_PROXIES`, `FLOODGATE_CLIENT_IP_HEADER`).
pub trait ProxySettings {
    fn trusted_proxies(&self) -> &[Cidr];
    /// The forwarding header, when not [`DEFAULT_HEADER`].
    fn client_ip_header(&self) -> Option<&str>;
}

/// The client's address, as text (`unknown` without a peer address).
pub struct ClientIp(pub String);

impl<S: ProxySettings + Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, settings: &S) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(Self("unknown".into()));
        };
        let trusted = settings.trusted_proxies();
        if trusted.is_empty() {
            return Ok(Self(peer.to_canonical().to_string()));
        }
        let name = settings.client_ip_header().unwrap_or(DEFAULT_HEADER);
        let values = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(Self(resolve(peer, values, trusted).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_membership() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped peers match");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(!one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("198.51.100.7"), ["1.2.3.4"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve(ip("198.51.100.7"), ["1.2.3.4"], &[]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn rightmost_untrusted_entry_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        // the client forged two entries; the ingress (10.0.0.5) appended the real address
        assert_eq!(
            resolve(ip("10.0.0.5"), ["6.6.6.6, 7.7.7.7, 203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // two trusted hops, header split over two lines
        assert_eq!(
            resolve(
                ip("10.0.0.5"),
                ["6.6.6.6, 203.0.113.9", "10.9.9.9"],
                &trusted
            ),
            ip("203.0.113.9")
        );
        // ports and IPv6 brackets
        assert_eq!(
            resolve(ip("10.0.0.5"), ["[2001:db8::1]:4711"], &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(ip("10.0.0.5"), ["203.0.113.9:80"], &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn missing_junk_or_all_trusted_headers_stop_at_the_last_trusted_hop() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let none: [&str; 0] = [];
        assert_eq!(resolve(ip("10.0.0.5"), none, &trusted), ip("10.0.0.5"));
        assert_eq!(
            resolve(ip("10.0.0.5"), ["1.2.3.4, junk, 10.0.0.7"], &trusted),
            ip("10.0.0.7")
        );
        assert_eq!(resolve(ip("10.0.0.5"), [""], &trusted), ip("10.0.0.5"));
        assert_eq!(
            resolve(ip("10.0.0.5"), ["10.1.1.1, 10.2.2.2"], &trusted),
            ip("10.1.1.1")
        );
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::from(std::net::Ipv4Addr::from(v))),
            any::<u128>().prop_map(|v| IpAddr::from(std::net::Ipv6Addr::from(v))),
        ]
    }

    fn public_ip() -> impl Strategy<Value = IpAddr> {
        any::<u32>()
            .prop_map(|v| IpAddr::from(std::net::Ipv4Addr::from(v)))
            .prop_filter("outside 10/8", |ip| {
                !"10.0.0.0/8".parse::<Cidr>().unwrap().contains(*ip)
            })
    }

    proptest! {
        /// Whatever a client writes in the header, a chain of trusted proxies that each
        /// append what they saw yields the client's real address.
        #[test]
        fn forged_entries_never_change_the_client(
            forged in proptest::collection::vec("[ -~]{0,40}", 0..6),
            real in public_ip(),
            hops in proptest::collection::vec(any::<u32>().prop_map(|v| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | (v & 0x00ff_ffff)))), 1..4),
        ) {
            let trusted = cidrs(&["10.0.0.0/8"]);
            // the first proxy sees `real`; each next one sees the previous proxy
            let mut list: Vec<String> = forged.iter().map(|f| f.replace(',', " ")).collect();
            list.push(real.to_string());
            list.extend(hops[..hops.len() - 1].iter().map(ToString::to_string));
            let header = list.join(", ");
            let peer = *hops.last().unwrap();
            prop_assert_eq!(resolve(peer, [header.as_str()], &trusted), real);
        }

        /// An untrusted peer is always the client, and the answer is always either the peer
        /// or an address written in the header.
        #[test]
        fn the_answer_is_the_peer_or_a_header_entry(
            peer in any_ip(),
            entries in proptest::collection::vec(any_ip(), 0..5),
            trust_peer in any::<bool>(),
        ) {
            let trusted: Vec<Cidr> = if trust_peer {
                vec![format!("{peer}").parse().unwrap()]
            } else {
                vec![]
            };
            let header = entries.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
            let got = resolve(peer, [header.as_str()], &trusted);
            if trust_peer {
                prop_assert!(got == peer.to_canonical() || entries.iter().any(|e| e.to_canonical() == got));
            } else {
                prop_assert_eq!(got, peer.to_canonical());
            }
        }
    }
}
