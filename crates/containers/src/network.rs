//! Container networking: an address pool, the bridge with NAT for egress (an nft table of
//! our own, which also holds the egress firewall of [`crate::firewall`]), and per container
//! a network namespace with a veth into the bridge.
//!
//! Containers never talk to each other at layer 2: their bridge ports are isolated and each
//! has a `/32` address with everything routed through the gateway, so all their traffic
//! crosses the host's IP hooks where the firewall judges it.
//!
//! Shells out to `ip` (iproute2) and `nft`; see ip-netns(8), ip-link(8), nft(8).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::command::{run, run_with_input};
use crate::firewall;
use crate::ContainerError;

/// An IPv4 subnet: the bridge takes the first host address, containers the following.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    network: u32,
    prefix_len: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/len` (len 8–30; host bits must be zero).
    pub(crate) fn parse(text: &str) -> Result<Subnet, ContainerError> {
        let bad = |why: &str| ContainerError::InvalidConfig(format!("subnet {text:?}: {why}"));
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("bad address"))?;
        let prefix_len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(bad("prefix length must be between 8 and 30"));
        }
        let network = u32::from(addr);
        if network & !Self::mask_of(prefix_len) != 0 {
            return Err(bad("host bits must be zero"));
        }
        Ok(Subnet {
            network,
            prefix_len,
        })
    }

    fn mask_of(prefix_len: u8) -> u32 {
        u32::MAX << (32 - u32::from(prefix_len))
    }

    /// Number of addresses, network and broadcast included.
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix_len))
    }

    /// The prefix length.
    pub(crate) fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The bridge's address (the first host address).
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// The address at `offset` from the network address.
    pub(crate) fn address(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network + offset)
    }

    /// Offsets containers may use: after the gateway, before the broadcast address.
    fn container_offsets(&self) -> std::ops::Range<u32> {
        2..self.size() - 1
    }

    /// The largest offset a container can get (its decimal width bounds veth names).
    pub(crate) fn max_offset(&self) -> u32 {
        self.size() - 2
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }
}

/// Hands out container addresses (by offset in the subnet); lowest free first.
#[derive(Debug)]
pub(crate) struct Pool {
    subnet: Subnet,
    used: BTreeSet<u32>,
}

impl Pool {
    pub(crate) fn new(subnet: Subnet) -> Pool {
        Pool {
            subnet,
            used: BTreeSet::new(),
        }
    }

    /// Takes the lowest free offset.
    pub(crate) fn allocate(&mut self) -> Result<u32, ContainerError> {
        let offset = self
            .subnet
            .container_offsets()
            .find(|o| !self.used.contains(o))
            .ok_or_else(|| ContainerError::PoolExhausted {
                subnet: self.subnet.to_string(),
            })?;
        self.used.insert(offset);
        Ok(offset)
    }

    /// Returns an offset to the pool.
    pub(crate) fn release(&mut self, offset: u32) {
        self.used.remove(&offset);
    }
}

/// Names of everything the manager creates in the network, all derived from its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    pub prefix: String,
    pub bridge: String,
}

impl Naming {
    /// `<prefix>-<id>`: network namespace names have no length limit (files in /run/netns).
    pub(crate) fn netns(&self, id: &str) -> String {
        format!("{}-{}", self.prefix, id)
    }
    /// The host end of a container's veth: `<prefix>v<offset>` (≤ 15 bytes, checked at start).
    pub(crate) fn host_veth(&self, offset: u32) -> String {
        format!("{}v{}", self.prefix, offset)
    }
    /// The container end before it is moved and renamed to `eth0`.
    fn peer_veth(&self, offset: u32) -> String {
        format!("{}p{}", self.prefix, offset)
    }
    /// Whether `name` is a veth end this manager's naming would create.
    pub(crate) fn is_ours(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        let Some(digits) = rest.strip_prefix('v').or_else(|| rest.strip_prefix('p')) else {
            return false;
        };
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }
}

/// The path of a named network namespace.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// The tools used for networking.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub ip: PathBuf,
    pub nft: PathBuf,
}

/// Creates the bridge with the gateway address, enables forwarding and installs NAT.
pub(crate) async fn setup_host(
    tools: &Tools,
    naming: &Naming,
    subnet: &Subnet,
) -> Result<(), ContainerError> {
    let bridge = naming.bridge.as_str();
    let gateway = format!("{}/{}", subnet.gateway(), subnet.prefix_len());
    run(&tools.ip, &["link", "add", bridge, "type", "bridge"]).await?;
    // A bridge whose address was never set takes the lowest of its ports' addresses, so it
    // would change as containers come and go, and the containers' cached gateway address
    // would go stale (their frames to the host dropped until they ask again). Setting it,
    // even to the random one it has now, pins it.
    let mac_file = PathBuf::from(format!("/sys/class/net/{bridge}/address"));
    let mac = std::fs::read_to_string(&mac_file).map_err(ContainerError::io("read", &mac_file))?;
    run(&tools.ip, &["link", "set", bridge, "address", mac.trim()]).await?;
    run(&tools.ip, &["addr", "add", &gateway, "dev", bridge]).await?;
    run(&tools.ip, &["link", "set", bridge, "up"]).await?;
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    std::fs::write(forward, "1").map_err(ContainerError::io("write", forward))?;
    // Containers have no IPv6 address and the firewall is IPv4 only: without IPv6 on the
    // bridge, link-local IPv6 from a container reaches nothing on the host.
    let ipv6 = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"));
    if ipv6.exists() {
        std::fs::write(&ipv6, "1").map_err(ContainerError::io("write", &ipv6))?;
    }
    // Our own table: masquerade what leaves the subnet; accept forwarding to and from the
    // bridge (what is forwarded has passed the egress firewall, which judges everything
    // arriving from the bridge in its prerouting chain).
    let ruleset = format!(
        "table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} ip daddr != {subnet} masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" ct state established,related accept\n\
         \t}}\n\
         {firewall}\
         }}\n",
        table = naming.prefix,
        firewall = firewall::base_chains(naming),
    );
    run_with_input(&tools.nft, &["-f", "-"], Some(&ruleset)).await?;
    Ok(())
}

/// Removes the bridge and the nft table, if present.
pub(crate) async fn teardown_host(tools: &Tools, naming: &Naming) -> Result<(), ContainerError> {
    if link_exists(tools, &naming.bridge).await {
        delete_link(tools, &naming.bridge).await?;
    }
    if run(&tools.nft, &["list", "table", "ip", &naming.prefix])
        .await
        .is_ok()
    {
        run(&tools.nft, &["delete", "table", "ip", &naming.prefix]).await?;
    }
    Ok(())
}

/// Deletes a link; one that vanished meanwhile (its pair's other end went) is fine.
async fn delete_link(tools: &Tools, name: &str) -> Result<(), ContainerError> {
    match run(&tools.ip, &["link", "del", name]).await {
        Ok(_) => Ok(()),
        Err(_) if !link_exists(tools, name).await => Ok(()),
        Err(e) => Err(e),
    }
}

async fn link_exists(tools: &Tools, name: &str) -> bool {
    run(&tools.ip, &["link", "show", "dev", name]).await.is_ok()
}

/// Creates the container's network namespace with `eth0` (a veth into the bridge) at the
/// pool address `offset`, `lo` up, and a default route via the bridge.
pub(crate) async fn setup_container(
    tools: &Tools,
    naming: &Naming,
    subnet: &Subnet,
    id: &str,
    offset: u32,
) -> Result<PathBuf, ContainerError> {
    let netns = naming.netns(id);
    let host = naming.host_veth(offset);
    let peer = naming.peer_veth(offset);
    let address = format!("{}/32", subnet.address(offset));
    let gateway = subnet.gateway().to_string();
    run(&tools.ip, &["netns", "add", &netns]).await?;
    // An isolated port forwards frames only to and from the bridge itself, never to
    // another isolated port: container-to-container traffic has to be routed by the host.
    let host_side = format!(
        "link add {host} type veth peer name {peer}\n\
         link set {peer} netns {netns}\n\
         link set {host} master {bridge}\n\
         link set {host} type bridge_slave isolated on\n\
         link set {host} up\n",
        bridge = naming.bridge
    );
    run_with_input(&tools.ip, &["-batch", "-"], Some(&host_side)).await?;
    // A /32 address: no other container is on-link, everything goes to the gateway.
    let inside = format!(
        "link set {peer} name eth0\n\
         addr add {address} dev eth0\n\
         link set eth0 up\n\
         link set lo up\n\
         route add {gateway} dev eth0 scope link\n\
         route add default via {gateway} dev eth0\n"
    );
    run_with_input(&tools.ip, &["-n", &netns, "-batch", "-"], Some(&inside)).await?;
    Ok(netns_path(&netns))
}

/// Removes a container's veth and network namespace, whichever exist. Deleting the host
/// end takes the peer with it; deleting the namespace takes `eth0` (and so the pair) too.
pub(crate) async fn teardown_container(
    tools: &Tools,
    naming: &Naming,
    id: &str,
    offset: Option<u32>,
) -> Result<(), ContainerError> {
    if let Some(offset) = offset {
        for name in [naming.host_veth(offset), naming.peer_veth(offset)] {
            delete_link(tools, &name).await?;
        }
    }
    let netns = naming.netns(id);
    if netns_path(&netns).exists() {
        run(&tools.ip, &["netns", "del", &netns]).await?;
    }
    Ok(())
}

/// Removes every network namespace and veth a run with this naming may have left behind.
pub(crate) async fn remove_leftovers(tools: &Tools, naming: &Naming) -> Result<(), ContainerError> {
    // Veths first: deleting a namespace frees its end of a pair asynchronously, which would
    // leave the host end around for a moment.
    for name in list_links(tools).await? {
        if naming.is_ours(&name) {
            delete_link(tools, &name).await?;
        }
    }
    let ns_prefix = format!("{}-", naming.prefix);
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&ns_prefix) {
                run(&tools.ip, &["netns", "del", &name]).await?;
            }
        }
    }
    teardown_host(tools, naming).await
}

/// Names of the host's network interfaces.
pub(crate) async fn list_links(tools: &Tools) -> Result<Vec<String>, ContainerError> {
    let out = run(&tools.ip, &["-o", "link", "show"]).await?;
    Ok(out
        .lines()
        .filter_map(|line| {
            // "12: name@peer: <FLAGS> …"
            let name = line.split(": ").nth(1)?;
            Some(name.split('@').next().unwrap_or(name).to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_gives_gateway_and_container_addresses() {
        let subnet = Subnet::parse("10.254.0.0/22").expect("subnet");
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 254, 0, 1));
        assert_eq!(subnet.address(2), Ipv4Addr::new(10, 254, 0, 2));
        assert_eq!(subnet.max_offset(), 1022);
        assert_eq!(subnet.to_string(), "10.254.0.0/22");
    }

    #[test]
    fn bad_subnets_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.1/24",
            "10.0.0.0/31",
            "x/24",
            "10.0.0.0/x",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_hands_out_lowest_free_and_runs_out() {
        let mut pool = Pool::new(Subnet::parse("10.0.0.0/30").expect("subnet"));
        assert_eq!(pool.allocate().expect("first"), 2);
        assert!(matches!(
            pool.allocate(),
            Err(ContainerError::PoolExhausted { .. })
        ));
        pool.release(2);
        assert_eq!(pool.allocate().expect("again"), 2);
    }

    #[test]
    fn naming_recognises_only_its_own_veths() {
        let naming = Naming {
            prefix: "ingot".into(),
            bridge: "ingot0".into(),
        };
        assert_eq!(naming.host_veth(12), "ingotv12");
        assert!(naming.is_ours("ingotv12"));
        assert!(naming.is_ours("ingotp3"));
        assert!(!naming.is_ours("ingot0"));
        assert!(!naming.is_ours("ingotvx"));
        assert!(!naming.is_ours("eth0"));
        assert_eq!(naming.netns("abc"), "ingot-abc");
    }
}
