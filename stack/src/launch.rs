//! Bringing the stack up on a real interface and down again: checks, the
//! XDP program, one AF_XDP socket and pinned core per queue, attach; and on
//! stop, join the cores, read the counters, detach.
//!
//! Order matters: sockets are registered in the XDP program's socket map
//! before the program is attached, so no frame for the stack arrives at an
//! interface with nowhere to go.

use std::net::Ipv4Addr;

use bypass_xdp::{AttachMode, IpMode, QueueCounters, SteerConfig, SteerError, Steering};

use crate::{
    arp::ArpConfig,
    driver::{
        xdp::{XdpConfig, XdpDevice},
        Waker,
    },
    host::{self, HostError, InterfaceInfo},
    iface::InterfaceConfig,
    ipv4::Ipv4Config,
    runtime::{App, CoreReport, CoreSpec, NoApp, PollMode, Runtime, RuntimeError, TcpSetup},
};

/// Everything needed to start the stack on an interface.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Receive queues to serve; default: all of them (all must be served;
    /// with fewer CPUs than queues, threads share CPUs, with a warning).
    pub queues: Option<u32>,
    /// CPUs to pin the queues' threads to, in queue order; default: the
    /// first usable CPUs.
    pub cpus: Option<Vec<usize>>,
    pub poll: PollMode,
    pub shared_ip: bool,
    pub zero_copy: bool,
    /// Skip native XDP and attach in generic (skb) mode.
    pub generic_xdp: bool,
    /// TCP ports steered to the stack.
    pub tcp_ports: Vec<u16>,
    pub umem_frames: u32,
    pub frame_size: u32,
}

impl LaunchConfig {
    pub fn new(iface: &str, addr: Ipv4Addr) -> Self {
        LaunchConfig {
            iface: iface.into(),
            addr,
            prefix_len: 24,
            gateway: None,
            queues: None,
            cpus: None,
            poll: PollMode::default(),
            shared_ip: false,
            zero_copy: false,
            generic_xdp: false,
            tcp_ports: vec![80],
            umem_frames: 4096,
            frame_size: 2048,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{iface} has {available} receive queue(s), {requested} requested; use --queues {available}, or add queues with `ethtool -L {iface} combined {requested}`")]
    TooManyQueues {
        iface: String,
        requested: u32,
        available: u32,
    },
    #[error("--queues must be at least 1")]
    NoQueues,
    #[error("{iface} has {available} receive queues but only {serving} would be served, and the NIC spreads traffic over all of them: serve all (--queues {available}, one CPU each), or shrink the NIC's queues with `ethtool -L {iface} combined {serving}`")]
    UnservedQueues {
        iface: String,
        available: u32,
        serving: u32,
    },
    #[error("{iface} has {available} receive queues; bypass serves at most {max}: reduce them with `ethtool -L {iface} combined {max}`")]
    QueueLimit {
        iface: String,
        available: u32,
        max: u32,
    },
    #[error("{queues} queue(s) need {queues} CPU(s), but the CPU list has {cpus}")]
    TooFewCpus { queues: u32, cpus: usize },
    #[error("{iface} has MTU {mtu}, which does not fit a {frame_size}-byte UMEM frame; use --frame-size 4096 or lower the MTU")]
    MtuTooLarge {
        iface: String,
        mtu: u32,
        frame_size: u32,
    },
    #[error(transparent)]
    Steer(#[from] SteerError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The stack, up and running.
pub struct Running {
    runtime: Runtime,
    wakers: Vec<Waker>,
    steering: Steering,
    info: InterfaceInfo,
    queues: u32,
    attach_mode: AttachMode,
}

/// What the stack did, once stopped.
#[derive(Debug)]
pub struct Report {
    pub cores: Vec<CoreReport>,
    /// Frames the XDP program steered and passed, per queue.
    pub xdp: Vec<QueueCounters>,
    /// Cores that ended on an error.
    pub errors: Vec<String>,
}

/// Room the kernel keeps before packet data in each UMEM frame
/// (XDP_PACKET_HEADROOM).
const XDP_HEADROOM: u32 = 256;
/// Ethernet header plus one VLAN tag.
const LINK_OVERHEAD: u32 = 18;
/// IPv4 and TCP headers without options.
const IP_TCP_HEADERS: u32 = 40;
/// The smallest MSS we announce, whatever the MTU says (RFC 9293's
/// default; IPv4 links carry at least 576-byte datagrams).
const MIN_MSS: u32 = 536;

impl Running {
    /// Starts the stack without TCP: ARP and ICMP only.
    pub fn start(config: &LaunchConfig) -> Result<Running, LaunchError> {
        Self::start_with(config, None, |_| NoApp)
    }

    /// Starts the stack with TCP (`tcp`) and one application per core,
    /// made on its core by `make_app(queue)`.
    pub fn start_with<A, G>(
        config: &LaunchConfig,
        tcp: Option<TcpSetup>,
        make_app: G,
    ) -> Result<Running, LaunchError>
    where
        A: App + 'static,
        G: Fn(u32) -> A + Send + Sync + 'static,
    {
        host::check_privileges()?;
        let info = InterfaceInfo::query(&config.iface)?;
        if info.mtu + LINK_OVERHEAD > config.frame_size.saturating_sub(XDP_HEADROOM) {
            return Err(LaunchError::MtuTooLarge {
                iface: info.name,
                mtu: info.mtu,
                frame_size: config.frame_size,
            });
        }
        // The largest segment we can take and send is the interface's MTU
        // less the IPv4 and TCP headers (RFC 9293 §3.7.1, RFC 879): a
        // fixed 1460 on a 1400-byte link makes frames the link drops.
        let tcp = tcp.map(|mut setup| {
            let fits = info
                .mtu
                .saturating_sub(IP_TCP_HEADERS)
                .clamp(MIN_MSS, u32::from(u16::MAX));
            let fits = u16::try_from(fits).unwrap_or(u16::MAX);
            if setup.config.mss > fits {
                tracing::info!(
                    "{} has MTU {}: TCP segments of at most {fits} bytes (MSS)",
                    info.name,
                    info.mtu
                );
                setup.config.mss = fits;
            }
            setup
        });
        let usable: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        // Every receive queue must be served: the NIC's RSS hash puts flows
        // on all of them, and a queue without a socket is a black hole in
        // owned-IP mode (the XDP program passes its frames to a kernel that
        // does not have the address).
        if info.rx_queues > bypass_xdp::MAX_QUEUES {
            return Err(LaunchError::QueueLimit {
                iface: info.name,
                available: info.rx_queues,
                max: bypass_xdp::MAX_QUEUES,
            });
        }
        let queues = match config.queues {
            Some(0) => return Err(LaunchError::NoQueues),
            Some(q) if q > info.rx_queues => {
                return Err(LaunchError::TooManyQueues {
                    iface: info.name,
                    requested: q,
                    available: info.rx_queues,
                })
            }
            Some(q) => q,
            None => info.rx_queues,
        };
        if queues < info.rx_queues {
            return Err(LaunchError::UnservedQueues {
                iface: info.name,
                available: info.rx_queues,
                serving: queues,
            });
        }
        let cpus: Vec<Option<usize>> = match &config.cpus {
            Some(list) if list.len() < queues as usize => {
                return Err(LaunchError::TooFewCpus {
                    queues,
                    cpus: list.len(),
                })
            }
            Some(list) => list.iter().map(|&c| Some(c)).collect(),
            None if usable.is_empty() => vec![None; queues as usize],
            None => (0..queues as usize)
                .map(|q| Some(usable[q % usable.len()]))
                .collect(),
        };
        // Every queue must be served, so with more queues than CPUs some
        // threads share a CPU: it works, but the design is one CPU per
        // queue, which the NIC's queue count decides.
        let mut distinct: Vec<usize> = cpus.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if !distinct.is_empty() && distinct.len() < queues as usize {
            tracing::warn!(
                "{} has {queues} receive queues and bypass runs on {} CPU(s), so queue threads share CPUs; for one CPU per queue: ethtool -L {} combined {}",
                info.name,
                distinct.len(),
                info.name,
                distinct.len()
            );
        }
        let specs: Vec<CoreSpec> = (0..queues)
            .map(|queue| CoreSpec {
                queue,
                cpu: cpus[queue as usize],
            })
            .collect();

        let mut steering = Steering::load(&SteerConfig {
            addrs: vec![config.addr],
            tcp_ports: config.tcp_ports.clone(),
            mode: if config.shared_ip {
                IpMode::Shared
            } else {
                IpMode::Owned
            },
        })?;

        let engine = InterfaceConfig {
            mac: info.mac,
            ipv4: Ipv4Config {
                addr: config.addr,
                prefix_len: config.prefix_len,
                gateway: config.gateway,
            },
            owns_ip: !config.shared_ip,
            arp: ArpConfig::default(),
        };
        let xdp = XdpConfig {
            iface: info.name.clone(),
            queue: 0,
            frame_count: config.umem_frames,
            frame_size: config.frame_size,
            zero_copy: config.zero_copy,
        };
        let (mut runtime, ready) = Runtime::spawn(
            &specs,
            &engine,
            tcp,
            config.poll,
            move |queue| {
                XdpDevice::new(&XdpConfig {
                    queue,
                    ..xdp.clone()
                })
                .map_err(|e| e.to_string())
            },
            make_app,
        )?;
        // On an error below, dropping `runtime` stops and joins the cores
        // (still waiting for `go`), and dropping `steering` detaches.
        for core in &ready {
            if let Some(fd) = core.xsk_fd {
                steering.register_socket(core.queue, &fd)?;
            }
        }
        let attach_mode = steering.attach(&info.name, config.generic_xdp)?;
        runtime.go();
        Ok(Running {
            wakers: ready.into_iter().map(|c| c.waker).collect(),
            runtime,
            steering,
            info,
            queues,
            attach_mode,
        })
    }

    pub fn interface(&self) -> &InterfaceInfo {
        &self.info
    }

    pub fn queues(&self) -> u32 {
        self.queues
    }

    pub fn attach_mode(&self) -> AttachMode {
        self.attach_mode
    }

    /// Whether a core stopped by itself (an I/O error).
    pub fn failed(&self) -> bool {
        self.runtime.stopped()
    }

    /// Every core's counters, published once a second while running.
    pub fn live(&self) -> std::sync::Arc<crate::runtime::LiveCounters> {
        self.runtime.live()
    }

    /// One waker per core, in queue order: wakes a sleeping core for work
    /// handed to it from another thread.
    pub fn wakers(&self) -> &[Waker] {
        &self.wakers
    }

    /// Stops every core, then detaches XDP and reads the counters. The
    /// cores close their connections first (FIN, then a grace period, then
    /// RST for what is left), so XDP stays attached until they are done:
    /// the peers' ACKs and FINs must still reach them.
    pub fn stop(mut self) -> Report {
        self.runtime.stop();
        for w in &self.wakers {
            w.wake();
        }
        let joined = self.runtime.join();
        self.steering.detach();
        let mut cores = Vec::new();
        let mut errors = Vec::new();
        for result in joined {
            match result {
                Ok(r) => cores.push(r),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let xdp = self.steering.counters(self.queues).unwrap_or_else(|e| {
            errors.push(format!("reading XDP counters: {e}"));
            Vec::new()
        });
        Report { cores, xdp, errors }
    }
}
