//! Loopback address blocks: each control plane owns one `127.B.0.0/16`.
//!
//! Every 127/8 address is bindable without setup, so a control plane puts its
//! API server and etcd on `127.B.254.1`, its nodes on `127.B.255.N` and its pods
//! on `127.B.0.1 ..= 127.B.253.254`. Distinct blocks mean parallel control planes
//! (even in different test processes) never collide on an address or a port; a
//! lock file held for the block's lifetime arbitrates between processes.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};

/// The blocks handed out automatically (127.0/16 is left to host services).
const AUTO_BLOCKS: std::ops::RangeInclusive<u8> = 100..=199;

/// Ports the control plane binds on its API address.
pub const API_PORT: u16 = 6443;
/// etcd client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd peer port.
pub const ETCD_PEER_PORT: u16 = 2380;

/// A `127.B.0.0/16` block, reserved while this value lives.
#[derive(Debug)]
pub struct AddressBlock {
    octet: u8,
    _lock: File,
}

impl AddressBlock {
    /// Reserves `preferred` if given (failing when it is taken), else the first
    /// free automatic block.
    pub fn acquire(preferred: Option<u8>) -> Result<Self> {
        let dir = std::env::temp_dir().join("korc-e2e-blocks");
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let candidates: Vec<u8> = match preferred {
            Some(octet) => vec![octet],
            None => AUTO_BLOCKS.collect(),
        };
        for octet in candidates {
            if let Some(block) = Self::try_reserve(&dir, octet)? {
                return Ok(block);
            }
        }
        Err(Error::NoAddressBlock)
    }

    fn try_reserve(dir: &std::path::Path, octet: u8) -> Result<Option<Self>> {
        let path: PathBuf = dir.join(format!("127.{octet}.lock"));
        let file = File::create(&path).context(|| format!("creating {}", path.display()))?;
        if file.try_lock().is_err() {
            return Ok(None);
        }
        // A leftover process from a crashed run may still hold the addresses.
        let api = api_ip(octet);
        for port in [API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT] {
            if TcpListener::bind((api, port)).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(Self { octet, _lock: file }))
    }

    /// The second octet `B`.
    pub fn octet(&self) -> u8 {
        self.octet
    }

    /// Address of the API server and etcd.
    pub fn api_ip(&self) -> Ipv4Addr {
        api_ip(self.octet)
    }
}

fn api_ip(octet: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, octet, 254, 1)
}

/// Address of node `index` (0-based) in block `octet`.
pub fn node_ip(octet: u8, index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, octet, 255, u8::try_from(index + 1).unwrap_or(u8::MAX))
}

/// The `n`-th pod address (0-based) in block `octet`, or `None` when the block is exhausted.
pub fn pod_ip(octet: u8, n: u32) -> Option<Ipv4Addr> {
    // 254 usable hosts per /24 (no .0, no .255), and only the /24s below 254.
    let third = n / 254;
    let fourth = n % 254 + 1;
    (third < 254).then(|| Ipv4Addr::new(127, octet, third as u8, fourth as u8))
}

/// Whether `ip` is a pod address of block `octet`.
pub fn is_pod_ip(octet: u8, ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 127 && b == octet && c < 254
}

/// The index of pod address `ip` in block `octet` (inverse of [`pod_ip`]).
pub fn pod_index(octet: u8, ip: Ipv4Addr) -> Option<u32> {
    let [_, _, c, d] = ip.octets();
    (is_pod_ip(octet, ip) && (1..=254).contains(&d)).then(|| u32::from(c) * 254 + u32::from(d) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_round_trip_and_skip_network_and_broadcast() {
        assert_eq!(pod_ip(7, 0), Some(Ipv4Addr::new(127, 7, 0, 1)));
        assert_eq!(pod_ip(7, 253), Some(Ipv4Addr::new(127, 7, 0, 254)));
        assert_eq!(pod_ip(7, 254), Some(Ipv4Addr::new(127, 7, 1, 1)));
        assert_eq!(pod_ip(7, 254 * 254), None);
        for n in [0, 1, 253, 254, 1000] {
            let ip = pod_ip(7, n).expect("in range");
            assert_eq!(pod_index(7, ip), Some(n));
        }
        assert!(!is_pod_ip(7, api_ip(7)));
        assert!(!is_pod_ip(7, node_ip(7, 0)));
    }
}
