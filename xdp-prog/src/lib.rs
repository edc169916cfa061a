//! The XDP side of bypass: the `steer` program (bpf/steer.c, built by
//! build.rs with clang) and its loader on aya.
//!
//! The program redirects the stack's traffic (TCP to steered ports on the
//! stack's addresses; in owned-IP mode also ARP and ICMP for those addresses)
//! into the AF_XDP socket of the receive queue it arrived on, and passes
//! everything else to the kernel untouched.
//!
//! Order of use: [`Steering::load`] (program and maps, nothing attached yet),
//! [`Steering::register_socket`] for each queue, then [`Steering::attach`], so
//! no frame meant for the stack reaches the interface before its socket is in
//! place. Dropping [`Steering`] detaches the program (aya holds the attachment
//! as a bpf_link; the kernel also releases it if the process dies).

#![deny(unsafe_code)]

mod legacy;

use std::{io, net::Ipv4Addr, os::fd::AsRawFd};

use aya::{
    include_bytes_aligned,
    maps::{Array, MapData, PerCpuArray, XskMap},
    programs::{xdp::XdpLinkId, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};

/// The program object, compiled by build.rs.
static STEER_OBJ: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.o"));

/// The program's name in the kernel, which tells our stale programs from
/// other people's.
pub const PROGRAM_NAME: &str = "steer";
/// Mirrors `MAX_QUEUES` in steer.c: receive queues that can have a socket.
pub const MAX_QUEUES: u32 = 64;
/// Mirrors `MAX_ADDRS` in steer.c: addresses the stack can own.
pub const MAX_ADDRS: usize = 16;
/// Mirrors `CONFIG_OWNED_IP` in steer.c.
const CONFIG_OWNED_IP: u32 = 1;
/// `struct config` in steer.c as u32 words: flags, n_addrs, addrs[MAX_ADDRS].
type ConfigWords = [u32; 2 + MAX_ADDRS];

/// Who answers ARP and ICMP for the stack's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpMode {
    /// The stack owns the address: ARP, ICMP and the steered TCP ports go to
    /// it; the kernel has no such address.
    Owned,
    /// The kernel keeps the address (SSH, DNS and the rest stay with it);
    /// only the steered TCP ports go to the stack, which answers to the
    /// frame's source MAC.
    Shared,
}

/// What the program steers.
#[derive(Debug, Clone)]
pub struct SteerConfig {
    pub addrs: Vec<Ipv4Addr>,
    pub tcp_ports: Vec<u16>,
    pub mode: IpMode,
}

/// The mode the program was attached in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP, run by the driver before any socket buffer exists.
    Driver,
    /// Generic XDP, run by the kernel after the driver built an skb; works
    /// on every interface, slower.
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "native (driver)",
            AttachMode::Generic => "generic (skb)",
        })
    }
}

/// Frames the program handled on one receive queue, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Redirected into the queue's AF_XDP socket.
    pub steered: u64,
    /// Handed to the kernel.
    pub passed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error("loading the XDP program into the kernel failed: {0} (needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Load(String),
    #[error("configuring the XDP program's maps failed: {0}")]
    Map(String),
    #[error("the stack can own at most {MAX_ADDRS} addresses, {0} given")]
    TooManyAddrs(usize),
    #[error("queue {0} is beyond the {MAX_QUEUES} queues the XDP program supports")]
    QueueOutOfRange(u32),
    #[error("no network interface named {0:?}")]
    NoSuchInterface(String),
    #[error("attaching XDP to {iface} refused: {reason}")]
    Attach { iface: String, reason: io::Error },
    #[error("{iface} already has an XDP program held by a running process (another bypass?); stop it first")]
    Busy { iface: String },
    #[error("{iface} already has another XDP program attached (id {id}, {name:?}); detach it with `ip link set dev {iface} xdp off` if nothing needs it")]
    Foreign {
        iface: String,
        id: u32,
        name: String,
    },
}

impl From<aya::maps::MapError> for SteerError {
    fn from(e: aya::maps::MapError) -> Self {
        SteerError::Map(e.to_string())
    }
}

/// The loaded steering program; detached when dropped.
pub struct Steering {
    ebpf: Ebpf,
    attached: Option<Attached>,
}

struct Attached {
    iface: String,
    mode: AttachMode,
    link: XdpLinkId,
}

impl Steering {
    /// Loads the program and writes `config` into its maps. Nothing is
    /// attached yet.
    pub fn load(config: &SteerConfig) -> Result<Self, SteerError> {
        if config.addrs.len() > MAX_ADDRS {
            return Err(SteerError::TooManyAddrs(config.addrs.len()));
        }
        let mut ebpf = EbpfLoader::new()
            .load(STEER_OBJ)
            .map_err(|e| SteerError::Load(error_chain(&e)))?;
        let program: &mut Xdp = program(&mut ebpf);
        program
            .load()
            .map_err(|e| SteerError::Load(error_chain(&e)))?;

        let mut words: ConfigWords = [0; 2 + MAX_ADDRS];
        words[0] = if config.mode == IpMode::Owned {
            CONFIG_OWNED_IP
        } else {
            0
        };
        words[1] = config.addrs.len() as u32;
        for (slot, addr) in words[2..].iter_mut().zip(&config.addrs) {
            // The program compares against the header's network-order word.
            *slot = u32::from_ne_bytes(addr.octets());
        }
        let mut cfg_map: Array<&mut MapData, ConfigWords> =
            Array::try_from(ebpf.map_mut("config").expect("config map in steer.o"))?;
        cfg_map.set(0, words, 0)?;

        let mut ports: Array<&mut MapData, u8> =
            Array::try_from(ebpf.map_mut("ports").expect("ports map in steer.o"))?;
        for &port in &config.tcp_ports {
            ports.set(u32::from(port), 1, 0)?;
        }
        Ok(Steering {
            ebpf,
            attached: None,
        })
    }

    /// Sends frames that arrive on receive queue `queue` to the AF_XDP socket
    /// `socket`.
    pub fn register_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), SteerError> {
        if queue >= MAX_QUEUES {
            return Err(SteerError::QueueOutOfRange(queue));
        }
        let mut xsks: XskMap<&mut MapData> =
            XskMap::try_from(self.ebpf.map_mut("xsks").expect("xsks map in steer.o"))?;
        xsks.set(queue, socket.as_raw_fd(), 0)?;
        Ok(())
    }

    /// Attaches to `iface`: native mode first, generic when the driver
    /// refuses native (or only generic when `force_generic`). A stale copy
    /// of this program left on the interface through netlink is replaced;
    /// anything else attached (another tool's program, or a bpf_link held by
    /// a live process) is reported, never removed.
    pub fn attach(&mut self, iface: &str, force_generic: bool) -> Result<AttachMode, SteerError> {
        let ifindex =
            legacy::ifindex(iface).ok_or_else(|| SteerError::NoSuchInterface(iface.into()))?;
        let modes: &[AttachMode] = if force_generic {
            &[AttachMode::Generic]
        } else {
            &[AttachMode::Driver, AttachMode::Generic]
        };
        let mut replaced = false;
        let mut last_err = None;
        let mut i = 0;
        while let Some(&mode) = modes.get(i) {
            match self.try_attach(ifindex, mode) {
                Ok(link) => {
                    self.attached = Some(Attached {
                        iface: iface.to_string(),
                        mode,
                        link,
                    });
                    return Ok(mode);
                }
                // EBUSY: a program is attached in this mode; EEXIST: one is
                // attached in the other mode (native and generic exclude
                // each other). Replace it once if it is a stale copy of ours.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST))
                        && !replaced =>
                {
                    self.remove_stale(iface, ifindex)?;
                    replaced = true;
                    continue; // the same mode again
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) => {
                    return Err(SteerError::Busy {
                        iface: iface.into(),
                    })
                }
                Err(e) => {
                    tracing::debug!(iface, ?mode, error = %e, "XDP attach failed");
                    last_err = Some(e);
                }
            }
            i += 1;
        }
        Err(SteerError::Attach {
            iface: iface.into(),
            reason: last_err.unwrap_or_else(|| io::Error::other("no attach mode tried")),
        })
    }

    /// Detaches a netlink-attached copy of this program; refuses anything
    /// else.
    fn remove_stale(&self, iface: &str, ifindex: u32) -> Result<(), SteerError> {
        for id in legacy::attached_program_ids(ifindex) {
            let name = program_name(id).unwrap_or_default();
            if name != PROGRAM_NAME {
                return Err(SteerError::Foreign {
                    iface: iface.into(),
                    id,
                    name,
                });
            }
        }
        tracing::warn!(
            iface,
            "replacing a stale {PROGRAM_NAME} XDP program left by an earlier run"
        );
        legacy::detach_netlink(ifindex).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                SteerError::Busy {
                    iface: iface.into(),
                }
            } else {
                SteerError::Attach {
                    iface: iface.into(),
                    reason: e,
                }
            }
        })
    }

    fn try_attach(&mut self, ifindex: u32, mode: AttachMode) -> io::Result<XdpLinkId> {
        let xdp_mode = match mode {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        program(&mut self.ebpf)
            .attach_to_if_index(ifindex, xdp_mode)
            .map_err(program_io_error)
    }

    /// Detaches the program from the interface (the maps stay readable).
    /// Also done on drop.
    pub fn detach(&mut self) {
        if let Some(a) = self.attached.take() {
            if let Err(e) = program(&mut self.ebpf).detach(a.link) {
                tracing::warn!(iface = a.iface, error = %e, "detaching XDP");
            }
        }
    }

    /// The interface and mode the program is attached in, if attached.
    pub fn attached(&self) -> Option<(&str, AttachMode)> {
        self.attached.as_ref().map(|a| (a.iface.as_str(), a.mode))
    }

    /// Per-queue counters for queues `0..queues`, summed over CPUs.
    pub fn counters(&self, queues: u32) -> Result<Vec<QueueCounters>, SteerError> {
        let map: PerCpuArray<&MapData, [u64; 2]> =
            PerCpuArray::try_from(self.ebpf.map("counters").expect("counters map in steer.o"))?;
        (0..queues.min(MAX_QUEUES))
            .map(|q| {
                let per_cpu = map.get(&q, 0)?;
                Ok(per_cpu
                    .iter()
                    .fold(QueueCounters::default(), |acc, v| QueueCounters {
                        steered: acc.steered + v[0],
                        passed: acc.passed + v[1],
                    }))
            })
            .collect()
    }
}

fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut("steer")
        .expect("steer program in steer.o")
        .try_into()
        .expect("steer is an XDP program")
}

/// The kernel's name for program `id`, if it is still loaded.
fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

fn program_io_error(e: ProgramError) -> io::Error {
    match e {
        ProgramError::SyscallError(s) => s.io_error,
        ProgramError::XdpError(aya::programs::xdp::XdpError::NetlinkError(n)) => {
            io::Error::other(n.to_string())
        }
        other => io::Error::other(other.to_string()),
    }
}
