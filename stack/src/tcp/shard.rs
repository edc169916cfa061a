//! The per-core TCP shard: every connection and listener one core owns, no
//! locks. A connection lives on the core whose queue received its SYN.
//!
//! - Connections sit in a slab allocated once (`max_connections` slots) and
//!   are found by their 4-tuple in a map sized for that many, so neither
//!   grows on the data path.
//! - Listeners keep a bounded SYN queue (half-open connections) and accept
//!   queue. When the SYN queue is full, SYN cookies (RFC 4987 §3.6) answer
//!   without keeping state; when every slot is taken, a connection that
//!   completes through a cookie is refused with a RST.
//! - Timers: each connection reports its next deadline; the shard keeps
//!   them in a min-heap with lazy deletion, so an idle connection costs
//!   nothing per loop pass and a pass costs O(log n) per due connection.
//! - Segments for no connection get RFC 9293 §3.10.7.1's reset.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    net::{Ipv4Addr, SocketAddrV4},
};

use super::{
    config::TcpConfig,
    connection::{reset_segment, Connection, Events, State},
    isn::IsnGenerator,
    syncookie::SynCookies,
};
use crate::{
    counters::{Counters, DropReason},
    driver::TxError,
    time::Instant,
    wire::{EthernetAddress, SeqNumber, TcpControl, TcpPacket, TcpRepr, TcpTimestamp, WireError},
};

/// Limits of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardConfig {
    /// Connections at most (every state, TIME-WAIT included).
    pub max_connections: usize,
    /// Half-open connections per listener before SYN cookies take over.
    pub syn_backlog: usize,
    /// Established connections per listener waiting to be accepted.
    pub accept_backlog: usize,
    /// Answer SYNs with cookies when the SYN queue is full.
    pub syn_cookies: bool,
    /// Bytes of connection buffers the shard may hold before it is under
    /// memory pressure: then new connections are refused (counted as
    /// `tcp_memory_pressure`), windows stop growing, out-of-order data
    /// that needs memory is dropped, and idle rings are freed at once.
    pub memory_budget: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            max_connections: 16_384,
            syn_backlog: 1024,
            accept_backlog: 1024,
            syn_cookies: true,
            memory_budget: 1 << 30,
        }
    }
}

/// Names a connection of a shard; stale handles are detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionHandle {
    index: u32,
    generation: u32,
}

impl ConnectionHandle {
    /// The connection's slot, below the shard's [`Shard::capacity`]: an
    /// application can keep per-connection state in a table of that size.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// Why [`Shard::listen`] or [`Shard::connect`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardError {
    /// The port already has a listener ("connection already exists").
    AlreadyListening,
    /// Every connection slot is in use ("insufficient resources").
    NoSlots,
    /// No free local port for an active open.
    NoPorts,
    /// An active open to a broadcast, multicast or unspecified address
    /// (RFC 9293 §3.9.1.1, MUST-46).
    InvalidAddress,
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShardError::AlreadyListening => "connection already exists",
            ShardError::NoSlots => "insufficient resources",
            ShardError::NoPorts => "insufficient resources: no free local port",
            ShardError::InvalidAddress => {
                "invalid remote address (broadcast, multicast or unspecified)"
            }
        })
    }
}

impl std::error::Error for ShardError {}

struct Listener {
    port: u16,
    /// Connections in SYN-RECEIVED.
    half_open: usize,
    /// Established, not yet accepted.
    accept_queue: VecDeque<ConnectionHandle>,
    /// When this listener last answered a SYN with a cookie (its queues
    /// were full). A cookie ACK is taken only within [`COOKIE_WINDOW`] of
    /// that, as Linux does: at other times no cookie is out, and a blind
    /// attacker gets nothing from guessing one.
    last_overflow: Option<Instant>,
}

/// How long after the last SYN-queue overflow cookie ACKs are accepted
/// (Linux: two minutes, the cookie's own lifetime).
const COOKIE_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// Challenge ACKs per second for a whole shard, on average (RFC 5961 §7;
/// Linux's `tcp_challenge_ack_limit`). Each second's budget is drawn at
/// random between half and one and a half of it, so an off-path attacker
/// cannot count challenge ACKs to learn about a connection (the
/// CVE-2016-5696 side channel).
const CHALLENGE_ACKS_PER_SECOND: u32 = 1000;

/// The shard's budget of challenge ACKs for the current second.
#[derive(Debug, Default)]
struct ChallengeBudget {
    epoch: Option<Instant>,
    left: u32,
}

impl ChallengeBudget {
    /// Takes one from the budget; `draw` gives the randomness for a new
    /// second's budget.
    fn take(&mut self, now: Instant, draw: impl FnOnce() -> u32) -> bool {
        let second = std::time::Duration::from_secs(1);
        if self
            .epoch
            .is_none_or(|e| now.saturating_duration_since(e) >= second)
        {
            self.epoch = Some(now);
            self.left = CHALLENGE_ACKS_PER_SECOND / 2 + draw() % CHALLENGE_ACKS_PER_SECOND;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}

struct Slot {
    generation: u32,
    /// Boxed: a free slot costs a few words, so a shard sized for many
    /// connections does not hold their state before they come.
    conn: Option<Box<Connection>>,
    /// Where segments go: learned from the peer's frames (passive opens, and
    /// the SYN-ACK for active ones) or from ARP.
    peer_mac: Option<EthernetAddress>,
    /// The listening port for a passive open not yet accepted.
    listener: Option<u16>,
    accepted: bool,
    /// The deadline this slot has in the timer heap.
    scheduled: Option<Instant>,
    /// In the `ready` list.
    ready: bool,
    /// Events not yet delivered to the application.
    events: Events,
    /// In the `eventful` list.
    eventful: bool,
    /// The connection's buffer bytes counted in the shard's total.
    held: usize,
}

/// Where a segment goes: the peer's link address if known, its IP address,
/// and the segment. The caller frames it (Ethernet, IPv4) and transmits.
pub struct Outgoing<'a, 'b> {
    pub peer_mac: Option<EthernetAddress>,
    pub dst: Ipv4Addr,
    pub repr: &'a TcpRepr<'b>,
}

/// The shard.
pub struct Shard {
    tcp: TcpConfig,
    config: ShardConfig,
    local_addr: Ipv4Addr,
    slots: Vec<Slot>,
    free: Vec<u32>,
    table: HashMap<(SocketAddrV4, u16), u32>,
    listeners: Vec<Listener>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    ready: Vec<u32>,
    /// Accepted connections with events for the application, so taking
    /// events costs nothing for the quiet ones.
    eventful: Vec<u32>,
    isn: IsnGenerator,
    cookies: SynCookies,
    /// Buffer bytes the connections held when the shard last looked
    /// (after each segment and each dispatch of the connection).
    buffer_total: usize,
    next_port: u16,
    /// This shard's share of the ephemeral ports: (index, cores).
    partition: (usize, usize),
    /// Connections closed over the shard's life (for tests and stats).
    pub closed_total: u64,
    /// Segments retransmitted by every connection over the shard's life.
    pub retransmits_total: u64,
    /// Retransmission timeouts of every connection over the shard's life.
    pub timeouts_total: u64,
    /// Tail loss probes of every connection over the shard's life.
    pub loss_probes_total: u64,
    /// Path MTU black holes suspected by every connection (RFC 4821 §7.4).
    pub black_holes_total: u64,
    /// Path MTU probes of every connection (RFC 8899): (acknowledged,
    /// lost).
    pub mtu_probes_total: (u64, u64),
    /// D-SACKs received by every connection (RFC 2883) and congestion
    /// responses they undid (RFC 3708).
    pub spurious_total: (u64, u64),
    /// Losses a tail loss probe repaired, each with a cwnd cut (RFC 8985
    /// §7.4.2).
    pub tlp_recoveries_total: u64,
    challenge_budget: ChallengeBudget,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connection_count())
            .field(
                "listeners",
                &self.listeners.iter().map(|l| l.port).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Ephemeral ports for active opens (IANA dynamic range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The core whose shard owns ephemeral `port` when `cores` cores split
/// the range (port modulo cores), or `None` outside the range. The NIC may
/// deliver a reply to an active open on any queue; the receiving core hands
/// it to this one.
pub fn ephemeral_owner(port: u16, cores: usize) -> Option<usize> {
    (cores > 1 && EPHEMERAL.contains(&port)).then(|| usize::from(port) % cores)
}

/// Running totals of a pair of counts (MTU probes acknowledged and lost,
/// D-SACKs and undos) plus a connection's latest.
fn add_probes(total: (u64, u64), new: (u32, u32)) -> (u64, u64) {
    (total.0 + u64::from(new.0), total.1 + u64::from(new.1))
}

impl Shard {
    pub fn new(
        tcp: TcpConfig,
        config: ShardConfig,
        local_addr: Ipv4Addr,
        isn: IsnGenerator,
        cookies: SynCookies,
    ) -> Self {
        let n = config.max_connections.max(1);
        Shard {
            tcp,
            config,
            local_addr,
            slots: (0..n)
                .map(|_| Slot {
                    generation: 0,
                    conn: None,
                    peer_mac: None,
                    listener: None,
                    accepted: false,
                    scheduled: None,
                    ready: false,
                    events: Events::default(),
                    eventful: false,
                    held: 0,
                })
                .collect(),
            free: (0..n as u32).rev().collect(),
            table: HashMap::with_capacity(n * 2),
            listeners: Vec::new(),
            timers: BinaryHeap::with_capacity(n * 4),
            ready: Vec::with_capacity(n),
            eventful: Vec::with_capacity(n),
            isn,
            cookies,
            buffer_total: 0,
            next_port: *EPHEMERAL.start(),
            partition: (0, 1),
            closed_total: 0,
            retransmits_total: 0,
            timeouts_total: 0,
            loss_probes_total: 0,
            black_holes_total: 0,
            mtu_probes_total: (0, 0),
            spurious_total: (0, 0),
            tlp_recoveries_total: 0,
            challenge_budget: ChallengeBudget::default(),
        }
    }

    pub fn tcp_config(&self) -> &TcpConfig {
        &self.tcp
    }

    /// Connection slots: the most connections at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Active opens use only the ephemeral ports of core `index` of
    /// `cores` (see [`ephemeral_owner`]).
    pub fn set_port_partition(&mut self, index: usize, cores: usize) {
        self.partition = (index, cores.max(1));
    }

    pub fn is_listening(&self, port: u16) -> bool {
        self.listeners.iter().any(|l| l.port == port)
    }

    /// Ports with a listener.
    pub fn listening(&self) -> impl Iterator<Item = u16> + '_ {
        self.listeners.iter().map(|l| l.port)
    }

    /// Connections in use.
    pub fn connection_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn local(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.local_addr, port)
    }

    // ------------------------------------------------------------------
    // Application side
    // ------------------------------------------------------------------

    /// OPEN, passive: accept connections on `port`.
    pub fn listen(&mut self, port: u16) -> Result<(), ShardError> {
        if self.listeners.iter().any(|l| l.port == port) {
            return Err(ShardError::AlreadyListening);
        }
        self.listeners.push(Listener {
            port,
            half_open: 0,
            accept_queue: VecDeque::with_capacity(self.config.accept_backlog),
            last_overflow: None,
        });
        Ok(())
    }

    /// Stops listening on `port`; connections not yet accepted are reset.
    pub fn unlisten(&mut self, port: u16) {
        if let Some(i) = self.listeners.iter().position(|l| l.port == port) {
            self.listeners.swap_remove(i);
            // Everything not yet accepted, established or half-open.
            for index in 0..self.slots.len() as u32 {
                let slot = &mut self.slots[index as usize];
                if slot.listener == Some(port) && !slot.accepted {
                    if let Some(c) = slot.conn.as_mut() {
                        c.abort();
                    }
                    self.mark_ready(index);
                }
            }
        }
    }

    /// Takes the next established connection on `port`.
    pub fn accept(&mut self, port: u16) -> Option<ConnectionHandle> {
        let l = self.listeners.iter_mut().find(|l| l.port == port)?;
        let h = l.accept_queue.pop_front()?;
        let slot = &mut self.slots[h.index as usize];
        slot.accepted = true;
        slot.listener = None;
        self.gather_events(h.index);
        Some(h)
    }

    /// OPEN, active: a SYN to `remote` goes out on the next dispatch.
    /// `peer_mac` is the next hop's address if already known.
    pub fn connect(
        &mut self,
        remote: SocketAddrV4,
        peer_mac: Option<EthernetAddress>,
        now: Instant,
    ) -> Result<ConnectionHandle, ShardError> {
        let ip = remote.ip();
        if ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified() || remote.port() == 0 {
            return Err(ShardError::InvalidAddress);
        }
        let port = self.free_port(remote)?;
        let local = self.local(port);
        let iss = self.isn.isn(local, remote, now);
        let conn = Connection::connect(&self.tcp, local, remote, iss, now);
        let h = self.insert(conn, peer_mac, None)?;
        self.slots[h.index as usize].accepted = true;
        Ok(h)
    }

    fn free_port(&mut self, remote: SocketAddrV4) -> Result<u16, ShardError> {
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as u32 + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            let (index, cores) = self.partition;
            if cores > 1 && usize::from(port) % cores != index {
                continue;
            }
            let listening = self.listeners.iter().any(|l| l.port == port);
            if !listening && !self.table.contains_key(&(remote, port)) {
                return Ok(port);
            }
        }
        Err(ShardError::NoPorts)
    }

    pub fn get(&self, h: ConnectionHandle) -> Option<&Connection> {
        let slot = self.slots.get(h.index as usize)?;
        (slot.generation == h.generation).then_some(slot.conn.as_ref()?)
    }

    /// The connection for `h`; after changing it (send, close, ...), the
    /// shard must learn it has work: done by the next [`Shard::dispatch`]
    /// because this marks it ready.
    pub fn get_mut(&mut self, h: ConnectionHandle) -> Option<&mut Connection> {
        let slot = self.slots.get_mut(h.index as usize)?;
        if slot.generation != h.generation || slot.conn.is_none() {
            return None;
        }
        if !slot.ready {
            slot.ready = true;
            self.ready.push(h.index);
        }
        slot.conn.as_deref_mut()
    }

    /// Calls `f` for every accepted connection with events. Connections the
    /// application saw close are freed on the next dispatch.
    pub fn take_events(&mut self, mut f: impl FnMut(ConnectionHandle, &mut Connection, Events)) {
        let mut i = 0;
        while i < self.eventful.len() {
            let index = self.eventful[i];
            i += 1;
            let slot = &mut self.slots[index as usize];
            slot.eventful = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            slot.events = slot.events | conn.take_events();
            if slot.events.is_empty() || !slot.accepted {
                continue;
            }
            let events = std::mem::take(&mut slot.events);
            let h = ConnectionHandle {
                index,
                generation: slot.generation,
            };
            f(h, conn, events);
            // Whatever the application did (send, close) needs a dispatch;
            // a connection it saw close can now be freed.
            self.mark_ready(index);
        }
        self.eventful.clear();
    }

    /// Collects a connection's new events and lists it for the
    /// application if it has any.
    fn gather_events(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(conn) = slot.conn.as_mut() {
            slot.events = slot.events | conn.take_events();
        }
        if slot.accepted && !slot.events.is_empty() && !slot.eventful {
            slot.eventful = true;
            self.eventful.push(index);
        }
    }

    // ------------------------------------------------------------------
    // Network side
    // ------------------------------------------------------------------

    /// Handles one TCP segment (the IPv4 payload) from `src` with link
    /// address `src_mac`. Answers that need no connection (resets, cookie
    /// SYN-ACKs) go out through `emit` at once.
    pub fn receive<F>(
        &mut self,
        now: Instant,
        src_mac: EthernetAddress,
        src: Ipv4Addr,
        bytes: &[u8],
        counters: &mut Counters,
        mut emit: F,
    ) where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        let seg = match TcpPacket::new_checked(bytes)
            .and_then(|p| TcpRepr::parse(&p, src, self.local_addr))
        {
            Ok(seg) => seg,
            Err(WireError::Checksum) => return counters.drop(DropReason::TcpChecksum),
            Err(_) => return counters.drop(DropReason::TcpMalformed),
        };
        counters.tcp_segments_in += 1;
        let remote = SocketAddrV4::new(src, seg.src_port);
        let mut found = self.table.get(&(remote, seg.dst_port)).copied();
        if let Some(index) = found {
            let slot = &mut self.slots[index as usize];
            if slot.conn.as_ref().is_some_and(|c| c.time_wait_allows(&seg)) {
                // A new incarnation of a 4-tuple in TIME-WAIT: the old one
                // goes, the SYN goes to the listener.
                if let Some(c) = slot.conn.as_mut() {
                    c.abort();
                }
                slot.accepted = false;
                slot.events = Events::default();
                self.maybe_free(index);
                found = None;
            }
        }
        if let Some(index) = found {
            let slot = &mut self.slots[index as usize];
            // The peer's MAC is learned once; afterwards only from a SYN-ACK
            // that completes our active open (so a stray SYN cannot redirect
            // the connection's frames).
            if slot.peer_mac.is_none() {
                slot.peer_mac = Some(src_mac);
            }
            let conn = slot.conn.as_mut().expect("table points at live slots");
            conn.set_memory_pressure(self.buffer_total > self.config.memory_budget);
            let before = conn.state();
            let reply = conn.process(now, &seg);
            self.mtu_probes_total = add_probes(self.mtu_probes_total, conn.take_mtu_probes());
            self.spurious_total = add_probes(self.spurious_total, conn.take_spurious());
            self.tlp_recoveries_total += u64::from(conn.take_tlp_recoveries());
            let mut rejection = conn.take_rejection();
            if rejection == Some(DropReason::TcpChallengeAck) {
                let (isn, local) = (&self.isn, self.local_addr);
                let draw = || isn.isn(SocketAddrV4::new(local, 0), remote, now).0;
                if !self.challenge_budget.take(now, draw) {
                    conn.withdraw_challenge_ack();
                    rejection = Some(DropReason::TcpChallengeAckLimited);
                }
            }
            if let Some(reason) = rejection {
                counters.drop(reason);
            }
            let after = conn.state();
            if before == State::SynSent && after != State::SynSent && seg.control == TcpControl::Syn
            {
                slot.peer_mac = Some(src_mac);
            }
            if let Some(reply) = reply {
                let _ = emit(Outgoing {
                    peer_mac: Some(src_mac),
                    dst: src,
                    repr: &reply,
                });
            }
            self.on_transition(index, before, after);
            self.account(index);
            // Events now, so the application sees the data in this pass.
            self.gather_events(index);
            self.mark_ready(index);
            return;
        }
        let listening = self.listeners.iter().position(|l| l.port == seg.dst_port);
        let cookies_out = |l: usize| {
            self.listeners[l]
                .last_overflow
                .is_some_and(|t| now.saturating_duration_since(t) <= COOKIE_WINDOW)
        };
        // RFC 9293 §3.10.7.2, LISTEN: a RST is ignored; an ACK gets a RST;
        // a SYN opens; anything else (no SYN, no ACK) is dropped in silence.
        match (listening, seg.control, seg.ack_number) {
            (Some(l), TcpControl::Syn, None) => {
                self.on_syn(now, l, src_mac, remote, &seg, counters, &mut emit)
            }
            (Some(l), TcpControl::None | TcpControl::Psh, Some(_))
                if self.config.syn_cookies && cookies_out(l) =>
            {
                self.on_cookie_ack(now, l, src_mac, remote, &seg, counters, &mut emit)
            }
            (Some(_), TcpControl::Fin | TcpControl::None | TcpControl::Psh, None) => {
                counters.drop(DropReason::TcpListenNoAck)
            }
            _ => self.reset_closed(src_mac, src, &seg, counters, &mut emit),
        }
    }

    /// A SYN for a listener (RFC 9293 §3.10.7.2).
    #[allow(clippy::too_many_arguments)]
    fn on_syn<F>(
        &mut self,
        now: Instant,
        l: usize,
        src_mac: EthernetAddress,
        remote: SocketAddrV4,
        seg: &TcpRepr,
        counters: &mut Counters,
        emit: &mut F,
    ) where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        counters.tcp_syn_in += 1;
        if self.memory_pressure() {
            // No memory for another connection: the client retries later.
            return counters.drop(DropReason::TcpMemoryPressure);
        }
        let local = self.local(seg.dst_port);
        let listener = &self.listeners[l];
        let queue_full = listener.half_open >= self.config.syn_backlog
            || listener.accept_queue.len() >= self.config.accept_backlog;
        if queue_full || self.free.is_empty() {
            if self.config.syn_cookies {
                counters.tcp_syncookies_sent += 1;
                self.listeners[l].last_overflow = Some(now);
                self.send_cookie_synack(now, local, remote, src_mac, seg, emit);
            } else {
                counters.drop(DropReason::TcpBacklogFull);
            }
            return;
        }
        let iss = self.isn.isn(local, remote, now);
        let conn = Connection::accept(&self.tcp, local, remote, seg, iss, now);
        match self.insert(conn, Some(src_mac), Some(seg.dst_port)) {
            Ok(_) => self.listeners[l].half_open += 1,
            Err(_) => counters.drop(DropReason::TcpBacklogFull),
        }
    }

    fn send_cookie_synack<F>(
        &self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        src_mac: EthernetAddress,
        syn: &TcpRepr,
        emit: &mut F,
    ) where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        let peer_mss = syn.max_seg_size.unwrap_or(536);
        let iss = self
            .cookies
            .generate(local, remote, syn.seq_number, peer_mss, now);
        let mss = SynCookies::encoded_mss(peer_mss).min(self.tcp.mss);
        // Without timestamps there is nowhere to keep the window scale and
        // SACK permission, so a cookie connection goes without (as Linux).
        let ts = match (self.tcp.timestamps, syn.timestamp) {
            (true, Some(peer)) => {
                let wscale = if self.tcp.window_scaling {
                    syn.window_scale
                } else {
                    None
                };
                let sack = self.tcp.sack && syn.sack_permitted;
                let now_ts = (now.total_micros() / 1000) as u32;
                Some(TcpTimestamp {
                    tsval: self.cookies.encode_timestamp(now_ts, wscale, sack),
                    tsecr: peer.tsval,
                })
            }
            _ => None,
        };
        let with_options = ts.is_some();
        let synack = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            control: TcpControl::Syn,
            seq_number: iss,
            ack_number: Some(syn.seq_number + 1),
            window_len: self.tcp.recv_buffer.min(usize::from(u16::MAX)) as u16,
            window_scale: (with_options && self.tcp.window_scaling && syn.window_scale.is_some())
                .then(|| self.tcp.recv_window_scale()),
            max_seg_size: Some(mss),
            sack_permitted: with_options && self.tcp.sack && syn.sack_permitted,
            sack_ranges: [None; 3],
            timestamp: ts,
            urgent_pointer: None,
            payload: &[],
        };
        let _ = emit(Outgoing {
            peer_mac: Some(src_mac),
            dst: *remote.ip(),
            repr: &synack,
        });
    }

    /// The final ACK of a cookie handshake (RFC 4987 §3.6).
    #[allow(clippy::too_many_arguments)]
    fn on_cookie_ack<F>(
        &mut self,
        now: Instant,
        l: usize,
        src_mac: EthernetAddress,
        remote: SocketAddrV4,
        seg: &TcpRepr,
        counters: &mut Counters,
        emit: &mut F,
    ) where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        let local = self.local(seg.dst_port);
        let ack = seg.ack_number.unwrap_or(SeqNumber(0));
        let Some(mss) = self
            .cookies
            .check(local, remote, seg.seq_number - 1, ack - 1, now)
        else {
            counters.tcp_syncookies_failed += 1;
            return self.reset_closed(src_mac, *remote.ip(), seg, counters, emit);
        };
        if self.free.is_empty()
            || self.listeners[l].accept_queue.len() >= self.config.accept_backlog
        {
            counters.tcp_refused += 1;
            return self.reset_closed(src_mac, *remote.ip(), seg, counters, emit);
        }
        if self.memory_pressure() {
            counters.tcp_refused += 1;
            counters.drop(DropReason::TcpMemoryPressure);
            return self.reset_closed(src_mac, *remote.ip(), seg, counters, emit);
        }
        counters.tcp_syncookies_ok += 1;
        let (wscale, sack) = match seg.timestamp {
            Some(ts) => SynCookies::decode_timestamp(ts.tsecr),
            None => (None, false),
        };
        let conn = Connection::from_cookie(&self.tcp, local, remote, seg, mss, wscale, sack, now);
        if let Ok(h) = self.insert(conn, Some(src_mac), Some(seg.dst_port)) {
            self.listeners[l].half_open += 1;
            let slot = &mut self.slots[h.index as usize];
            let conn = slot.conn.as_mut().expect("just inserted");
            let before = conn.state();
            let reply = conn.process(now, seg);
            let after = conn.state();
            if let Some(reply) = reply {
                let _ = emit(Outgoing {
                    peer_mac: Some(src_mac),
                    dst: *remote.ip(),
                    repr: &reply,
                });
            }
            self.on_transition(h.index, before, after);
            self.mark_ready(h.index);
        }
    }

    /// RFC 9293 §3.10.7.1: a segment for no connection gets a RST, unless
    /// it is one.
    fn reset_closed<F>(
        &self,
        src_mac: EthernetAddress,
        src: Ipv4Addr,
        seg: &TcpRepr,
        counters: &mut Counters,
        emit: &mut F,
    ) where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        counters.drop(DropReason::TcpNoConnection);
        if seg.control == TcpControl::Rst {
            return;
        }
        let (seq, ack) = match seg.ack_number {
            Some(ack) => (ack, None),
            None => (SeqNumber(0), Some(seg.seq_number + seg.segment_len())),
        };
        let rst = reset_segment(seg.dst_port, seg.src_port, seq, ack);
        let _ = emit(Outgoing {
            peer_mac: Some(src_mac),
            dst: src,
            repr: &rst,
        });
    }

    /// An ICMP "fragmentation needed" for the connection to `remote` from
    /// `local_port`, quoting our segment at `seq`: true when the connection
    /// took it (see [`Connection::path_mtu`]).
    pub fn path_mtu(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        local_port: u16,
        seq: u32,
        next_hop_mtu: u16,
    ) -> bool {
        let Some(&index) = self.table.get(&(remote, local_port)) else {
            return false;
        };
        let Some(conn) = self.slots[index as usize].conn.as_mut() else {
            return false;
        };
        let applied = conn.path_mtu(now, SeqNumber(seq), next_hop_mtu);
        if applied {
            self.mark_ready(index);
        }
        applied
    }

    /// Buffer bytes held by the connections (they take memory as data
    /// flows and free it when idle).
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_total
    }

    /// Over the memory budget (see [`ShardConfig::memory_budget`]).
    pub fn memory_pressure(&self) -> bool {
        self.buffer_total > self.config.memory_budget
    }

    /// Counts what the connection in `index` holds now in the total.
    fn account(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let held = slot.conn.as_deref().map_or(0, Connection::buffer_bytes);
        self.buffer_total = self.buffer_total - slot.held + held;
        slot.held = held;
    }

    fn insert(
        &mut self,
        conn: Connection,
        peer_mac: Option<EthernetAddress>,
        listener: Option<u16>,
    ) -> Result<ConnectionHandle, ShardError> {
        let index = self.free.pop().ok_or(ShardError::NoSlots)?;
        let key = (conn.remote(), conn.local().port());
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.conn = Some(Box::new(conn));
        slot.peer_mac = peer_mac;
        slot.listener = listener;
        slot.accepted = false;
        slot.scheduled = None;
        slot.events = Events::default();
        slot.eventful = false;
        self.table.insert(key, index);
        let h = ConnectionHandle {
            index,
            generation: slot.generation,
        };
        self.mark_ready(index);
        Ok(h)
    }

    /// Moves a passive open between its listener's queues as its state
    /// changes.
    fn on_transition(&mut self, index: u32, before: State, after: State) {
        if before != State::SynReceived || after == State::SynReceived {
            return;
        }
        let slot = &self.slots[index as usize];
        let Some(port) = slot.listener else { return };
        let h = ConnectionHandle {
            index,
            generation: slot.generation,
        };
        if let Some(l) = self.listeners.iter_mut().find(|l| l.port == port) {
            l.half_open = l.half_open.saturating_sub(1);
            if after != State::Closed {
                l.accept_queue.push_back(h);
            }
        }
    }

    fn mark_ready(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.ready {
            slot.ready = true;
            self.ready.push(index);
        }
    }

    /// The next time [`Shard::dispatch`] has work.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(now);
        }
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Sends what every ready or due connection has to send, reschedules
    /// their timers, and frees connections that are closed.
    pub fn dispatch<F>(&mut self, now: Instant, mut emit: F)
    where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        while let Some(&Reverse((t, index, generation))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[index as usize];
            if slot.generation == generation && slot.scheduled == Some(t) {
                slot.scheduled = None;
                if !slot.ready {
                    slot.ready = true;
                    self.ready.push(index);
                }
            }
        }
        let mut i = 0;
        while i < self.ready.len() {
            let index = self.ready[i];
            i += 1;
            let slot = &mut self.slots[index as usize];
            slot.ready = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            let before = conn.state();
            let retransmits = conn.retransmits();
            let timeouts = conn.rto_count();
            let probes = conn.loss_probes();
            let black_holes = conn.black_holes();
            let peer_mac = slot.peer_mac;
            let dst = *conn.remote().ip();
            conn.set_memory_pressure(self.buffer_total > self.config.memory_budget);
            let result = conn.dispatch(now, |repr| {
                emit(Outgoing {
                    peer_mac,
                    dst,
                    repr,
                })
            });
            let after = conn.state();
            self.retransmits_total += conn.retransmits() - retransmits;
            self.timeouts_total += conn.rto_count() - timeouts;
            self.loss_probes_total += conn.loss_probes() - probes;
            self.black_holes_total += conn.black_holes() - black_holes;
            self.mtu_probes_total = add_probes(self.mtu_probes_total, conn.take_mtu_probes());
            conn.shed_buffers();
            self.account(index);
            self.gather_events(index);
            let slot = &mut self.slots[index as usize];
            let conn = slot.conn.as_mut().expect("still there");
            let deadline = if result == Err(TxError::NoBuffer) {
                // Out of transmit buffers: try again on the next pass.
                Some(now)
            } else {
                conn.poll_at(now)
            };
            if let Some(at) = deadline {
                if slot.scheduled.is_none_or(|s| at < s) {
                    slot.scheduled = Some(at);
                    self.timers.push(Reverse((at, index, slot.generation)));
                }
            }
            if before != after {
                self.on_transition(index, before, after);
            }
            self.maybe_free(index);
        }
        self.ready.clear();
        // Lazy deletion leaves superseded deadlines in the heap; when they
        // outnumber the live ones, keep only the current ones (each
        // scheduled slot's one entry) and re-heapify in place: the cost is
        // the heap's size, not the shard's, and nothing is allocated.
        if self.timers.len() > 2 * self.connection_count() + 64 {
            let mut entries = std::mem::take(&mut self.timers).into_vec();
            let slots = &self.slots;
            entries.retain(|&Reverse((at, index, generation))| {
                let slot = &slots[index as usize];
                slot.generation == generation && slot.scheduled == Some(at) && slot.conn.is_some()
            });
            self.timers = BinaryHeap::from(entries);
        }
    }

    /// Deadlines in the timer heap (live and superseded), for tests.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Frees a closed connection once nothing more is owed on it: the
    /// application was told (or never had it).
    fn maybe_free(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let Some(conn) = slot.conn.as_ref() else {
            return;
        };
        if !conn.is_closed() {
            return;
        }
        if slot.accepted && !slot.events.is_empty() {
            return; // the application has not seen CLOSED yet
        }
        let key = (conn.remote(), conn.local().port());
        let was_listener = slot.listener.take();
        drop(slot.conn.take());
        self.buffer_total -= std::mem::take(&mut slot.held);
        slot.scheduled = None;
        slot.accepted = false;
        slot.events = Events::default();
        self.table.remove(&key);
        self.free.push(index);
        self.closed_total += 1;
        if let Some(port) = was_listener {
            let h_index = index;
            if let Some(l) = self.listeners.iter_mut().find(|l| l.port == port) {
                l.accept_queue.retain(|h| h.index != h_index);
            }
        }
    }

    /// Frees a connection the application is done with (after CLOSED).
    pub fn release(&mut self, h: ConnectionHandle) {
        let slot = &mut self.slots[h.index as usize];
        if slot.generation != h.generation {
            return;
        }
        slot.accepted = false;
        slot.events = Events::default();
        self.maybe_free(h.index);
    }

    /// Tears the shard down: every connection is closed gracefully if it
    /// can be, then aborted (RST) — the caller gives graceful closes time by
    /// calling [`Shard::close_all`] and dispatching first. Frees every slot.
    pub fn destroy<F>(&mut self, now: Instant, mut emit: F)
    where
        F: FnMut(Outgoing) -> Result<(), TxError>,
    {
        for index in 0..self.slots.len() as u32 {
            if let Some(conn) = self.slots[index as usize].conn.as_mut() {
                conn.abort();
                self.mark_ready(index);
            }
        }
        self.dispatch(now, &mut emit);
        for index in 0..self.slots.len() as u32 {
            let slot = &mut self.slots[index as usize];
            slot.accepted = false;
            slot.events = Events::default();
            self.maybe_free(index);
        }
        self.listeners.clear();
        self.timers.clear();
        debug_assert_eq!(self.connection_count(), 0);
    }

    /// Whether every connection is closed or in TIME-WAIT: nothing more to
    /// deliver to any peer.
    pub fn all_closed_or_time_wait(&self) -> bool {
        self.slots.iter().all(|s| {
            s.conn
                .as_ref()
                .is_none_or(|c| matches!(c.state(), State::Closed | State::TimeWait))
        })
    }

    /// CLOSE on every connection (the first half of a graceful shutdown).
    pub fn close_all(&mut self) {
        for index in 0..self.slots.len() as u32 {
            if let Some(conn) = self.slots[index as usize].conn.as_mut() {
                let _ = conn.close();
                self.mark_ready(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The listener's rules, written from RFC 9293 §3.10.7.2 and RFC 5961
    //! §7: segments in as bytes, what the shard sends back out.

    use std::time::Duration;

    use super::*;
    use crate::wire::TcpRepr;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn shard(config: ShardConfig) -> Shard {
        let mut s = Shard::new(
            TcpConfig::default(),
            config,
            LOCAL,
            IsnGenerator::new([1, 2]),
            SynCookies::new([[3, 4], [5, 6]]),
        );
        s.listen(80).unwrap();
        s
    }

    fn segment(control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
        segment_from(40000, control, seq, ack, payload)
    }

    fn segment_from(
        src_port: u16,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = TcpRepr {
            src_port,
            dst_port: 80,
            control,
            seq_number: SeqNumber(seq),
            ack_number: ack.map(SeqNumber),
            window_len: 65535,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            urgent_pointer: None,
            payload,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), PEER, LOCAL);
        buf
    }

    /// Feeds one segment; returns (control, seq, ack) of what went out.
    fn feed(
        s: &mut Shard,
        now: Instant,
        bytes: &[u8],
        counters: &mut Counters,
    ) -> Vec<(TcpControl, u32, Option<u32>)> {
        let mut out = Vec::new();
        s.receive(now, MAC, PEER, bytes, counters, |o| {
            out.push((
                o.repr.control,
                o.repr.seq_number.0,
                o.repr.ack_number.map(|a| a.0),
            ));
            Ok(())
        });
        out
    }

    #[test]
    fn a_shard_over_its_memory_budget_refuses_new_connections_until_memory_is_back() {
        // A budget of one page: a client whose unread data takes a ring
        // puts the shard over it (more than one page in all).
        let mut s = shard(ShardConfig {
            memory_budget: 4096,
            ..ShardConfig::default()
        });
        let mut counters = Counters::default();
        let now = Instant::ZERO;
        // What the shard sends, by control and sequence number.
        let sent = |s: &mut Shard| {
            let mut out = Vec::new();
            s.dispatch(now, |o| {
                out.push((o.repr.control, o.repr.seq_number.0));
                Ok(())
            });
            out
        };
        feed(
            &mut s,
            now,
            &segment(TcpControl::Syn, 100, None, b""),
            &mut counters,
        );
        let iss = sent(&mut s)[0].1;
        feed(
            &mut s,
            now,
            &segment(TcpControl::None, 101, Some(iss + 1), b""),
            &mut counters,
        );
        let h = s.accept(80).expect("established");
        let data = [7u8; 3000];
        feed(
            &mut s,
            now,
            &segment(TcpControl::None, 101, Some(iss + 1), &data),
            &mut counters,
        );
        s.get_mut(h).unwrap().send(&[1u8; 100]).unwrap();
        sent(&mut s);
        assert_eq!(s.buffer_bytes(), 2 * 4096, "a ring each way");
        assert!(s.memory_pressure());
        // A new client is refused in silence (it will retry), and counted.
        let out = feed(
            &mut s,
            now,
            &segment_from(40001, TcpControl::Syn, 500, None, b""),
            &mut counters,
        );
        assert!(out.is_empty() && sent(&mut s).is_empty());
        assert_eq!(counters.drops(DropReason::TcpMemoryPressure), 1);
        // The application reads, the peer acknowledges; the idle rings go at
        // once under pressure, and the next client gets in.
        let mut buf = [0u8; 4096];
        assert_eq!(s.get_mut(h).unwrap().recv(&mut buf), Ok(3000));
        feed(
            &mut s,
            now,
            &segment(TcpControl::None, 3101, Some(iss + 101), b""),
            &mut counters,
        );
        sent(&mut s);
        assert_eq!(s.buffer_bytes(), 0);
        assert!(!s.memory_pressure());
        feed(
            &mut s,
            now,
            &segment_from(40001, TcpControl::Syn, 500, None, b""),
            &mut counters,
        );
        assert_eq!(sent(&mut s)[0].0, TcpControl::Syn, "a SYN-ACK");
    }

    #[test]
    fn listen_drops_segments_without_syn_or_ack_in_silence() {
        // §3.10.7.2 fourth: "Any other control or text-bearing segment (not
        // containing SYN) must have an ACK and thus would have been
        // discarded by the ACK processing": drop, no RST.
        let mut s = shard(ShardConfig::default());
        let mut c = Counters::default();
        let now = Instant::ZERO;
        assert!(feed(
            &mut s,
            now,
            &segment(TcpControl::Fin, 100, None, b""),
            &mut c
        )
        .is_empty());
        assert!(feed(
            &mut s,
            now,
            &segment(TcpControl::None, 100, None, b"x"),
            &mut c
        )
        .is_empty());
        assert!(feed(
            &mut s,
            now,
            &segment(TcpControl::Psh, 100, None, b""),
            &mut c
        )
        .is_empty());
        assert_eq!(c.drops(DropReason::TcpListenNoAck), 3);
        // First: a RST is ignored.
        assert!(feed(
            &mut s,
            now,
            &segment(TcpControl::Rst, 100, None, b""),
            &mut c
        )
        .is_empty());
        // Second: any ACK gets <SEQ=SEG.ACK><CTL=RST>.
        let out = feed(
            &mut s,
            now,
            &segment(TcpControl::Fin, 100, Some(777), b""),
            &mut c,
        );
        assert_eq!(out, vec![(TcpControl::Rst, 777, None)]);
        // Third: a SYN gets a SYN-ACK.
        let out = feed(
            &mut s,
            now,
            &segment(TcpControl::Syn, 100, None, b""),
            &mut c,
        );
        assert_eq!(
            out.len(),
            0,
            "the connection's SYN-ACK goes out on dispatch"
        );
        let mut sent = Vec::new();
        s.dispatch(now, |o| {
            sent.push((o.repr.control, o.repr.ack_number.map(|a| a.0)));
            Ok(())
        });
        assert_eq!(sent, vec![(TcpControl::Syn, Some(101))]);
    }

    #[test]
    fn cookie_acks_are_taken_only_after_the_syn_queue_overflowed() {
        let mut s = shard(ShardConfig {
            syn_backlog: 0,
            ..ShardConfig::default()
        });
        let mut c = Counters::default();
        let now = Instant::ZERO;
        // Before any overflow, an ACK to the listener is not a cookie to
        // check but a segment for no connection: RST (§3.10.7.2 second).
        let out = feed(
            &mut s,
            now,
            &segment(TcpControl::None, 1, Some(5), b""),
            &mut c,
        );
        assert_eq!(out, vec![(TcpControl::Rst, 5, None)]);
        assert_eq!(c.tcp_syncookies_failed, 0, "not even checked");
        // The queue overflows: a cookie SYN-ACK goes out.
        let out = feed(
            &mut s,
            now,
            &segment(TcpControl::Syn, 1000, None, b""),
            &mut c,
        );
        assert_eq!(out.len(), 1);
        let (control, cookie, ack) = out[0];
        assert_eq!((control, ack), (TcpControl::Syn, Some(1001)));
        // Its ACK is taken within the window...
        let later = now + Duration::from_secs(60);
        let out = feed(
            &mut s,
            later,
            &segment(TcpControl::None, 1001, Some(cookie.wrapping_add(1)), b""),
            &mut c,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(c.tcp_syncookies_ok, 1);
        assert_eq!(s.connection_count(), 1);
        // ...and after two quiet minutes no guessed cookie is checked (a
        // new 4-tuple: the first is a connection now).
        let much_later = now + Duration::from_secs(181);
        let out = feed(
            &mut s,
            much_later,
            &segment_from(
                40001,
                TcpControl::None,
                5001,
                Some(cookie.wrapping_add(1)),
                b"",
            ),
            &mut c,
        );
        assert_eq!(out, vec![(TcpControl::Rst, cookie.wrapping_add(1), None)]);
        assert_eq!(c.tcp_syncookies_failed, 0);
    }

    #[test]
    fn challenge_acks_have_a_randomised_budget_per_second() {
        let mut b = ChallengeBudget::default();
        let now = Instant::ZERO;
        let budget = (0..5000).take_while(|_| b.take(now, || 123_456)).count() as u32;
        assert_eq!(
            budget,
            CHALLENGE_ACKS_PER_SECOND / 2 + 123_456 % CHALLENGE_ACKS_PER_SECOND
        );
        assert!(!b.take(now + Duration::from_millis(999), || 0));
        assert!(
            b.take(now + Duration::from_secs(1), || 0),
            "a new second, a new budget"
        );
    }
}
