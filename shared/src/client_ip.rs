//! Which ip is the client's. Forwarding headers are believed only when the direct peer is a
//! configured trusted proxy; otherwise anyone could claim any address and slip past
//! per-ip limits.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::http::HeaderMap;

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client ip for a request from `peer`.
///
/// When `peer` is trusted, walk the forwarding chain from the nearest hop outwards and take
/// the first address that is not itself a trusted proxy (RFC 7239 `Forwarded: for=` first,
/// else `X-Forwarded-For`). Unparseable entries stop the walk at the last good address.
pub fn resolve_client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !trusted(*ip, proxies) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The addresses in the forwarding headers, nearest client first (as they are written).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then(|| parse_node(value))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| parse_node(s.trim()))
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

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let h = headers("x-forwarded-for", "1.2.3.4");
        assert_eq!(resolve_client_ip(peer, &h, &nets(&["10.0.0.0/8"])), peer);
        assert_eq!(resolve_client_ip(peer, &h, &[]), peer);
    }

    #[test]
    fn trusted_peer_gives_nearest_untrusted_hop() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let h = headers("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7");
        let ip = resolve_client_ip(peer, &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_is_preferred() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let mut h = headers("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#);
        h.insert("x-forwarded-for", HeaderValue::from_static("9.9.9.9"));
        let ip = resolve_client_ip(peer, &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_hop_stops_at_last_good_address() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let h = headers("x-forwarded-for", "1.2.3.4, garbage");
        assert_eq!(resolve_client_ip(peer, &h, &nets(&["10.0.0.0/8"])), peer);
    }
}
