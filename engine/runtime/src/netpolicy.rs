//! The admin's egress policy: which IP addresses a task's target may resolve to. Checked on the
//! resolved (pinned) addresses before the guest runs, so a refused address is never connected to,
//! for HTTP and TCP alike.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `fd00:ec2::254/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP range {text:?}: {reason}")]
pub struct IpRangeParseError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl IpRange {
    /// The range `network/prefix`; host bits of `network` are cleared.
    pub fn new(network: IpAddr, prefix: u8) -> Option<Self> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        Some(Self {
            network: mask(network, prefix),
            prefix,
        })
    }

    /// Whether `addr` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl FromStr for IpRange {
    type Err = IpRangeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| IpRangeParseError {
            text: s.to_string(),
            reason,
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err("prefix is not a number"))?,
            None => max,
        };
        Self::new(addr, prefix).ok_or_else(|| err("prefix longer than the address"))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Link-local and cloud metadata addresses, refused unless the admin allows them explicitly.
pub const METADATA_AND_LINK_LOCAL: &[&str] = &[
    // IPv4 link-local: AWS, GCP, Azure, OpenStack metadata (169.254.169.254), ECS (169.254.170.2).
    "169.254.0.0/16",
    // IPv6 link-local.
    "fe80::/10",
    // AWS IMDS over IPv6.
    "fd00:ec2::254/128",
    // Alibaba Cloud metadata.
    "100.100.100.200/32",
    // Azure WireServer.
    "168.63.129.16/32",
    // Oracle Cloud metadata (also 169.254.169.254).
    "192.0.0.192/32",
    // Unspecified and broadcast: never a server.
    "0.0.0.0/8",
    "::/128",
    "255.255.255.255/32",
];

/// The egress policy of the runtime (one per [`crate::Runtime`], set by the admin).
///
/// An address is allowed when it is in `allow` (or `allow` is empty) and not in `deny`, or when
/// it is in `allow_exceptions` (for a range the admin needs although a default denies it, e.g. a
/// link-local database). The default denies [`METADATA_AND_LINK_LOCAL`] and allows the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRules {
    /// Ranges a target may resolve to; empty = every address not denied.
    pub allow: Vec<IpRange>,
    /// Ranges refused (checked after `allow`).
    pub deny: Vec<IpRange>,
    /// Ranges allowed whatever `allow` and `deny` say.
    pub allow_exceptions: Vec<IpRange>,
}

impl Default for EgressRules {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: METADATA_AND_LINK_LOCAL
                .iter()
                .map(|r| r.parse().expect("built-in range"))
                .collect(),
            allow_exceptions: Vec::new(),
        }
    }
}

impl EgressRules {
    /// Checks one resolved address; `Err` says which rule refused it.
    pub fn check(&self, addr: IpAddr) -> Result<(), String> {
        if self.allow_exceptions.iter().any(|r| r.contains(addr)) {
            return Ok(());
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.contains(addr)) {
            return Err(format!(
                "{addr} is outside the allowed ranges ({})",
                join(&self.allow)
            ));
        }
        if let Some(r) = self.deny.iter().find(|r| r.contains(addr)) {
            return Err(format!(
                "{addr} is in the denied range {r} (link-local or cloud metadata by default)"
            ));
        }
        Ok(())
    }
}

fn join(ranges: &[IpRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_are_denied_by_default() {
        let rules = EgressRules::default();
        for bad in [
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
        ] {
            let e = rules.check(ip(bad)).unwrap_err();
            assert!(e.contains("denied range"), "{bad}: {e}");
        }
        for good in [
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "2001:db8::1",
            "100.100.100.201",
        ] {
            assert_eq!(rules.check(ip(good)), Ok(()), "{good}");
        }
    }

    #[test]
    fn allow_list_and_exceptions() {
        let rules = EgressRules {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            allow_exceptions: vec!["169.254.10.0/24".parse().unwrap()],
            ..EgressRules::default()
        };
        assert_eq!(rules.check(ip("10.9.8.7")), Ok(()));
        assert!(rules
            .check(ip("127.0.0.1"))
            .unwrap_err()
            .contains("outside the allowed ranges (10.0.0.0/8)"));
        assert_eq!(rules.check(ip("169.254.10.5")), Ok(()));
        assert!(rules.check(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn ranges_parse_and_mask() {
        let r: IpRange = "10.1.2.3/8".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<IpRange>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("nope/8".parse::<IpRange>().is_err());
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
    }
}
