//! Facts about the host the stack runs on, read from sysfs and procfs: the
//! interface (index, MAC, MTU, receive queues), usable CPUs, and whether the
//! process has the privileges AF_XDP and BPF need. Checked before anything
//! is set up, so a user gets one clear line instead of a syscall error.

use std::{fs, path::PathBuf};

use crate::wire::EthernetAddress;

/// What the stack needs to know about its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: EthernetAddress,
    pub mtu: u32,
    pub rx_queues: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("no network interface named {0:?} (see `ip link`)")]
    NoSuchInterface(String),
    #[error("cannot read {path}: {reason}")]
    Sysfs { path: String, reason: String },
    #[error("bypass needs root, or the capabilities CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (missing: {0}); run it with sudo")]
    NotPrivileged(String),
}

impl InterfaceInfo {
    pub fn query(name: &str) -> Result<Self, HostError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(HostError::NoSuchInterface(name.into()));
        }
        let dir = PathBuf::from("/sys/class/net").join(name);
        if !dir.exists() {
            return Err(HostError::NoSuchInterface(name.into()));
        }
        let read = |file: &str| -> Result<String, HostError> {
            let path = dir.join(file);
            fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| HostError::Sysfs {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
        };
        let parse_err = |file: &str, v: &str| HostError::Sysfs {
            path: dir.join(file).display().to_string(),
            reason: format!("unexpected value {v:?}"),
        };
        let ifindex = read("ifindex")?;
        let ifindex = ifindex
            .parse()
            .map_err(|_| parse_err("ifindex", &ifindex))?;
        let mac = read("address")?;
        let mac = mac.parse().map_err(|_| parse_err("address", &mac))?;
        let mtu = read("mtu")?;
        let mtu = mtu.parse().map_err(|_| parse_err("mtu", &mtu))?;
        let queues = dir.join("queues");
        let rx_queues = fs::read_dir(&queues)
            .map_err(|e| HostError::Sysfs {
                path: queues.display().to_string(),
                reason: e.to_string(),
            })?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count() as u32;
        Ok(InterfaceInfo {
            name: name.into(),
            ifindex,
            mac,
            mtu,
            rx_queues: rx_queues.max(1),
        })
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Checks the effective capabilities for XDP (CAP_NET_ADMIN), AF_XDP
/// sockets (CAP_NET_RAW) and loading BPF (CAP_BPF, or CAP_SYS_ADMIN on
/// kernels before 5.8).
pub fn check_privileges() -> Result<(), HostError> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| HostError::Sysfs {
        path: "/proc/self/status".into(),
        reason: e.to_string(),
    })?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    missing_capabilities(eff).map_or(Ok(()), |m| Err(HostError::NotPrivileged(m)))
}

fn missing_capabilities(eff: u64) -> Option<String> {
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Parses a CPU list such as `0,2,4-7`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {s:?}: expected numbers and ranges like 0,2,4-7");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err(format!("empty CPU list {s:?}"));
    }
    let mut seen = cpus.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != cpus.len() {
        return Err(format!("CPU list {s:?} names a CPU twice"));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_junk_is_not() {
        let lo = InterfaceInfo::query("lo").unwrap();
        assert_eq!(lo.name, "lo");
        assert!(lo.ifindex >= 1);
        assert!(lo.rx_queues >= 1);
        for bad in ["", "nope0", "../lo", ".", "lo/x"] {
            assert!(
                matches!(
                    InterfaceInfo::query(bad),
                    Err(HostError::NoSuchInterface(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn capabilities_are_named_when_missing() {
        assert_eq!(missing_capabilities(u64::MAX), None);
        assert_eq!(
            missing_capabilities(0).as_deref(),
            Some("CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF")
        );
        let old_kernel_root = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_SYS_ADMIN);
        assert_eq!(missing_capabilities(old_kernel_root), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2,4-6").unwrap(), vec![0, 2, 4, 5, 6]);
        assert_eq!(parse_cpu_list(" 1 ").unwrap(), vec![1]);
        for bad in ["", "a", "3-1", "1,1", "0-", "-1", "1-999999"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }
}
