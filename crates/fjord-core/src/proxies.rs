//! Trusted proxies: which addresses may tell the web server who the visitor really is, and in which
//! header. The web server (nginx `realip`, Apache `mod_remoteip`) is the only place that trusts the
//! header; applications see the visitor's address as `REMOTE_ADDR` and are not told to trust it
//! again.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Cloudflare's published ranges as shipped with this release (see the date in the file).
pub const CLOUDFLARE_RANGES: &str = include_str!("../data/cloudflare-ranges.txt");

crate::string_enum!(
    /// The header a trusted proxy reports the visitor's address in.
    RealIpHeader { CfConnectingIp = "CF-Connecting-IP", XForwardedFor = "X-Forwarded-For", XRealIp = "X-Real-IP" }
);

/// A server's trusted proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealIp {
    pub header: RealIpHeader,
    /// Trust Cloudflare's ranges (copied into `cloudflare_ranges` from the state database's list,
    /// refreshed by `fjord proxy-ranges update`).
    #[serde(default)]
    pub cloudflare: bool,
    #[serde(default)]
    pub cloudflare_ranges: Vec<String>,
    /// Other trusted proxies, as CIDR blocks.
    #[serde(default)]
    pub ranges: Vec<String>,
}

impl RealIp {
    /// Every trusted block: Cloudflare's (when trusted) and the custom ones, without duplicates.
    pub fn trusted(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let cf = if self.cloudflare { self.cloudflare_ranges.as_slice() } else { &[] };
        for r in cf.iter().chain(&self.ranges) {
            if !all.contains(r) {
                all.push(r.clone());
            }
        }
        all
    }
}

/// Checks a CIDR block (`203.0.113.0/24`, `2001:db8::/32`; a bare address is its own /32 or /128)
/// and returns it in canonical form. Host bits must be zero, so a typo cannot widen what is trusted
/// unnoticed.
pub fn parse_cidr(text: &str) -> Result<String, String> {
    let t = text.trim();
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        None => max,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{text:?}: the prefix length must be a number from 0 to {max}"))?,
    };
    let host_bits_zero = match ip {
        IpAddr::V4(v4) => len == 32 || u32::from(v4) & (u32::MAX >> len) == 0,
        IpAddr::V6(v6) => len == 128 || u128::from(v6) & (u128::MAX >> len) == 0,
    };
    if !host_bits_zero {
        return Err(format!("{text:?}: the address has bits set past the /{len} prefix"));
    }
    Ok(format!("{ip}/{len}"))
}

/// A checked CIDR block that can tell whether an address is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u32,
}

impl Cidr {
    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a listener
    /// on `[::]` reports for an IPv4 peer) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.len).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.len).unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        let canonical = parse_cidr(text)?;
        let (net, len) = canonical.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR block"))?;
        Ok(Cidr {
            net: net.parse().map_err(|_| format!("{text:?} is not a CIDR block"))?,
            len: len.parse().map_err(|_| format!("{text:?} is not a CIDR block"))?,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Who is really asking, given the TCP peer and the `X-Forwarded-For` entries (in header order): the
/// header counts only when the peer is a trusted proxy, and then the rightmost entry that is not a
/// trusted proxy is the client (entries to its left were written by the client, who may lie). An
/// entry that is not an address stops the walk at the last proxy that vouched for it.
pub fn client_address<'a>(peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let entries: Vec<&str> = forwarded_for.into_iter().flat_map(|h| h.split(',')).collect();
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else { break };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Parses a list of ranges, one a line; `#` starts a comment. Every line must be a valid block.
pub fn parse_range_list(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let r = parse_cidr(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.is_empty() {
        return Err("the list has no ranges".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked_and_canonical() {
        assert_eq!(parse_cidr("127.0.0.2").as_deref(), Ok("127.0.0.2/32"));
        assert_eq!(parse_cidr(" 10.0.0.0/8 ").as_deref(), Ok("10.0.0.0/8"));
        assert_eq!(parse_cidr("2001:DB8::/32").as_deref(), Ok("2001:db8::/32"));
        assert_eq!(parse_cidr("0.0.0.0/0").as_deref(), Ok("0.0.0.0/0"));
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0/8", "example.org", "1.2.3.4/x", "::1/129", ""] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        let c = |t: &str| t.parse::<Cidr>().expect("valid");
        let ip = |t: &str| t.parse::<IpAddr>().expect("address");
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("127.0.0.1").contains(ip("127.0.0.1")) && !c("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(c("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("192.0.2.1")) && !c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("2001:db8::/32").contains(ip("2001:db8:1::5")) && !c("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(c("::/0").contains(ip("::1")));
        assert_eq!(c(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert!("10.0.0.1/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let ip = |t: &str| t.parse::<IpAddr>().expect("address");
        let proxies = ["127.0.0.1/32".parse::<Cidr>().expect("valid"), "10.0.0.0/8".parse().expect("valid")];
        // An untrusted peer cannot choose its address.
        assert_eq!(client_address(ip("192.0.2.9"), ["203.0.113.1"], &proxies), ip("192.0.2.9"));
        // A trusted proxy's word counts; what the client wrote to the left of it does not.
        assert_eq!(client_address(ip("127.0.0.1"), ["203.0.113.1"], &proxies), ip("203.0.113.1"));
        assert_eq!(client_address(ip("127.0.0.1"), ["6.6.6.6, 203.0.113.1"], &proxies), ip("203.0.113.1"));
        assert_eq!(client_address(ip("127.0.0.1"), ["6.6.6.6", "203.0.113.1, 10.1.1.1"], &proxies), ip("203.0.113.1"));
        // Junk stops the walk at the proxy that passed it on; no header: the proxy itself.
        assert_eq!(client_address(ip("127.0.0.1"), ["junk, 10.1.1.1"], &proxies), ip("10.1.1.1"));
        assert_eq!(client_address(ip("127.0.0.1"), [], &proxies), ip("127.0.0.1"));
        // A chain of trusted proxies only: the leftmost is as far as anyone can tell.
        assert_eq!(client_address(ip("127.0.0.1"), ["10.0.0.2, 10.0.0.1"], &proxies), ip("10.0.0.2"));
        assert_eq!(client_address(ip("::ffff:127.0.0.1"), ["2001:db8::1"], &proxies), ip("2001:db8::1"));
        assert_eq!(client_address(ip("127.0.0.1"), ["203.0.113.1"], &[]), ip("127.0.0.1"));
    }

    #[test]
    fn the_shipped_cloudflare_list_parses() {
        let list = parse_range_list(CLOUDFLARE_RANGES).expect("valid");
        assert!(
            list.len() > 10 && list.contains(&"173.245.48.0/20".to_string()) && list.iter().any(|r| r.contains(':'))
        );
        assert!(parse_range_list("# nothing\n").is_err());
        assert!(parse_range_list("1.2.3.0/24\nnonsense\n").expect_err("a bad line").contains("line 2"));
    }

    #[test]
    fn trusted_joins_without_duplicates() {
        let r = RealIp {
            header: RealIpHeader::CfConnectingIp,
            cloudflare: true,
            cloudflare_ranges: vec!["1.0.0.0/8".into()],
            ranges: vec!["1.0.0.0/8".into(), "127.0.0.2/32".into()],
        };
        assert_eq!(r.trusted(), vec!["1.0.0.0/8".to_string(), "127.0.0.2/32".to_string()]);
    }
}
