//! Which ip is the client's. One forwarding header, named in config, is believed, and only
//! when the direct peer is a configured trusted proxy; any other forwarding header is
//! ignored, since a proxy passes headers it does not manage through untouched (nginx and
//! Caddy append to `X-Forwarded-For` but forward a client-written `Forwarded` as it came).

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use poem::http::HeaderMap;
pub use shared_infra::config::ForwardedHeader;

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client ip for a request from `peer`.
///
/// When `peer` is trusted, walk the chain of the configured header from the nearest hop
/// outwards and take the first address that is not itself a trusted proxy. An unparseable
/// entry stops the walk at the last good address.
pub fn resolve_client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    proxies: &[IpNet],
    header: &ForwardedHeader,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer, proxies) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_chain(headers, header).iter().rev() {
        match hop {
            Some(ip) => {
                client = canonical(*ip);
                if !trusted(client, proxies) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key rate limits count a client ip under: an IPv4 address, or the /64 an IPv6
/// address is in (one subscriber usually holds a whole /64, so per-address keys would give
/// one client 2^64 budgets).
pub fn limit_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// The addresses in the configured header, nearest client first (as they are written).
/// Each element is read on its own from the raw bytes: a client-written element that is
/// not text (or not an address) spoils only itself, never the addresses a proxy appended
/// after it in the same header line.
fn forwarded_chain(headers: &HeaderMap, header: &ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::Forwarded => "forwarded",
        ForwardedHeader::List(name) => name.as_str(),
    };
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|element| {
            let element = std::str::from_utf8(element).ok()?;
            match header {
                ForwardedHeader::Forwarded => element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(value))?
                }),
                ForwardedHeader::List(_) => parse_node(element),
            }
        })
        .collect()
}

/// `192.0.2.1`, `"[2001:db8::1]:4711"`, `192.0.2.1:80`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(host, _)| host.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff() -> ForwardedHeader {
        ForwardedHeader::default()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let peer = ip("203.0.113.9");
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolve_client_ip(peer, &h, &nets(&["10.0.0.0/8"]), &xff()),
            peer
        );
        assert_eq!(resolve_client_ip(peer, &h, &[], &xff()), peer);
    }

    #[test]
    fn trusted_peer_gives_nearest_untrusted_hop() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        let got = resolve_client_ip(ip("10.0.0.2"), &h, &nets(&["10.0.0.0/8"]), &xff());
        assert_eq!(got, ip("1.2.3.4"));
    }

    #[test]
    fn only_the_configured_header_is_believed() {
        let peer = ip("10.0.0.2");
        let proxies = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(resolve_client_ip(peer, &h, &proxies, &xff()), ip("9.9.9.9"));
        let forwarded: ForwardedHeader = "Forwarded".parse().unwrap();
        assert_eq!(
            resolve_client_ip(peer, &h, &proxies, &forwarded),
            ip("2001:db8::1")
        );
        // A client-written Forwarded alone, behind a proxy that sets X-Forwarded-For:
        // nothing to believe, so the peer.
        let h = headers(&[("forwarded", "for=7.7.7.7")]);
        assert_eq!(resolve_client_ip(peer, &h, &proxies, &xff()), peer);
    }

    #[test]
    fn garbage_hop_stops_at_last_good_address() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4, garbage")]);
        assert_eq!(
            resolve_client_ip(ip("10.0.0.2"), &h, &nets(&["10.0.0.0/8"]), &xff()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn a_client_written_element_that_is_not_text_spoils_only_itself() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.5").unwrap(),
        );
        let got = resolve_client_ip(ip("10.0.0.2"), &h, &nets(&["10.0.0.0/8"]), &xff());
        assert_eq!(got, ip("203.0.113.5"));
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            HeaderValue::from_bytes(b"for=\xff, for=203.0.113.6;proto=https").unwrap(),
        );
        let forwarded = ForwardedHeader::Forwarded;
        let got = resolve_client_ip(ip("10.0.0.2"), &h, &nets(&["10.0.0.0/8"]), &forwarded);
        assert_eq!(got, ip("203.0.113.6"));
    }

    #[test]
    fn repeated_headers_chain_in_order() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        let got = resolve_client_ip(ip("10.0.0.2"), &h, &nets(&["10.0.0.0/8"]), &xff());
        assert_eq!(got, ip("1.2.3.4"));
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff::1")),
            limit_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(limit_key(ip("192.0.2.1")), "192.0.2.1");
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn header_names_parse_from_config() {
        assert_eq!(
            "X-Forwarded-For".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::default())
        );
        assert_eq!(
            "forwarded".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::Forwarded)
        );
        assert!("x real ip".parse::<ForwardedHeader>().is_err());
    }
}
