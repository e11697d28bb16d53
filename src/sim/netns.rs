//! The network of a `network = "netns"` run: the Hub and every host in a network namespace of
//! their own, each joined by a veth pair to one bridge in the runner's namespace, which holds the
//! run's only address there (`10.R.0.254/16`, so the runner reaches the Hub and nothing else needs
//! routing). Each veth end is shaped on egress by an htb class: a host's end at its upload cap,
//! the bridge's end at its download cap, the Hub's end at the Hub's bandwidth. A zone partition is
//! a `u32` filter on the hosts' ends that sends packets for the other zones' addresses to a class
//! whose queue holds nothing (`pfifo limit 0`): no `nft`, `iptables` or tc action module needed.
//!
//! Addresses: the Hub `10.R.0.1`, host `i` of zone number `z` (1-based, in order of first
//! appearance) `10.R.z.(i+1)`, so a zone is a /24. Names carry the runner's pid and a counter
//! (namespaces `hfsim-PID-N-h00`, devices aliased `hfsim-PID-N`), so parallel runs do not clash,
//! and leftovers of a runner that died are removed by the next run. Everything is removed on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _};

use super::scenario::Scenario;

/// Where one process of the run lives: its namespace (none on loopback) and its address.
#[derive(Debug, Clone)]
pub struct Site {
    /// The network namespace to run in (`ip netns exec`), if any.
    pub ns: Option<String>,
    /// The address it listens on.
    pub ip: IpAddr,
}

impl Site {
    /// The runner's own loopback.
    pub fn loopback() -> Site {
        Site {
            ns: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Whether its link is shaped by the kernel (the agents' own token buckets are then off).
    pub fn shaped(&self) -> bool {
        self.ns.is_some()
    }
}

/// The name of the device inside every namespace.
const INNER: &str = "eth0";
/// The htb class that drops everything sent to it (its queue is `pfifo limit 0`).
const DROP_CLASS: &str = "1:2";
/// Filter priorities of partitions start here (one priority per partition fault).
const CUT_PRIO: usize = 10;

static RUNS: AtomicU32 = AtomicU32::new(0);

/// The namespaces, veths and bridge of one run; removed on drop.
#[derive(Debug)]
pub struct Net {
    id: String,
    bridge: String,
    net: [u8; 2],
    zones: Vec<String>,
    hub: Member,
    hosts: Vec<Member>,
    created_ns: Vec<String>,
    created_links: Vec<String>,
}

#[derive(Debug, Clone)]
struct Member {
    ns: String,
    zone: u8,
    addr: Ipv4Addr,
}

/// Runs `program args`, answering its stdout or an error with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program}` (install iproute2)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// `tc` in namespace `ns`, or in the runner's.
fn tc(ns: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let mut all: Vec<&str> = ns.map(|ns| vec!["-n", ns]).unwrap_or_default();
    all.extend_from_slice(args);
    run("tc", &all)
}

/// Fails with one clear sentence when this machine cannot build the run's network.
pub fn check_allowed() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        bail!("network = \"netns\" needs root to create network namespaces (this runner's uid is {euid}); run as root or use network = \"loopback\"");
    }
    for tool in ["ip", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() {
            bail!(
                "network = \"netns\" needs the `{tool}` command (Debian: apt-get install iproute2)"
            );
        }
    }
    Ok(())
}

/// The namespaces and devices a runner with process id `pid` created and left (its runs' names).
pub fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("hfsim-{pid}-");
    let mut found: Vec<String> = ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&tag))
        .map(str::to_string)
        .collect();
    found.extend(
        ip(&["-o", "link", "show"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("alias {tag}")))
            .filter_map(|l| l.split(':').nth(1))
            .map(|d| d.trim().split('@').next().unwrap_or("").to_string()),
    );
    found
}

/// Removes what runners that are no longer alive left behind.
fn remove_stale() {
    let names = ip(&["netns", "list"]).unwrap_or_default();
    let links = ip(&["-o", "link", "show"]).unwrap_or_default();
    let pids = names
        .lines()
        .chain(links.lines().filter_map(|l| l.split("alias ").nth(1)))
        .filter_map(|n| {
            n.trim()
                .strip_prefix("hfsim-")?
                .split('-')
                .next()?
                .parse()
                .ok()
        });
    let mut dead: Vec<u32> = pids
        .filter(|p: &u32| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    dead.sort_unstable();
    dead.dedup();
    for pid in dead {
        for name in leftovers(pid) {
            if name.starts_with("hfsim-") {
                let _ = ip(&["netns", "del", &name]);
            } else {
                let _ = ip(&["link", "del", &name]);
            }
        }
    }
}

/// A `10.R` whose /16 no address or route of this namespace uses.
fn free_net(seed: u32) -> anyhow::Result<[u8; 2]> {
    let used = ip(&["-4", "-o", "addr", "show"])? + &ip(&["-4", "route", "show", "table", "all"])?;
    (0..50)
        .map(|i| 200 + ((seed + i) % 50) as u8)
        .find(|r| !used.contains(&format!(" 10.{r}.")))
        .map(|r| [10, r])
        .context("every 10.200/16 … 10.249/16 is in use on this machine")
}

/// An htb bit rate from bytes per second.
fn rate(bytes_per_sec: u64) -> String {
    format!("{}bit", bytes_per_sec.saturating_mul(8).max(8))
}

impl Net {
    /// Builds the network of `s`: a namespace for the Hub and for each host, every link shaped.
    pub fn build(s: &Scenario) -> anyhow::Result<Net> {
        check_allowed()?;
        remove_stale();
        let pid = std::process::id();
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let id = format!("hfsim-{pid}-{n}");
        // Device names have at most 15 bytes: "hs" + 6 hex digits of the run + a suffix.
        let tag = format!("{:06x}", (pid.wrapping_mul(31).wrapping_add(n)) & 0xff_ffff);
        let zones = s.zones();
        let net = free_net(pid.wrapping_add(n))?;
        let [a, b] = net;
        let member = |name: String, zone: u8, host: u8| Member {
            ns: name,
            zone,
            addr: Ipv4Addr::new(a, b, zone, host),
        };
        let mut me = Net {
            bridge: format!("hs{tag}br"),
            hub: member(format!("{id}-hub"), 0, 1),
            hosts: s
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let z = zones.iter().position(|z| z == &h.zone).unwrap_or(0);
                    member(format!("{id}-{}", h.name), z as u8 + 1, i as u8 + 1)
                })
                .collect(),
            id,
            net,
            zones,
            created_ns: Vec::new(),
            created_links: Vec::new(),
        };
        // On any error below, dropping `me` removes what was made so far.
        let bridge = me.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        me.created_links.push(bridge.clone());
        ip(&["link", "set", &bridge, "alias", &me.id])?;
        ip(&["addr", "add", &format!("{a}.{b}.0.254/16"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        let hub = me.hub.clone();
        me.join(&hub, &format!("hs{tag}hub"), s.hub_bandwidth, None)?;
        for (i, h) in s.hosts.iter().enumerate() {
            let m = me.hosts[i].clone();
            me.join(&m, &format!("hs{tag}n{i}"), h.upload, Some(h.download))?;
        }
        Ok(me)
    }

    /// A namespace for `m`, a veth pair to the bridge, its address, and both ends shaped:
    /// `up` on the namespace's end, `down` (if any) on the bridge's.
    fn join(&mut self, m: &Member, outer: &str, up: u64, down: Option<u64>) -> anyhow::Result<()> {
        ip(&["netns", "add", &m.ns])?;
        self.created_ns.push(m.ns.clone());
        ip(&[
            "link", "add", outer, "type", "veth", "peer", "name", INNER, "netns", &m.ns,
        ])?;
        self.created_links.push(outer.to_string());
        ip(&["link", "set", outer, "alias", &self.id])?;
        ip(&["link", "set", outer, "master", &self.bridge])?;
        ip(&["link", "set", outer, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", m.ns.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["addr", "add", &format!("{}/16", m.addr), "dev", INNER])?;
        inside(&["link", "set", INNER, "up"])?;
        shape(Some(&m.ns), INNER, up)?;
        if let Some(down) = down {
            shape(None, outer, down)?;
        }
        Ok(())
    }

    /// Where the Hub runs.
    pub fn hub_site(&self) -> Site {
        site(&self.hub)
    }

    /// Where host `h` runs.
    pub fn host_site(&self, h: usize) -> Site {
        site(&self.hosts[h])
    }

    /// The run's name: its namespaces start with it, its devices carry it as alias.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The /24 of zone `zone`.
    fn zone_net(&self, zone: &str) -> Option<String> {
        let z = self.zones.iter().position(|x| x == zone)? + 1;
        let [a, b] = self.net;
        Some(format!("{a}.{b}.{z}.0/24"))
    }

    /// Cuts every pair of `zones` apart (partition number `key`): each host of one drops what it
    /// sends to the others. Returns how many filters were added.
    pub fn cut(&self, key: usize, zones: &[String]) -> anyhow::Result<usize> {
        let prio = (CUT_PRIO + key).to_string();
        let mut added = 0;
        for h in self.in_zones(zones) {
            for other in zones
                .iter()
                .filter(|z| Some(*z) != self.zones.get(usize::from(h.zone) - 1))
            {
                let dst = self.zone_net(other).context("unknown zone")?;
                tc(
                    Some(&h.ns),
                    &[
                        "filter", "add", "dev", INNER, "parent", "1:", "protocol", "ip", "prio",
                        &prio, "u32", "match", "ip", "dst", &dst, "flowid", DROP_CLASS,
                    ],
                )?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Heals partition number `key`.
    pub fn heal(&self, key: usize, zones: &[String]) -> anyhow::Result<()> {
        let prio = (CUT_PRIO + key).to_string();
        for h in self.in_zones(zones) {
            tc(
                Some(&h.ns),
                &[
                    "filter", "del", "dev", INNER, "parent", "1:", "protocol", "ip", "prio", &prio,
                ],
            )?;
        }
        Ok(())
    }

    fn in_zones<'a>(&'a self, zones: &'a [String]) -> impl Iterator<Item = &'a Member> + 'a {
        self.hosts.iter().filter(move |h| {
            zones
                .iter()
                .any(|z| self.zones.get(usize::from(h.zone) - 1) == Some(z))
        })
    }
}

fn site(m: &Member) -> Site {
    Site {
        ns: Some(m.ns.clone()),
        ip: IpAddr::V4(m.addr),
    }
}

/// The htb tree of one device: class 1:1 (the default) at `bytes_per_sec`, and the drop class.
fn htb_tree(dev: &str, bytes_per_sec: u64) -> Vec<Vec<String>> {
    let burst = (bytes_per_sec / 100).max(32 << 10).to_string();
    let r = rate(bytes_per_sec);
    let lines: [&[&str]; 5] = [
        &[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1",
        ],
        &[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", &r,
            "ceil", &r, "burst", &burst, "cburst", &burst, "quantum", "60000",
        ],
        &[
            "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "pfifo", "limit", "1000",
        ],
        &[
            "class", "add", "dev", dev, "parent", "1:", "classid", DROP_CLASS, "htb", "rate",
            "8kbit", "quantum", "1514",
        ],
        &[
            "qdisc", "add", "dev", dev, "parent", DROP_CLASS, "handle", "20:", "pfifo", "limit",
            "0",
        ],
    ];
    lines
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Shapes `dev`'s egress (in namespace `ns`, or the runner's) at `bytes_per_sec`.
fn shape(ns: Option<&str>, dev: &str, bytes_per_sec: u64) -> anyhow::Result<()> {
    for args in htb_tree(dev, bytes_per_sec) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tc(ns, &args)?;
    }
    Ok(())
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both, even while a process still holds the
        // namespace of the other end.
        for link in self.created_links.iter().rev() {
            let _ = ip(&["link", "del", link]);
        }
        for ns in &self.created_ns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
