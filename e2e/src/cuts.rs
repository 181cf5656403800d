//! Network cuts between two pods: their packets are really dropped, by nftables.
//!
//! A cut between pods A and B drops every packet of every TCP/UDP flow between them,
//! both directions, established sessions included: a connect times out, a session
//! stalls. Addresses alone cannot select those flows (on loopback they all leave from
//! 127.0.0.1), so each pod's processes run in a cgroup of their own
//! ([`crate::cgroups`]) and one table of the control plane holds, in its `output`
//! chain (every loopback packet passes it once):
//!
//! ```text
//! socket cgroupv2 level 2 "<A's cgroup>" ip daddr <B> ct mark set M   # A's packets to B
//! socket cgroupv2 level 2 "<B's cgroup>" ip daddr <A> ct mark set M   # B's packets to A
//! ct mark M counter drop                                              # and the replies
//! ```
//!
//! The first two mark the connection (conntrack) the moment either side sends on it,
//! so the replies, which go to 127.0.0.1 from the other pod, are dropped too. Healing
//! removes the rules; a marked connection flows again. Marks carry the block's octet,
//! so control planes on other blocks never drop each other's flows.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::cgroups::PodCgroup;
use crate::error::{Error, Result};

/// One end of a cut: a pod's address and cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The cgroup its processes run in.
    pub cgroup: PodCgroup,
}

/// The cuts in force on one control plane, and their nftables table.
#[derive(Debug)]
pub struct Cuts {
    table: String,
    octet: u8,
    next: u32,
    /// By the two pods' keys (`namespace/name`, in order).
    active: BTreeMap<(String, String), Cut>,
}

/// One cut: the mark of its flows and its two ends.
#[derive(Debug, Clone)]
struct Cut {
    mark: u32,
    a: Endpoint,
    b: Endpoint,
}

impl Cuts {
    /// No cut yet, for the control plane on block `octet`; a table a previous run
    /// left behind is removed.
    pub fn new(octet: u8) -> Result<Self> {
        let mut cuts = Self {
            table: format!("korc_e2e_{octet}"),
            octet,
            next: 1,
            active: BTreeMap::new(),
        };
        cuts.apply()?;
        Ok(cuts)
    }

    /// Cuts the path between pods `a` and `b` (keys `namespace/name`); cutting it again
    /// takes their current ends.
    pub fn cut(&mut self, a: (&str, Endpoint), b: (&str, Endpoint)) -> Result<()> {
        let key = pair(a.0, b.0);
        let mark = match self.active.get(&key) {
            Some(cut) => cut.mark,
            None => {
                let id = self.next;
                self.next += 1;
                (u32::from(self.octet) << 16) | id
            }
        };
        let cut = Cut {
            mark,
            a: a.1,
            b: b.1,
        };
        let previous = self.active.insert(key.clone(), cut);
        if let Err(e) = self.apply() {
            match previous {
                Some(p) => self.active.insert(key, p),
                None => self.active.remove(&key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Heals the path between `a` and `b`; whether it was cut.
    pub fn heal(&mut self, a: &str, b: &str) -> Result<bool> {
        let Some(removed) = self.active.remove(&pair(a, b)) else {
            return Ok(false);
        };
        if let Err(e) = self.apply() {
            self.active.insert(pair(a, b), removed);
            return Err(e);
        }
        Ok(true)
    }

    /// Removes the table (every cut heals).
    pub fn remove(&mut self) {
        self.active.clear();
        if let Err(e) = nft(&format!(
            "table inet {0}\ndelete table inet {0}\n",
            self.table
        )) {
            tracing::warn!(error = %e, "removing the network cuts' table");
        }
    }

    /// Replaces the table with one holding the active cuts, in one transaction. A cut
    /// one of whose pods is gone (its cgroup removed) ends with it: its address goes
    /// to another pod, and nftables cannot name a removed cgroup.
    fn apply(&mut self) -> Result<()> {
        self.active
            .retain(|_, cut| cut.a.cgroup.dir.exists() && cut.b.cgroup.dir.exists());
        nft(&ruleset(&self.table, self.active.values()))
    }
}

/// The two keys in a fixed order: a cut has no direction.
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// The nftables script that replaces `table` with the rules of `cuts`.
fn ruleset<'a>(table: &str, cuts: impl Iterator<Item = &'a Cut>) -> String {
    let mut marks = String::new();
    let mut drops = String::new();
    for Cut { mark, a, b } in cuts {
        for (from, to) in [(a, b), (b, a)] {
            marks.push_str(&format!(
                "\t\tsocket cgroupv2 level {} \"{}\" ip daddr {} ct mark set {mark:#x}\n",
                from.cgroup.level, from.cgroup.nft_path, to.ip
            ));
        }
        drops.push_str(&format!("\t\tct mark {mark:#x} counter drop\n"));
    }
    // Declaring the table first makes the deletion valid when it does not exist yet.
    format!(
        "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n\
         \tchain output {{\n\t\ttype filter hook output priority 0; policy accept;\n\
         {marks}{drops}\t}}\n}}\n"
    )
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> Result<()> {
    let program = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft");
    let failed = |e: String| Error::NetworkCut(format!("{program} -f -: {e}"));
    let mut child = Command::new(program)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("{e} (install nftables: e2e/prereqs)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!(
            "{}\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(ip: [u8; 4], cgroup: &str) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::from(ip),
            cgroup: PodCgroup {
                dir: format!("/sys/fs/cgroup/{cgroup}").into(),
                nft_path: cgroup.to_owned(),
                level: 2,
            },
        }
    }

    #[test]
    fn each_cut_marks_both_directions_and_drops_the_marked_flows() {
        let cases: Vec<(Vec<Cut>, Vec<&str>)> = vec![
            (vec![], vec![]),
            (
                vec![Cut {
                    mark: 0x96_0001,
                    a: end([127, 150, 0, 1], "unified/korc-e2e-150/p1"),
                    b: end([127, 150, 0, 2], "unified/korc-e2e-150/p2"),
                }],
                vec![
                    "socket cgroupv2 level 2 \"unified/korc-e2e-150/p1\" ip daddr 127.150.0.2 ct mark set 0x960001",
                    "socket cgroupv2 level 2 \"unified/korc-e2e-150/p2\" ip daddr 127.150.0.1 ct mark set 0x960001",
                    "ct mark 0x960001 counter drop",
                ],
            ),
        ];
        for (cuts, want) in cases {
            let script = ruleset("korc_e2e_150", cuts.iter());
            let rules: Vec<&str> = script
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("socket") || l.starts_with("ct mark"))
                .collect();
            assert_eq!(rules, want);
            assert!(script.starts_with(
                "table inet korc_e2e_150\ndelete table inet korc_e2e_150\ntable inet korc_e2e_150 {"
            ));
        }
    }

    #[test]
    fn a_cut_has_no_direction() {
        assert_eq!(pair("db/a", "korc/b"), pair("korc/b", "db/a"));
    }
}
