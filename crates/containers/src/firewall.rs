//! Egress firewall: application security groups enforced in the kernel with nftables, and
//! the default isolation of the container network.
//!
//! # Where the rules live
//!
//! Everything is in the manager's own table `ip <prefix>` (the one that also does NAT, see
//! [`crate::network`]), so deleting that table at shutdown or at the start after a crash
//! removes every rule, chain and map entry at once. The table holds:
//!
//! - `map egress { type ipv4_addr : verdict }`: container address → `jump egress_<id>`;
//! - `chain prerouting` (hook prerouting, priority filter, so after conntrack and any
//!   destination NAT): whatever arrives from the bridge jumps to `from_containers`, so
//!   traffic to the outside, to other containers and to any address of the host itself is
//!   judged by the same rules, before routing. Before routing, because the host routes
//!   container-to-container traffic back out of the bridge, and for such a packet the
//!   kernel prepares an ICMP redirect even when a forward-hook rule then drops it; that
//!   also resets the per-peer ICMP rate limit, and the container's next rejected datagram
//!   would get no ICMP error at all;
//! - `chain from_containers`: replies and related ICMP of tracked connections are accepted;
//!   then `ip saddr vmap @egress` jumps to the sender's chain; what comes back from it (no
//!   rule matched) is rejected, so that the application fails at once instead of timing
//!   out: TCP with a reset (`connect()` gives `ECONNREFUSED`), everything else with ICMP
//!   *administratively prohibited* (`EHOSTUNREACH`, "No route to host"). TCP gets a reset
//!   rather than ICMP because the kernel rate-limits the ICMP errors it sends to one peer
//!   (`net.ipv4.icmp_ratelimit`: a burst of 6, then one a second), which would turn the
//!   denials of an application that retries into timeouts;
//! - per container `chain egress_<id>`: one `accept` rule per [`EgressRule`];
//! - `chain output` (hook output): drops ICMP redirects the host would send onto the bridge
//!   (it routes container-to-container traffic back out of the bridge, and a redirect would
//!   teach the sender to bypass the host, and so the firewall).
//!
//! # The default policy
//!
//! A container with no rule can open no connection and send no datagram to anything: not
//! the outside, not another container, not any address of the host (the bridge address
//! included). What keeps working: its own loopback, and every connection opened *into* it
//! (the router and health checks connect from the host; their replies are `established`).
//! To make every container-to-container packet pass the host's IP hooks, the network layer
//! isolates the bridge ports (`bridge_slave isolated on`: no frame goes directly from one
//! container's port to another's) and gives each container a `/32` address with its route
//! through the gateway; IPv6 is disabled on the bridge so link-local IPv6 reaches nothing.
//!
//! Rules are checked for new connections only: replacing a container's rules
//! ([`crate::ContainerManager::set_egress`]) is one `nft -f` transaction (flush its chain,
//! add the new rules) that applies to the next connection, and connections already
//! established under the old rules are kept until they close (conntrack still knows them).
//!
//! Source addresses can be trusted because containers have neither `CAP_NET_RAW` nor
//! `CAP_NET_ADMIN` (see `oci.rs`), so they cannot send from an address other than their own.
//!
//! # DNS
//!
//! Containers use the host's non-loopback name servers (`stack.rs` writes `resolv.conf`,
//! dropping loopback ones, which a container could never reach). A rule allowing udp/tcp 53
//! to the name server (Cloud Foundry's usual `dns` group: 0.0.0.0/0 port 53) lets them
//! through, whether the server is outside (forward path, masqueraded) or an address of this
//! host (input path).

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use crate::command::{run, run_with_input};
use crate::network::{Naming, Tools};
use crate::ContainerError;

/// The map from a container's address to its chain.
const MAP: &str = "egress";
/// The chain every packet from the bridge is judged in.
const FROM_CONTAINERS: &str = "from_containers";

/// Input that is not a valid security group rule field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct InvalidRule {
    /// Which field: "destination" or "ports".
    pub what: &'static str,
    /// The text given.
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl InvalidRule {
    fn new(what: &'static str, input: &str, reason: &'static str) -> InvalidRule {
        InvalidRule {
            what,
            input: input.to_string(),
            reason,
        }
    }
}

/// The protocol an [`EgressRule`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every IPv4 protocol (Cloud Foundry's `all`); ports do not apply.
    All,
    /// TCP, to the rule's ports.
    Tcp,
    /// UDP, to the rule's ports.
    Udp,
    /// ICMP of one type and code; `None` stands for Cloud Foundry's `-1` (any).
    Icmp {
        /// ICMP type, `None` for any.
        type_: Option<u8>,
        /// ICMP code, `None` for any.
        code: Option<u8>,
    },
}

/// Where an [`EgressRule`] allows traffic to, in Cloud Foundry's security group syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One address: `1.2.3.4`.
    Address(Ipv4Addr),
    /// A network: `10.0.0.0/8` (host bits given are ignored, as Go's `ParseCIDR` does).
    Cidr {
        /// The network address (host bits cleared).
        network: Ipv4Addr,
        /// Prefix length, 0–32.
        prefix_len: u8,
    },
    /// An inclusive range: `10.0.0.1-10.0.0.255`.
    Range {
        /// First address.
        first: Ipv4Addr,
        /// Last address (not below `first`).
        last: Ipv4Addr,
    },
}

impl Destination {
    /// Parses one destination: `1.2.3.4`, `10.0.0.0/8` or `10.0.0.1-10.0.0.255`
    /// (surrounding spaces allowed).
    pub fn parse(text: &str) -> Result<Destination, InvalidRule> {
        let bad = |reason| InvalidRule::new("destination", text, reason);
        let trimmed = text.trim();
        let address = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("expected an IPv4 address, a.b.c.d/len or a.b.c.d-e.f.g.h"))
        };
        if let Some((addr, len)) = trimmed.split_once('/') {
            let addr = address(addr)?;
            let prefix_len: u8 = len
                .trim()
                .parse()
                .map_err(|_| bad("the prefix length must be a number from 0 to 32"))?;
            if prefix_len > 32 {
                return Err(bad("the prefix length must be a number from 0 to 32"));
            }
            let network = Ipv4Addr::from(u32::from(addr) & mask(prefix_len));
            return Ok(Destination::Cidr {
                network,
                prefix_len,
            });
        }
        if let Some((first, last)) = trimmed.split_once('-') {
            let (first, last) = (address(first)?, address(last)?);
            if first > last {
                return Err(bad("the range's first address is above its last"));
            }
            return Ok(Destination::Range { first, last });
        }
        Ok(Destination::Address(address(trimmed)?))
    }

    /// Parses Cloud Foundry's comma-separated destination list (`"10.0.0.0/8,1.2.3.4"`).
    pub fn parse_list(text: &str) -> Result<Vec<Destination>, InvalidRule> {
        text.split(',').map(Destination::parse).collect()
    }

    /// The first and last address covered, as numbers.
    fn bounds(&self) -> (u32, u32) {
        match *self {
            Destination::Address(a) => (u32::from(a), u32::from(a)),
            Destination::Cidr {
                network,
                prefix_len,
            } => {
                let first = u32::from(network);
                (first, first | !mask(prefix_len))
            }
            Destination::Range { first, last } => (u32::from(first), u32::from(last)),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Address(a) => write!(f, "{a}"),
            Destination::Cidr {
                network,
                prefix_len,
            } => write!(f, "{network}/{prefix_len}"),
            Destination::Range { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

/// The network mask of a prefix length (0–32).
fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

/// An inclusive range of TCP/UDP ports, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (not below `first`).
    pub last: u16,
}

impl PortRange {
    /// Parses one port (`443`) or range (`1000-2000`).
    pub fn parse(text: &str) -> Result<PortRange, InvalidRule> {
        let bad = |reason| InvalidRule::new("ports", text, reason);
        let port = |s: &str| match s.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(bad("a port is a number from 1 to 65535")),
            Ok(p) => Ok(p),
        };
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(bad("the range's first port is above its last"));
        }
        Ok(PortRange { first, last })
    }

    /// Parses Cloud Foundry's comma-separated port list (`"80,443"`, `"1000-2000"`).
    pub fn parse_list(text: &str) -> Result<Vec<PortRange>, InvalidRule> {
        text.split(',').map(PortRange::parse).collect()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One allow rule of a container's egress (a Cloud Foundry security group rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    /// The protocol allowed.
    pub protocol: Protocol,
    /// Where to; empty allows nothing (use `0.0.0.0/0` for everywhere).
    pub destinations: Vec<Destination>,
    /// TCP/UDP destination ports; empty means all. Ignored for `All` and `Icmp`.
    pub ports: Vec<PortRange>,
    /// Log each new connection the rule allows (kernel log, prefix `<prefix>-egress <id> `).
    pub log: bool,
}

/// Merges inclusive `(first, last)` ranges into sorted, disjoint, non-adjacent ones, so that
/// nft never sees overlapping set elements.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// An address range in nft syntax: `a`, `a/len` when it is exactly a network, or `a-b`.
fn address_element(first: u32, last: u32) -> String {
    if first == last {
        return Ipv4Addr::from(first).to_string();
    }
    let size = u64::from(last - first) + 1;
    if size.is_power_of_two() && u64::from(first) % size == 0 {
        let prefix_len = 32 - size.trailing_zeros();
        return format!("{}/{prefix_len}", Ipv4Addr::from(first));
    }
    format!("{}-{}", Ipv4Addr::from(first), Ipv4Addr::from(last))
}

/// `x` for one element, `{ x, y }` for several.
fn set_of(elements: &[String]) -> String {
    match elements {
        [one] => one.clone(),
        many => format!("{{ {} }}", many.join(", ")),
    }
}

/// The nft rule body (without `add rule …`) for one egress rule, or `None` when it can
/// match nothing.
fn rule_body(rule: &EgressRule, log_prefix: &str) -> Option<String> {
    let destinations = merge(rule.destinations.iter().map(Destination::bounds).collect());
    if destinations.is_empty() {
        return None;
    }
    let mut body = String::new();
    if destinations != [(0, u32::MAX)] {
        let elements: Vec<String> = destinations
            .iter()
            .map(|&(first, last)| address_element(first, last))
            .collect();
        let _ = write!(body, "ip daddr {} ", set_of(&elements));
    }
    let ports = || {
        let ports = merge(
            rule.ports
                .iter()
                .map(|p| (u32::from(p.first), u32::from(p.last)))
                .collect(),
        );
        if ports.is_empty() || ports == [(1, 65535)] {
            return None;
        }
        let elements: Vec<String> = ports
            .iter()
            .map(|&(first, last)| {
                if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                }
            })
            .collect();
        Some(set_of(&elements))
    };
    match rule.protocol {
        Protocol::All => {}
        Protocol::Tcp | Protocol::Udp => {
            let name = if rule.protocol == Protocol::Tcp {
                "tcp"
            } else {
                "udp"
            };
            match ports() {
                Some(ports) => {
                    let _ = write!(body, "{name} dport {ports} ");
                }
                None => {
                    let _ = write!(body, "ip protocol {name} ");
                }
            }
        }
        Protocol::Icmp { type_, code } => {
            body.push_str("ip protocol icmp ");
            if let Some(type_) = type_ {
                let _ = write!(body, "icmp type {type_} ");
            }
            if let Some(code) = code {
                let _ = write!(body, "icmp code {code} ");
            }
        }
    }
    if rule.log {
        let _ = write!(body, "log prefix \"{log_prefix}\" ");
    }
    body.push_str("accept");
    Some(body)
}

/// The name of a container's chain. Container ids are `[A-Za-z0-9_.-]`, which nft takes in
/// an identifier after a letter.
pub(crate) fn chain_name(id: &str) -> String {
    format!("egress_{id}")
}

/// The nft commands that replace the rules of container `id`'s (existing) chain.
pub(crate) fn replace_script(naming: &Naming, id: &str, rules: &[EgressRule]) -> String {
    let table = &naming.prefix;
    let chain = chain_name(id);
    let log_prefix = format!("{table}-egress {id} ");
    let mut script = format!("flush chain ip {table} {chain}\n");
    for body in rules.iter().filter_map(|r| rule_body(r, &log_prefix)) {
        let _ = writeln!(script, "add rule ip {table} {chain} {body}");
    }
    script
}

/// The table's firewall part, inserted in the table definition `network::setup_host` loads.
pub(crate) fn base_chains(naming: &Naming) -> String {
    let bridge = &naming.bridge;
    format!(
        "\tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" jump {FROM_CONTAINERS}\n\
         \t}}\n\
         \tmap {MAP} {{\n\
         \t\ttype ipv4_addr : verdict\n\
         \t}}\n\
         \tchain {FROM_CONTAINERS} {{\n\
         \t\tct state established,related accept\n\
         \t\tip saddr vmap @{MAP}\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t\treject with icmp type admin-prohibited\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority filter; policy accept;\n\
         \t\toifname \"{bridge}\" icmp type redirect drop\n\
         \t}}\n"
    )
}

/// Creates container `id`'s chain with `rules` and maps its address to it, in one
/// transaction. Run before the container's process starts.
pub(crate) async fn install(
    tools: &Tools,
    naming: &Naming,
    id: &str,
    address: Ipv4Addr,
    rules: &[EgressRule],
) -> Result<(), ContainerError> {
    let table = &naming.prefix;
    let chain = chain_name(id);
    let mut script = format!("add chain ip {table} {chain}\n");
    script.push_str(&replace_script(naming, id, rules));
    let _ = writeln!(
        script,
        "add element ip {table} {MAP} {{ {address} : jump {chain} }}"
    );
    run_with_input(&tools.nft, &["-f", "-"], Some(&script)).await?;
    Ok(())
}

/// Replaces the rules of container `id`'s chain in one transaction; fails (changing
/// nothing) if the chain does not exist.
pub(crate) async fn replace(
    tools: &Tools,
    naming: &Naming,
    id: &str,
    rules: &[EgressRule],
) -> Result<(), ContainerError> {
    let script = replace_script(naming, id, rules);
    run_with_input(&tools.nft, &["-f", "-"], Some(&script)).await?;
    Ok(())
}

/// Removes container `id`'s map entry (when it had an address) and chain, whichever exist;
/// a missing table (nothing to remove) is fine.
pub(crate) async fn remove(
    tools: &Tools,
    naming: &Naming,
    id: &str,
    address: Option<Ipv4Addr>,
) -> Result<(), ContainerError> {
    let table = &naming.prefix;
    let chain = chain_name(id);
    // nft 1.0.6 has no "delete if present": adding first makes each delete find its object.
    let mut script = format!("add chain ip {table} {chain}\n");
    if let Some(address) = address {
        let _ = write!(
            script,
            "add element ip {table} {MAP} {{ {address} : jump {chain} }}\n\
             delete element ip {table} {MAP} {{ {address} }}\n"
        );
    }
    let _ = write!(
        script,
        "flush chain ip {table} {chain}\n\
         delete chain ip {table} {chain}\n"
    );
    match run_with_input(&tools.nft, &["-f", "-"], Some(&script)).await {
        Ok(_) => Ok(()),
        Err(_) if !table_exists(tools, naming).await => Ok(()),
        Err(e) => Err(e),
    }
}

async fn table_exists(tools: &Tools, naming: &Naming) -> bool {
    run(&tools.nft, &["list", "table", "ip", &naming.prefix])
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            prefix: "ingot".into(),
            bridge: "ingot0".into(),
        }
    }

    fn dest(text: &str) -> Destination {
        Destination::parse(text).expect("destination")
    }

    #[test]
    fn destinations_parse_in_cloud_foundry_syntax() {
        let cases = [
            ("1.2.3.4", Destination::Address(Ipv4Addr::new(1, 2, 3, 4))),
            (
                " 10.0.0.0/8 ",
                Destination::Cidr {
                    network: Ipv4Addr::new(10, 0, 0, 0),
                    prefix_len: 8,
                },
            ),
            (
                "10.1.2.3/16",
                Destination::Cidr {
                    network: Ipv4Addr::new(10, 1, 0, 0),
                    prefix_len: 16,
                },
            ),
            (
                "0.0.0.0/0",
                Destination::Cidr {
                    network: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                },
            ),
            (
                "10.0.0.1-10.0.0.255",
                Destination::Range {
                    first: Ipv4Addr::new(10, 0, 0, 1),
                    last: Ipv4Addr::new(10, 0, 0, 255),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Destination::parse(text), Ok(want), "{text}");
        }
        assert_eq!(dest("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(
            Destination::parse_list("10.0.0.0/8, 1.2.3.4").expect("list"),
            vec![dest("10.0.0.0/8"), dest("1.2.3.4")]
        );
    }

    #[test]
    fn bad_destinations_are_refused_with_the_input() {
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/x",
            "10.0.0.9-10.0.0.1",
            "::1",
            "host.example",
            "1.2.3.4,",
        ] {
            let err = Destination::parse_list(bad).expect_err(bad);
            assert_eq!(err.what, "destination");
        }
        let err = Destination::parse("10.0.0.9-10.0.0.1").expect_err("reversed");
        assert_eq!(err.input, "10.0.0.9-10.0.0.1");
        assert!(err.to_string().contains("first address is above"), "{err}");
    }

    #[test]
    fn ports_parse_in_cloud_foundry_syntax() {
        assert_eq!(
            PortRange::parse("443"),
            Ok(PortRange {
                first: 443,
                last: 443
            })
        );
        assert_eq!(
            PortRange::parse_list("80, 443,1000-2000").expect("list"),
            vec![
                PortRange {
                    first: 80,
                    last: 80
                },
                PortRange {
                    first: 443,
                    last: 443
                },
                PortRange {
                    first: 1000,
                    last: 2000
                },
            ]
        );
        for bad in [
            "",
            "0",
            "65536",
            "80-",
            "-80",
            "2000-1000",
            "http",
            "80,,443",
        ] {
            let err = PortRange::parse_list(bad).expect_err(bad);
            assert_eq!(err.what, "ports", "{bad}");
        }
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        assert_eq!(
            merge(vec![(5, 9), (1, 3), (4, 4), (20, 30), (25, 26)]),
            vec![(1, 9), (20, 30)]
        );
        assert_eq!(merge(vec![(0, u32::MAX), (7, 8)]), vec![(0, u32::MAX)]);
    }

    #[test]
    fn generated_script_for_a_rule_set() {
        let rules = vec![
            EgressRule {
                protocol: Protocol::Tcp,
                destinations: vec![
                    dest("10.0.0.1-10.0.0.255"),
                    dest("10.0.0.0/8"),
                    dest("192.0.2.7"),
                ],
                ports: PortRange::parse_list("443,80,1000-2000,1500").expect("ports"),
                log: true,
            },
            EgressRule {
                protocol: Protocol::Udp,
                destinations: vec![dest("0.0.0.0/0")],
                ports: PortRange::parse_list("53").expect("ports"),
                log: false,
            },
            EgressRule {
                protocol: Protocol::Tcp,
                destinations: vec![dest("172.16.0.0-172.31.255.255")],
                ports: vec![],
                log: false,
            },
            EgressRule {
                protocol: Protocol::Icmp {
                    type_: Some(8),
                    code: None,
                },
                destinations: vec![dest("198.51.100.1-198.51.100.6")],
                ports: vec![],
                log: false,
            },
            EgressRule {
                protocol: Protocol::All,
                destinations: vec![dest("203.0.113.9")],
                ports: PortRange::parse_list("1-65535").expect("ports"),
                log: false,
            },
            // Allows nothing: no destination.
            EgressRule {
                protocol: Protocol::All,
                destinations: vec![],
                ports: vec![],
                log: false,
            },
        ];
        let script = replace_script(&naming(), "app-1.0_x", &rules);
        assert_eq!(
            script,
            "flush chain ip ingot egress_app-1.0_x\n\
             add rule ip ingot egress_app-1.0_x ip daddr { 10.0.0.0/8, 192.0.2.7 } tcp dport { 80, 443, 1000-2000 } log prefix \"ingot-egress app-1.0_x \" accept\n\
             add rule ip ingot egress_app-1.0_x udp dport 53 accept\n\
             add rule ip ingot egress_app-1.0_x ip daddr 172.16.0.0/12 ip protocol tcp accept\n\
             add rule ip ingot egress_app-1.0_x ip daddr 198.51.100.1-198.51.100.6 ip protocol icmp icmp type 8 accept\n\
             add rule ip ingot egress_app-1.0_x ip daddr 203.0.113.9 accept\n"
        );
        assert_eq!(
            replace_script(&naming(), "a", &[]),
            "flush chain ip ingot egress_a\n"
        );
    }

    #[test]
    fn base_chains_send_bridge_traffic_through_the_firewall() {
        let base = base_chains(&naming());
        assert!(base.contains("map egress {\n\t\ttype ipv4_addr : verdict\n"));
        assert!(base.contains(
            "\t\tct state established,related accept\n\
             \t\tip saddr vmap @egress\n\
             \t\tmeta l4proto tcp reject with tcp reset\n\
             \t\treject with icmp type admin-prohibited\n"
        ));
        assert!(base.contains(
            "\t\ttype filter hook prerouting priority filter; policy accept;\n\
             \t\tiifname \"ingot0\" jump from_containers\n"
        ));
        assert!(base.contains("oifname \"ingot0\" icmp type redirect drop"));
    }
}
