//! One TCP connection: the transmission control block (RFC 9293 §3.3.1)
//! and its state machine, sans-IO.
//!
//! Input: [`Connection::process`] with a parsed segment and `now`. Output:
//! [`Connection::dispatch`] hands the segments to send, as [`TcpRepr`]s
//! whose payload borrows the send buffer, to a closure that writes them
//! straight into a transmit frame; [`Connection::poll_at`] says when to call
//! it next. The application side ([`Connection::send`], [`Connection::recv`],
//! [`Connection::close`], [`Connection::abort`]) follows RFC 9293 §3.10's
//! user calls, with their errors.
//!
//! Segment arrival follows RFC 9293 §3.10.7 step by step (each step is a
//! function named after it), with RFC 5961's defences (challenge ACKs for
//! in-window RSTs and SYNs, the ACK acceptability window) and RFC 7323's
//! PAWS. Loss recovery is NewReno (RFC 5681, RFC 6582) or, when SACK was
//! negotiated, SACK-based (RFC 6675), on top of CUBIC or Reno window
//! arithmetic ([`super::congestion`]) and the RFC 6298 timer ([`super::rtt`]).

use std::{fmt, net::SocketAddrV4, time::Duration};

use super::{
    assembler::Assembler,
    buffer::RingBuffer,
    config::TcpConfig,
    congestion::Congestion,
    plpmtud::PathMtuSearch,
    rtt::RttEstimator,
    sack::{RetransmitLog, Scoreboard},
};
use crate::{
    counters::DropReason,
    driver::TxError,
    time::Instant,
    wire::{SeqNumber, TcpControl, TcpRepr, TcpTimestamp},
};

/// RFC 9293 §3.3.2 connection states (LISTEN lives in the listener, not
/// here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// States in which our data (or FIN) may still go out or be resent.
    fn sends_data(self) -> bool {
        matches!(
            self,
            State::Established
                | State::FinWait1
                | State::CloseWait
                | State::Closing
                | State::LastAck
        )
    }

    /// States after the handshake (RFC 9293 "synchronized states").
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::SynSent | State::SynReceived)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the user calls, worded as RFC 9293 §3.10 words them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// "connection does not exist"
    DoesNotExist,
    /// "connection closing"
    Closing,
    /// "connection reset"
    Reset,
    /// "connection aborted due to user timeout" (or retransmissions, or
    /// keepalive probes, exhausted)
    TimedOut,
    /// "connection refused": the peer answered our SYN with a RST.
    Refused,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::DoesNotExist => "connection does not exist",
            Error::Closing => "connection closing",
            Error::Reset => "connection reset",
            Error::TimedOut => "connection aborted due to user timeout",
            Error::Refused => "connection refused",
        })
    }
}

impl std::error::Error for Error {}

/// What happened to a connection since the application last looked: a set
/// of flags, taken with [`Connection::take_events`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events(u8);

impl Events {
    /// The handshake completed.
    pub const CONNECTED: Events = Events(1);
    /// New bytes can be read.
    pub const READABLE: Events = Events(2);
    /// Send-buffer space opened up.
    pub const WRITABLE: Events = Events(4);
    /// The peer sent FIN: no more bytes will arrive.
    pub const PEER_CLOSED: Events = Events(8);
    /// The connection is gone (see [`Connection::error`] for why).
    pub const CLOSED: Events = Events(16);

    pub fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn insert(&mut self, other: Events) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, o: Events) -> Events {
        Events(self.0 | o.0)
    }
}

/// A snapshot for STATUS (RFC 9293 §3.10.6) and for observability.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: State,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// Bytes the application queued that are not yet acknowledged.
    pub send_queued: usize,
    /// Bytes received and not yet read by the application.
    pub recv_queued: usize,
    pub srtt: Option<Duration>,
    pub rto: Duration,
    pub cwnd: usize,
    pub ssthresh: usize,
    /// Peer's window, scaled.
    pub send_window: usize,
    /// Segments retransmitted over the connection's life.
    pub retransmits: u64,
    pub send_mss: usize,
    pub timestamps: bool,
    pub sack: bool,
    /// (ours, theirs) window scale shifts, when negotiated.
    pub window_scale: Option<(u8, u8)>,
}

/// Largest RACK reordering window, in quarters of the minimum RTT: the
/// window is capped by SRTT anyway (RFC 8985 §6.2 step 4).
const REO_WND_MULT_MAX: u32 = 64;
/// Recoveries without a DSACK before the reordering window shrinks back
/// (RFC 8985 §6.2 step 4: 16).
const REO_WND_PERSIST: u32 = 16;

/// A tail loss probe's episode (RFC 8985 §7.4): what the probe sent again,
/// if it was a copy, and where the flight ended when it went.
#[derive(Debug, Clone, Copy)]
struct ProbeEpisode {
    /// The range sent again; `None` for a probe of new data, which normal
    /// loss detection covers.
    resent: Option<(SeqNumber, SeqNumber)>,
    /// SND.MAX after the probe.
    end: SeqNumber,
}

/// A congestion response (fast recovery's cut, or a timeout's) kept with
/// what it replaced, until D-SACKs show whether it was needed (RFC 3708,
/// RFC 2883 §5; Linux's `undo_marker` and `undo_retrans`).
#[derive(Debug, Clone)]
struct Undo {
    /// Congestion control as it was before the response.
    prior: Congestion,
    /// SND.UNA when the response began; D-SACKs below it are older news.
    marker: SeqNumber,
    /// Segments retransmitted since then that no D-SACK has yet reported
    /// as received twice.
    retrans: u32,
    /// Whether the response retransmitted anything at all.
    any: bool,
    /// End of the highest retransmission: a D-SACK above it reports a
    /// segment the network duplicated, not one we sent twice.
    high: SeqNumber,
}

/// The MSS assumed when the peer sends none (RFC 9293 §3.7.1).
const DEFAULT_MSS: usize = 536;
/// PAWS: a TS.Recent older than this is no longer trusted (RFC 7323 §5.5).
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// Duplicate ACKs that signal a loss (RFC 5681 §3.2).
const DUPACK_THRESHOLD: u32 = 3;
/// RFC 8985 §7.2 WCDelAckT: the longest a peer may delay an ACK.
const TLP_DELAYED_ACK: Duration = Duration::from_millis(200);
/// The shortest probe timeout (Linux's 10 ms floor).
const TLP_MIN: Duration = Duration::from_millis(10);
/// RFC 6298 §5.7: the RTO data starts with after a lost SYN or SYN-ACK.
const SYN_FALLBACK_RTO: Duration = Duration::from_secs(3);
/// The smallest path MTU believed (Linux's `ip_rt_min_pmtu`).
const MIN_PMTU: usize = 552;
/// At most one challenge ACK per connection this often (RFC 5961 §7;
/// Linux's default `tcp_invalid_ratelimit`).
const CHALLENGE_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// Timestamp option plus its two NOPs.
const TIMESTAMP_OPTION_LEN: usize = 12;
/// RFC 4821 §7.4 black hole detection, as Linux's `tcp_mtu_probing = 1`
/// does it: this many retransmission timeouts in a row, with more than
/// [`BLACK_HOLE_MSS`] outstanding, suggest that full-sized segments die on
/// the path without an ICMP "fragmentation needed" (a firewall eats it).
const BLACK_HOLE_RTOS: u32 = 3;
/// The segment size a suspected black hole falls back to (Linux's
/// `tcp_base_mss`): it fits every IPv4 path of 1100 bytes or more. A
/// path MTU search ([`PathMtuSearch`]) then looks for the largest size
/// above it that the path carries.
const BLACK_HOLE_MSS: usize = 1024;
/// The round trip autotuning assumes before an RTT was measured.
const AUTOTUNE_DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Autotuning measures over at least this long (a LAN's RTT is tens of
/// microseconds: shorter periods would be noise).
const AUTOTUNE_MIN_RTT: Duration = Duration::from_millis(1);

/// Timestamp state (RFC 7323 §4.3).
#[derive(Debug, Clone, Copy)]
struct Timestamps {
    /// TS.Recent: the peer's latest valid TSval, echoed in our TSecr.
    recent: u32,
    recent_at: Instant,
    /// Added to our millisecond clock so TSvals do not reveal uptime and
    /// differ per connection (RFC 7323 §7.1).
    offset: u32,
}

// A connection's send and receive rings start empty, with no storage:
// memory is taken as data flows (a ring grows by doubling, from
// [`MIN_RING`] up to the configured size) and given back once a ring has
// stayed empty for [`TRIM_AFTER`], so an idle keep-alive connection holds
// none (stale bytes are never readable: only what is enqueued or
// reassembled is).

/// The smallest ring a buffer grows to: one page.
pub const MIN_RING: usize = 4096;

/// A ring that stayed empty this long after the last segment is freed: an
/// idle keep-alive connection then costs only its state.
pub const TRIM_AFTER: Duration = Duration::from_secs(1);

/// The receive window a connection starts with (Linux's default too); it
/// grows with what the application reads per round trip (receive buffer
/// autotuning, Linux's "DRS") up to the configured buffer.
pub const INITIAL_RCV_SPACE: usize = 64 * 1024;

/// Under memory pressure a send ring may still grow to this, so that a
/// response head always fits.
pub const PRESSURE_SEND_FLOOR: usize = 16 * 1024;

/// Grows `ring` so that it holds `need` bytes from its front: to the next
/// power of two, at least [`MIN_RING`], at most `limit` (or `need`).
fn grow_for(ring: &mut RingBuffer, need: usize, limit: usize) {
    if need > ring.capacity() {
        let cap = need.next_power_of_two().max(MIN_RING).min(limit).max(need);
        ring.grow_to(cap);
    }
}

/// Bytes from `earlier` to `later` (0 if `later` is not after it).
fn span(later: SeqNumber, earlier: SeqNumber) -> usize {
    later.distance_from(earlier).max(0) as usize
}

/// One TCP connection.
pub struct Connection {
    cfg: TcpConfig,
    state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Why the connection ended, for the application.
    error: Option<Error>,
    events: Events,

    // Send sequence space (RFC 9293 §3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    /// The next sequence number to send; moved back to SND.UNA after a
    /// retransmission timeout (go-back-N), so it can be below `snd_max`.
    snd_nxt: SeqNumber,
    /// The highest sequence number ever sent, plus one.
    snd_max: SeqNumber,
    snd_wnd: usize,
    max_snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Shift applied to the peer's window field.
    snd_wscale: u8,
    /// Bytes from SND.UNA on (after the SYN): sent-unacknowledged, then
    /// unsent.
    send_buf: RingBuffer,
    /// CLOSE was called: a FIN follows the queued data.
    fin_queued: bool,
    send_mss: usize,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// The right edge of the window we last advertised; never moved left
    /// (RFC 9293 §3.8.6: do not shrink the window).
    rcv_adv: SeqNumber,
    /// Shift we apply to our window field.
    rcv_wscale: u8,
    recv_buf: RingBuffer,
    assembler: Assembler,
    /// The receive buffer in force: what the window may offer, grown by
    /// autotuning up to `cfg.recv_buffer`.
    rcv_space: usize,
    /// Bytes the application read since `rcv_space_at` (autotuning).
    rcv_copied: usize,
    rcv_space_at: Instant,
    /// When the last segment arrived: rings empty since then are freed
    /// [`TRIM_AFTER`] later.
    active_at: Instant,
    /// The shard is over its memory budget: no ring grows beyond a floor,
    /// out-of-order data that would need more memory is dropped, and empty
    /// rings are freed at once.
    memory_pressure: bool,
    /// Sequence number of a FIN received ahead of a hole.
    fin_at: Option<SeqNumber>,
    /// The urgent pointer's end of urgent data (RFC 6093: data is delivered
    /// inline; this only tells the application urgent data was signalled).
    rcv_up: Option<SeqNumber>,

    // Options.
    window_scaling: bool,
    timestamps: Option<Timestamps>,
    sack: bool,
    scoreboard: Scoreboard,

    // Acknowledgement policy (RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2).
    ack_now: bool,
    delayed_ack_at: Option<Instant>,
    /// Full-sized segments received since our last ACK.
    segments_unacked: u32,
    last_ack_sent: SeqNumber,

    // Retransmission (RFC 6298).
    rtt: RttEstimator,
    /// Segment being timed without timestamps: (sequence, sent at).
    rtt_probe: Option<(SeqNumber, Instant)>,
    rto_at: Option<Instant>,
    /// Consecutive retransmission timeouts (reset by progress).
    timeouts: u32,
    retransmits: u64,
    /// Retransmission timeouts so far (of data, SYN or FIN).
    rto_count: u64,
    /// When the oldest unacknowledged data was first sent (user timeout).
    unacked_since: Option<Instant>,

    // Congestion control and recovery.
    cc: Congestion,
    dupacks: u32,
    /// RFC 6582 "recover": recovery ends when this is acknowledged.
    recovery: Option<SeqNumber>,
    /// What SACK recovery retransmitted (RFC 6675's HighRxt, per range).
    rexmit_log: RetransmitLog,
    /// RACK (RFC 8985 §6.2): every unSACKed byte below this was sent before
    /// data the peer reported a reordering window ago, so it is lost even
    /// with fewer than DupThresh segments above it (a small window, a
    /// tail). Moved on ACKs and by `rack_at`.
    rack_edge: Option<SeqNumber>,
    /// RACK's reordering timer: when `rack_edge` may move without an ACK.
    rack_at: Option<Instant>,
    /// RACK's reordering window in quarters of the minimum RTT (RFC 8985
    /// §6.2 step 4): grows by one per round trip that brings a DSACK,
    /// back to 1 after `reo_wnd_persist` recoveries without one.
    reo_wnd_mult: u32,
    reo_wnd_persist: u32,
    /// SND.MAX when `reo_wnd_mult` last grew: once per round trip.
    dsack_round: Option<SeqNumber>,
    /// The last congestion response, to be undone if every retransmission
    /// it made proves needless (see [`Undo`]).
    /// Boxed: idle connections, most of them, never hold one.
    undo: Option<Box<Undo>>,
    /// DSACKs received and responses undone since the shard last took them.
    spurious: (u32, u32),
    /// A duplicate received, reported first in our next ACK (RFC 2883 §4).
    dsack_out: Option<(SeqNumber, SeqNumber)>,
    /// The segment at SND.UNA is to be retransmitted now (entering
    /// recovery; NewReno's partial ACKs).
    rexmit_una: bool,
    /// RFC 6582 "recover" kept after recovery or a timeout ends: a new fast
    /// retransmit needs duplicate ACKs beyond it. Cleared once SND.UNA
    /// passes it, so it can never fall 2^31 behind and turn fast
    /// retransmit off by wrapping.
    recover_mark: Option<SeqNumber>,

    /// Tail loss probe (RFC 8985 §7): when to send one if no ACK came.
    tlp_at: Option<Instant>,
    /// A probe is due now.
    tlp_due: bool,
    /// A probe went and no ACK has acknowledged new data since: no other
    /// probe until one does (RFC 8985 §7.3), so a run of probes can never
    /// keep pushing the retransmission timer away.
    tlp_outstanding: bool,
    /// Loss probes sent so far.
    loss_probes: u64,
    /// Losses a loss probe repaired (each cut cwnd, RFC 8985 §7.4.2)
    /// since the shard last took them.
    tlp_recoveries: u32,
    /// The probe's episode (RFC 8985 §7.4): the range a probe sent again
    /// (`None` for a probe of new data, which normal loss detection
    /// covers) and SND.MAX after it. Once the peer acknowledges past it
    /// without a D-SACK for the probe, the probe repaired a real loss, and
    /// cwnd is cut as for any other.
    tlp_episode: Option<ProbeEpisode>,
    /// The search for a larger segment size after a black hole or an ICMP
    /// message lowered it (RFC 8899, RFC 4821); boxed, as few connections
    /// ever need one.
    mtu_search: Option<Box<PathMtuSearch>>,
    /// This recovery began with the loss of an MTU probe alone and left
    /// cwnd as it was (RFC 8899 §3 item 7: a lost probe is not
    /// congestion): the probe's data not yet sent again. Any other loss in
    /// the recovery reduces cwnd then.
    cwnd_spared: Option<(SeqNumber, SeqNumber)>,
    /// MTU probes (acknowledged, lost) since the shard last took them.
    mtu_probes: (u32, u32),
    /// Suspected black holes so far.
    black_holes: u64,

    // Other timers.
    persist_at: Option<Instant>,
    persist_backoff: u32,
    keepalive_at: Option<Instant>,
    keepalive_probes: u32,
    /// TIME-WAIT expiry, or the FIN-WAIT-2 timeout.
    close_at: Option<Instant>,
    /// A RST to send (ABORT, or an unacceptable ACK in SYN-RECEIVED).
    rst_pending: Option<(SeqNumber, Option<SeqNumber>)>,
    /// A zero-window or keepalive probe is due.
    probe_due: bool,
    /// Why the last segment was rejected, for the shard's counters.
    rejected: Option<DropReason>,
    /// The application closed and will not read: data arriving now is
    /// answered with a RST (RFC 9293 §3.10.7.4, RFC 1122 §4.2.2.13).
    orphaned: bool,
    /// When the last challenge ACK went (RFC 5961 §7 rate limit).
    last_challenge: Option<Instant>,
    /// Tests turn header prediction off to check it against the full path.
    #[cfg(test)]
    predict: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(
        cfg: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        now: Instant,
    ) -> Self {
        let mss = usize::from(cfg.mss).max(64);
        Connection {
            cfg: cfg.clone(),
            state: State::Closed,
            local,
            remote,
            error: None,
            events: Events::default(),
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_wscale: 0,
            send_buf: RingBuffer::new(0),
            fin_queued: false,
            send_mss: DEFAULT_MSS.min(mss),
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            rcv_wscale: 0,
            recv_buf: RingBuffer::new(0),
            assembler: Assembler::new(),
            rcv_space: cfg.recv_buffer.min(INITIAL_RCV_SPACE),
            rcv_copied: 0,
            rcv_space_at: now,
            active_at: now,
            memory_pressure: false,
            fin_at: None,
            rcv_up: None,
            window_scaling: false,
            timestamps: None,
            sack: false,
            scoreboard: Scoreboard::new(),
            ack_now: false,
            delayed_ack_at: None,
            segments_unacked: 0,
            last_ack_sent: SeqNumber(0),
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            rtt_probe: None,
            rto_at: None,
            timeouts: 0,
            retransmits: 0,
            rto_count: 0,
            unacked_since: None,
            cc: Congestion::new(cfg.congestion, DEFAULT_MSS, now),
            dupacks: 0,
            recovery: None,
            rexmit_log: RetransmitLog::new(),
            rack_edge: None,
            rack_at: None,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
            undo: None,
            spurious: (0, 0),
            dsack_out: None,
            rexmit_una: false,
            recover_mark: None,
            tlp_at: None,
            tlp_due: false,
            tlp_outstanding: false,
            tlp_episode: None,
            tlp_recoveries: 0,
            loss_probes: 0,
            mtu_search: None,
            cwnd_spared: None,
            mtu_probes: (0, 0),
            black_holes: 0,
            persist_at: None,
            persist_backoff: 0,
            keepalive_at: None,
            keepalive_probes: 0,
            close_at: None,
            rst_pending: None,
            probe_due: false,
            rejected: None,
            orphaned: false,
            last_challenge: None,
            #[cfg(test)]
            predict: true,
        }
    }

    /// OPEN, active (RFC 9293 §3.10.1): a SYN goes out on the next
    /// dispatch.
    pub fn connect(
        cfg: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        now: Instant,
    ) -> Self {
        let mut c = Connection::new(cfg, local, remote, iss, now);
        c.state = State::SynSent;
        c.window_scaling = cfg.window_scaling;
        c.sack = cfg.sack;
        c.timestamps = cfg.timestamps.then_some(Timestamps {
            recent: 0,
            recent_at: now,
            offset: iss.0.rotate_left(13),
        });
        c.rcv_wscale = if cfg.window_scaling {
            cfg.recv_window_scale()
        } else {
            0
        };
        c
    }

    /// A passive open completing its first step: a SYN arrived on a
    /// listening port (RFC 9293 §3.10.7.2). The SYN-ACK goes out on the next
    /// dispatch. `syn` must be a SYN without ACK (the listener checked).
    pub fn accept(
        cfg: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr,
        iss: SeqNumber,
        now: Instant,
    ) -> Self {
        let mut c = Connection::new(cfg, local, remote, iss, now);
        c.state = State::SynReceived;
        c.irs = syn.seq_number;
        c.rcv_nxt = syn.seq_number + 1;
        c.rcv_adv = c.rcv_nxt;
        c.negotiate(syn, now);
        // The SYN's window is never scaled (RFC 7323 §2.2).
        c.snd_wnd = usize::from(syn.window_len);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq_number;
        c
    }

    /// A connection rebuilt from a valid SYN cookie: the handshake's final
    /// ACK arrived for a SYN-ACK we sent without keeping state. `mss` and
    /// the options come from the cookie; `ack` is that final ACK, processed
    /// as the first segment in SYN-RECEIVED.
    #[allow(clippy::too_many_arguments)]
    pub fn from_cookie(
        cfg: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        ack: &TcpRepr,
        mss: u16,
        window_scale: Option<u8>,
        sack_permitted: bool,
        now: Instant,
    ) -> Self {
        let iss = ack.ack_number.unwrap_or(SeqNumber(0)) - 1;
        let mut c = Connection::new(cfg, local, remote, iss, now);
        c.state = State::SynReceived;
        c.irs = ack.seq_number - 1;
        c.rcv_nxt = ack.seq_number;
        // The stateless SYN-ACK offered this much, unscaled.
        c.rcv_adv = c.rcv_nxt + c.rcv_free().min(usize::from(u16::MAX));
        c.last_ack_sent = c.rcv_nxt;
        // Our SYN-ACK is out and counted.
        c.snd_nxt = iss + 1;
        c.snd_max = iss + 1;
        c.window_scaling = cfg.window_scaling && window_scale.is_some();
        if c.window_scaling {
            c.snd_wscale = window_scale.unwrap_or(0);
            c.rcv_wscale = cfg.recv_window_scale();
        }
        c.sack = cfg.sack && sack_permitted;
        c.timestamps = match (cfg.timestamps, ack.timestamp) {
            (true, Some(ts)) => Some(Timestamps {
                recent: ts.tsval,
                recent_at: now,
                offset: 0,
            }),
            _ => None,
        };
        c.set_send_mss(usize::from(mss));
        c.snd_wl1 = c.irs;
        c
    }

    /// Option negotiation from the peer's SYN (RFC 7323 §2.2, §3.2; RFC
    /// 2018 §2; RFC 9293 §3.7.1).
    fn negotiate(&mut self, syn: &TcpRepr, now: Instant) {
        self.window_scaling = self.cfg.window_scaling && syn.window_scale.is_some();
        if self.window_scaling {
            self.snd_wscale = syn.window_scale.unwrap_or(0);
            self.rcv_wscale = self.cfg.recv_window_scale();
        } else {
            self.snd_wscale = 0;
            self.rcv_wscale = 0;
        }
        self.sack = self.cfg.sack && syn.sack_permitted;
        self.timestamps = match (self.cfg.timestamps, syn.timestamp) {
            (true, Some(ts)) => Some(Timestamps {
                recent: ts.tsval,
                recent_at: now,
                offset: self
                    .timestamps
                    .map_or(self.iss.0.rotate_left(13), |t| t.offset),
            }),
            _ => None,
        };
        let peer_mss = syn.max_seg_size.map_or(DEFAULT_MSS, usize::from);
        self.set_send_mss(peer_mss);
    }

    /// The payload bytes per segment: the peer's MSS, bounded by ours,
    /// less the options every segment carries (RFC 9293 §3.7.1: the MSS
    /// excludes options; we subtract the timestamp option we always send).
    fn set_send_mss(&mut self, peer_mss: usize) {
        let ours = usize::from(self.cfg.mss);
        let options = if self.timestamps.is_some() {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        };
        self.send_mss = peer_mss.min(ours).saturating_sub(options).max(64);
        self.cc.set_mss(self.send_mss);
    }

    // ------------------------------------------------------------------
    // Accessors
    // ------------------------------------------------------------------

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// Why the connection closed, if it did not close normally.
    pub fn error(&self) -> Option<Error> {
        self.error
    }

    /// Whether the connection is gone and has nothing left to send: its
    /// slot can be freed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && self.rst_pending.is_none()
    }

    /// Whether a SYN for this 4-tuple may start a new connection although
    /// this one is in TIME-WAIT: its sequence number or timestamp is beyond
    /// the old incarnation's (RFC 9293 §3.10.7.4 note, RFC 6191).
    pub fn time_wait_allows(&self, syn: &TcpRepr) -> bool {
        if self.state != State::TimeWait
            || syn.control != TcpControl::Syn
            || syn.ack_number.is_some()
        {
            return false;
        }
        match (self.timestamps, syn.timestamp) {
            (Some(ts), Some(seg_ts)) => (seg_ts.tsval.wrapping_sub(ts.recent) as i32) > 0,
            _ => syn.seq_number > self.rcv_nxt,
        }
    }

    /// Gives the buffers back early once they can no longer be needed: in
    /// TIME-WAIT our FIN is acknowledged (nothing left to send) and, once
    /// the application has read everything, nothing is left to read. A
    /// connection waiting out 2 MSL then holds no buffer memory, as Linux's
    /// timewait sockets hold none.
    pub fn shed_buffers(&mut self) {
        if self.state == State::TimeWait {
            self.trim();
        }
    }

    /// Bytes of buffer the connection holds (0 once shed or trimmed).
    pub fn buffer_bytes(&self) -> usize {
        self.send_buf.capacity() + self.recv_buf.capacity()
    }

    /// Tells the connection whether its shard is over its memory budget
    /// (see the field).
    pub fn set_memory_pressure(&mut self, on: bool) {
        self.memory_pressure = on;
    }

    /// The receive buffer size in force: autotuned, and under memory
    /// pressure no more than what is allocated (or one ring).
    fn rcv_limit(&self) -> usize {
        let mut limit = self.rcv_space.min(self.cfg.recv_buffer);
        if self.memory_pressure {
            limit = limit.min(self.recv_buf.capacity().max(MIN_RING));
        }
        limit
    }

    /// Free receive space: RCV.WND before SWS avoidance (RFC 9293 §3.8.6).
    fn rcv_free(&self) -> usize {
        self.rcv_limit().saturating_sub(self.recv_buf.len())
    }

    /// What may be queued to send in all.
    fn snd_limit(&self) -> usize {
        if self.memory_pressure {
            self.cfg
                .send_buffer
                .min(self.send_buf.capacity().max(PRESSURE_SEND_FLOOR))
        } else {
            self.cfg.send_buffer
        }
    }

    /// When empty rings are to be freed, if any is held.
    fn trim_at(&self) -> Option<Instant> {
        let send = self.send_buf.capacity() > 0 && self.send_buf.is_empty();
        let recv =
            self.recv_buf.capacity() > 0 && self.recv_buf.is_empty() && self.assembler.is_empty();
        if !(send || recv) {
            return None;
        }
        Some(if self.memory_pressure {
            self.active_at
        } else {
            self.active_at + TRIM_AFTER
        })
    }

    /// Frees the rings that are empty (nothing queued, nothing written
    /// ahead).
    fn trim(&mut self) {
        if self.send_buf.is_empty() {
            self.send_buf = RingBuffer::new(0);
        }
        if self.recv_buf.is_empty() && self.assembler.is_empty() {
            self.recv_buf = RingBuffer::new(0);
        }
    }

    /// Why the last processed segment was rejected, if it was (taken).
    pub fn take_rejection(&mut self) -> Option<DropReason> {
        self.rejected.take()
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Events {
        std::mem::take(&mut self.events)
    }

    /// Segments sent again so far (timeouts, fast retransmit, recovery).
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Retransmission timeouts so far: each is a stall of at least one RTO
    /// that loss recovery did not prevent.
    pub fn rto_count(&self) -> u64 {
        self.rto_count
    }

    /// Tail loss probes sent so far (RFC 8985 §7).
    pub fn loss_probes(&self) -> u64 {
        self.loss_probes
    }

    /// Losses a loss probe repaired (each cut cwnd) since the last call.
    pub fn take_tlp_recoveries(&mut self) -> u32 {
        std::mem::take(&mut self.tlp_recoveries)
    }

    /// Path MTU black holes suspected so far (the segment size fell back).
    pub fn black_holes(&self) -> u64 {
        self.black_holes
    }

    /// MTU probes (acknowledged, lost) since the last call.
    pub fn take_mtu_probes(&mut self) -> (u32, u32) {
        std::mem::take(&mut self.mtu_probes)
    }

    pub fn status(&self) -> Status {
        Status {
            state: self.state,
            local: self.local,
            remote: self.remote,
            send_queued: self.send_buf.len(),
            recv_queued: self.recv_buf.len(),
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            send_window: self.snd_wnd,
            retransmits: self.retransmits,
            send_mss: self.send_mss,
            timestamps: self.timestamps.is_some(),
            sack: self.sack,
            window_scale: self
                .window_scaling
                .then_some((self.rcv_wscale, self.snd_wscale)),
        }
    }

    /// Whether urgent data was signalled that has not yet been read past
    /// (RFC 9293 §3.8.5, RFC 6093: we deliver it inline).
    pub fn urgent_pending(&self) -> bool {
        self.rcv_up.is_some_and(|up| {
            let read_up_to = self.rcv_nxt - self.recv_buf.len();
            up > read_up_to
        })
    }

    /// Sets Nagle's algorithm for this connection (RFC 9293 §3.7.4).
    pub fn set_nagle(&mut self, on: bool) {
        self.cfg.nagle = on;
    }

    /// Sets or clears keepalive probing for this connection.
    pub fn set_keepalive(&mut self, keepalive: Option<super::config::KeepAlive>, now: Instant) {
        self.cfg.keepalive = keepalive;
        self.keepalive_probes = 0;
        self.keepalive_at = keepalive
            .filter(|_| self.state.is_synchronized())
            .map(|k| now + k.idle);
    }

    // ------------------------------------------------------------------
    // User calls (RFC 9293 §3.10)
    // ------------------------------------------------------------------

    /// SEND: queues as much of `data` as the send buffer takes and returns
    /// how much (0 when full: wait for [`Events::WRITABLE`]).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.may_send()?;
        let n = data.len().min(self.send_capacity());
        let (need, limit) = (self.send_buf.len() + n, self.snd_limit());
        grow_for(&mut self.send_buf, need, limit);
        Ok(self.send_buf.enqueue_slice(&data[..n]))
    }

    /// SEND without a copy: `write` fills the longest contiguous free run
    /// of the send buffer (empty when full) and returns how many bytes it
    /// wrote, which are queued. A caller that wants more calls again (the
    /// free space can wrap).
    pub fn send_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Error> {
        self.may_send()?;
        let want = self.send_capacity();
        let (need, limit) = (self.send_buf.len() + want, self.snd_limit());
        grow_for(&mut self.send_buf, need, limit);
        let room = self.send_buf.get_unallocated_mut(want);
        let n = write(room).min(room.len());
        self.send_buf.enqueue_unallocated(n);
        Ok(n)
    }

    /// Receive buffer autotuning (Linux's dynamic right-sizing): once per
    /// round trip, if the application read more than half the window in
    /// it, the window doubles to twice that rate × RTT, up to the
    /// configured buffer. A reader that keeps up on a long fat path gets
    /// the window it needs; an idle or slow one keeps a small one, so an
    /// attacker's connections do not get the maximum for free.
    fn autotune_receive(&mut self, read: usize) {
        self.rcv_copied += read;
        let rtt = self
            .rtt
            .srtt()
            .unwrap_or(AUTOTUNE_DEFAULT_RTT)
            .max(AUTOTUNE_MIN_RTT);
        if self.active_at < self.rcv_space_at + rtt {
            return;
        }
        if 2 * self.rcv_copied > self.rcv_space && !self.memory_pressure {
            self.rcv_space = (2 * self.rcv_copied)
                .max(2 * self.rcv_space)
                .min(self.cfg.recv_buffer);
        }
        self.rcv_copied = 0;
        self.rcv_space_at = self.active_at;
    }

    /// Whether SEND is allowed in this state (RFC 9293 §3.10.2).
    fn may_send(&self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(self.error.unwrap_or(Error::DoesNotExist)),
            State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck
            | State::TimeWait => Err(Error::Closing),
            _ if self.fin_queued => Err(Error::Closing),
            // SYN-SENT and SYN-RECEIVED queue data for after the handshake.
            _ => Ok(()),
        }
    }

    /// Room in the send buffer (memory is taken when it is used).
    pub fn send_capacity(&self) -> usize {
        self.snd_limit().saturating_sub(self.send_buf.len())
    }

    /// Bytes queued and not yet acknowledged by the peer.
    pub fn send_queued(&self) -> usize {
        self.send_buf.len()
    }

    /// RECEIVE: copies received bytes out. `Ok(0)` with a non-empty `out`
    /// means nothing is buffered now; after the peer's FIN and once
    /// everything was read, the error is "connection closing".
    pub fn recv(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let n = self.recv_buf.dequeue_slice(out);
        if n > 0 {
            self.after_read(n);
            return Ok(n);
        }
        self.recv_status()
    }

    /// The received bytes as up to two borrowed slices, without copying;
    /// follow with [`Connection::consume`].
    pub fn readable(&self) -> (&[u8], &[u8]) {
        self.recv_buf.readable()
    }

    /// Marks `n` received bytes as read.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = self.recv_buf.dequeue_allocated(n);
        if n > 0 {
            self.after_read(n);
        }
        n
    }

    fn recv_status(&self) -> Result<usize, Error> {
        match self.state {
            State::Closed => Err(self.error.unwrap_or(Error::DoesNotExist)),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait => {
                Err(Error::Closing)
            }
            _ => Ok(0),
        }
    }

    /// Window update after the application read: RFC 9293 §3.8.6.2.2
    /// receiver SWS avoidance — announce only an increase of at least
    /// min(buffer / 2, MSS) — and, as Linux does, only when the window
    /// at least doubles (or was below that threshold), so a reader keeping
    /// up does not cost an extra ACK per read; data ACKs carry the rest.
    fn after_read(&mut self, n: usize) {
        self.autotune_receive(n);
        if !self.state.is_synchronized() || self.fin_received() {
            return;
        }
        let advertised = self.rcv_adv.distance_from(self.rcv_nxt).max(0) as usize;
        let available = self.rcv_free();
        let threshold = (self.rcv_limit() / 2).min(usize::from(self.cfg.mss));
        if available >= advertised + threshold
            && (advertised < threshold || available >= 2 * advertised)
        {
            self.ack_now = true;
        }
    }

    fn fin_received(&self) -> bool {
        matches!(
            self.state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        )
    }

    /// CLOSE (RFC 9293 §3.10.4): no more sends; a FIN follows the queued
    /// data. The connection lives on until both sides are done.
    pub fn close(&mut self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(self.error.unwrap_or(Error::DoesNotExist)),
            State::SynSent => {
                self.enter_closed(None);
                Ok(())
            }
            State::SynReceived => {
                // The FIN goes out once ESTABLISHED (RFC 9293: "queue for
                // processing after entering ESTABLISHED state").
                self.fin_queued = true;
                Ok(())
            }
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
                Ok(())
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
                Ok(())
            }
            State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck
            | State::TimeWait => Err(Error::Closing),
        }
    }

    /// CLOSE for an application that will not read again: as `close`, but
    /// data arriving afterwards gets a RST, and FIN-WAIT-2 is bounded by
    /// `fin_wait_2_timeout`.
    pub fn close_orphan(&mut self) -> Result<(), Error> {
        self.orphaned = true;
        if !self.recv_buf.is_empty() && self.state.is_synchronized() {
            // Unread data: RFC 9293 §3.10.4 (RFC 1122 §4.2.2.13) says reset.
            self.abort();
            return Ok(());
        }
        self.close()
    }

    /// ABORT (RFC 9293 §3.10.5): queued data is dropped; a synchronized
    /// connection sends a RST.
    pub fn abort(&mut self) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.rst_pending = Some((self.snd_max, None));
        }
        self.enter_closed(None);
    }

    fn enter_closed(&mut self, error: Option<Error>) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.error = self.error.or(error);
            self.events.insert(Events::CLOSED);
        }
        self.send_buf.clear();
        self.rto_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.delayed_ack_at = None;
        self.close_at = None;
        self.ack_now = false;
    }

    // ------------------------------------------------------------------
    // Segment arrival (RFC 9293 §3.10.7)
    // ------------------------------------------------------------------

    /// Processes one segment for this connection. Returns a segment to send
    /// at once when the RFC asks for a reset or an immediate reply that
    /// carries no state (the rest go out with [`Connection::dispatch`]).
    pub fn process(&mut self, now: Instant, seg: &TcpRepr) -> Option<TcpRepr<'static>> {
        self.active_at = now;
        match self.state {
            State::Closed => None,
            State::SynSent => self.process_syn_sent(now, seg),
            _ => self.process_synchronized(now, seg),
        }
    }

    /// RFC 9293 §3.10.7.3, SYN-SENT.
    fn process_syn_sent(&mut self, now: Instant, seg: &TcpRepr) -> Option<TcpRepr<'static>> {
        // First: the ACK bit.
        if let Some(ack) = seg.ack_number {
            if ack <= self.iss || ack > self.snd_max {
                self.rejected = Some(DropReason::TcpBadAck);
                if seg.control == TcpControl::Rst {
                    return None;
                }
                return Some(self.reset_reply(ack, None));
            }
        }
        // Second: RST, acceptable only with an acceptable ACK (RFC 5961 §3.2
        // keeps this rule for SYN-SENT).
        if seg.control == TcpControl::Rst {
            if seg.ack_number.is_some() {
                self.enter_closed(Some(Error::Refused));
            } else {
                self.rejected = Some(DropReason::TcpUnexpected);
            }
            return None;
        }
        // Fourth: SYN.
        if seg.control != TcpControl::Syn {
            self.rejected = Some(DropReason::TcpUnexpected);
            return None;
        }
        self.irs = seg.seq_number;
        self.rcv_nxt = seg.seq_number + 1;
        // Our SYN offered this much, unscaled.
        self.rcv_adv = self.rcv_nxt + self.rcv_free().min(usize::from(u16::MAX));
        self.negotiate(seg, now);
        self.snd_wl1 = seg.seq_number;
        match seg.ack_number {
            Some(ack) => {
                // Our SYN is acknowledged: ESTABLISHED.
                self.syn_acked(ack);
                self.snd_wnd = usize::from(seg.window_len);
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl2 = ack;
                self.ack_sample(now, seg, ack);
                self.handshake_timers_done();
                self.enter_established(now);
                self.ack_now = true;
            }
            None => {
                // Simultaneous open: SYN-RECEIVED, answer with SYN-ACK
                // (our SYN again, with the same ISS).
                self.state = State::SynReceived;
                self.snd_wnd = usize::from(seg.window_len);
                self.max_snd_wnd = self.snd_wnd;
                self.snd_nxt = self.iss;
            }
        }
        None
    }

    /// Our SYN is acknowledged: SND.UNA moves past it, and so must SND.NXT.
    /// A retransmitted SYN from the peer (or our SYN timer) may have rewound
    /// SND.NXT to ISS to send the SYN again, and the ACK can arrive before
    /// that happens: data would then go out from ISS, one octet early, and
    /// the peer, trimming what it already has, would take every byte one
    /// place off (found by the threaded echo test: a 1 MiB echo arrived
    /// shifted by one).
    fn syn_acked(&mut self, ack: SeqNumber) {
        self.snd_una = ack;
        self.snd_nxt = self.snd_nxt.max(ack);
        self.snd_max = self.snd_max.max(ack);
    }

    /// The handshake is over: its timer goes; if a SYN or SYN-ACK had to
    /// be sent again and no RTT was measured, data starts with a 3 s RTO
    /// (RFC 6298 §5.7, RFC 9293 MUST-18).
    fn handshake_timers_done(&mut self) {
        if self.timeouts > 0 {
            self.rtt.fall_back(SYN_FALLBACK_RTO);
        }
        self.rto_at = None;
        self.timeouts = 0;
        self.unacked_since = None;
    }

    fn enter_established(&mut self, now: Instant) {
        self.state = State::Established;
        self.events.insert(Events::CONNECTED);
        if self.send_capacity() > 0 {
            self.events.insert(Events::WRITABLE);
        }
        self.keepalive_at = self.cfg.keepalive.map(|k| now + k.idle);
        if self.fin_queued {
            self.state = State::FinWait1;
        }
    }

    /// RFC 9293 §3.10.7.4, every state after SYN-SENT.
    fn process_synchronized(&mut self, now: Instant, seg: &TcpRepr) -> Option<TcpRepr<'static>> {
        // The peer's SYN again, in SYN-RECEIVED. It lies below RCV.NXT, so
        // the acceptability test would drop it before the SYN rule runs.
        let unsyned;
        let mut seg = seg;
        if self.state == State::SynReceived
            && seg.control == TcpControl::Syn
            && seg.seq_number == self.irs
        {
            match seg.ack_number {
                // Our SYN-ACK was lost and the peer sent its SYN again:
                // answer at once, as Linux does, not when our own
                // retransmission timer fires.
                None => {
                    self.snd_nxt = self.iss;
                    return None;
                }
                // Simultaneous open (RFC 9293 §3.5 figure 8): the peer's
                // SYN-ACK acknowledges our SYN; its SYN is the one we
                // already have, so it goes on as a plain ACK.
                Some(_) => {
                    unsyned = TcpRepr {
                        seq_number: seg.seq_number + 1,
                        control: TcpControl::None,
                        ..*seg
                    };
                    seg = &unsyned;
                }
            }
        }
        if self.predicted(now, seg) {
            self.keepalive_heard(now);
            return None;
        }
        // PAWS (RFC 7323 §5.3) before the sequence check.
        if let (Some(ts), Some(seg_ts)) = (self.timestamps, seg.timestamp) {
            let stale = (seg_ts.tsval.wrapping_sub(ts.recent) as i32) < 0;
            if stale && seg.control != TcpControl::Rst {
                if now.saturating_duration_since(ts.recent_at) > PAWS_IDLE {
                    // An idle connection's TS.Recent is invalid (RFC 7323 §5.5).
                    if let Some(t) = self.timestamps.as_mut() {
                        t.recent = seg_ts.tsval;
                        t.recent_at = now;
                    }
                } else {
                    self.ack_now = true;
                    self.rejected = Some(DropReason::TcpPaws);
                    return None;
                }
            }
        }

        // First: sequence number acceptability.
        let trimmed;
        if !self.segment_acceptable(seg) {
            let wnd = self.rcv_adv.distance_from(self.rcv_nxt);
            // How far from RCV.NXT a sender's SEQ may be: the largest window
            // we could have offered it.
            let reach = seg.seq_number.distance_from(self.rcv_nxt).unsigned_abs() as usize;
            if wnd <= 0
                && seg.ack_number.is_some()
                && reach <= self.cfg.recv_buffer
                && !matches!(seg.control, TcpControl::Rst | TcpControl::Syn)
            {
                // RFC 9293 §3.10.7.4: with a zero receive window no segment
                // is acceptable, "but special allowance should be made to
                // accept valid ACKs": the peer's SEQ may lie anywhere it
                // could have sent to (past a window we shrank, or at its
                // SND.NXT after a persist probe), and an ACK dropped here
                // may be the one that frees the data our application is
                // waiting to send before it reads again. The ACK (checked
                // as any other) is processed; the text is not.
                trimmed = TcpRepr {
                    payload: &[],
                    control: match seg.control {
                        TcpControl::Fin | TcpControl::Psh => TcpControl::None,
                        c => c,
                    },
                    ..*seg
                };
                seg = &trimmed;
                self.ack_now = true;
            } else {
                self.rejected = Some(DropReason::TcpOutOfWindow);
                let end = seg.seq_number + seg.payload.len();
                if self.sack
                    && seg.control != TcpControl::Rst
                    && !seg.payload.is_empty()
                    && end <= self.rcv_nxt
                {
                    // Data we had already: the ACK says so (RFC 2883 §4).
                    self.note_duplicate(seg.seq_number, end);
                }
                if seg.control != TcpControl::Rst {
                    // RFC 9293: send an ACK (and drop); in TIME-WAIT the same,
                    // and a retransmitted FIN restarts the 2 MSL timer.
                    self.ack_now = true;
                    if self.state == State::TimeWait && seg.control == TcpControl::Fin {
                        self.close_at = Some(now + self.cfg.time_wait);
                    }
                }
                return None;
            }
        }

        // An acceptable segment: the peer is alive (RFC 1122 §4.2.3.6
        // counts only those; an attacker's out-of-window noise must not
        // keep a dead connection open).
        self.keepalive_heard(now);

        // Second: RST (RFC 5961 §3.2).
        if seg.control == TcpControl::Rst {
            if seg.seq_number == self.rcv_nxt {
                match self.state {
                    // From a passive open the listener simply forgets it.
                    State::SynReceived => self.enter_closed(Some(Error::Refused)),
                    State::Closing | State::LastAck | State::TimeWait => self.enter_closed(None),
                    _ => self.enter_closed(Some(Error::Reset)),
                }
            } else {
                // In the window but not exact: challenge ACK.
                self.challenge_ack(now);
            }
            return None;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4: challenge ACK).
        if seg.control == TcpControl::Syn {
            if self.state == State::SynReceived && seg.seq_number == self.irs {
                // Our SYN-ACK was lost: send it again.
                self.snd_nxt = self.iss;
                return None;
            }
            self.challenge_ack(now);
            return None;
        }

        // Fifth: the ACK field.
        // Without ACK the segment is dropped (RFC 9293 fifth step).
        let Some(ack) = seg.ack_number else {
            self.rejected = Some(DropReason::TcpUnexpected);
            return None;
        };
        if self.state == State::SynReceived {
            if ack <= self.snd_una || ack > self.snd_max {
                self.rejected = Some(DropReason::TcpBadAck);
                return Some(self.reset_reply(ack, None));
            }
            // The handshake's last step.
            self.syn_acked(self.iss + 1);
            self.snd_wnd = usize::from(seg.window_len) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq_number;
            self.snd_wl2 = ack;
            self.ack_sample(now, seg, self.iss + 1);
            self.handshake_timers_done();
            self.enter_established(now);
        }
        // RFC 5961 §5.2: acceptable ACKs lie in
        // [SND.UNA - MAX.SND.WND, SND.MAX].
        let oldest_ok = self.snd_una - self.max_snd_wnd.min(i32::MAX as usize / 2);
        if ack < oldest_ok || ack > self.snd_max {
            // RFC 5961 §5.2 (too old: challenge ACK) and RFC 9293 (ahead of
            // anything sent: ACK and drop).
            self.ack_now = true;
            self.rejected = Some(DropReason::TcpBadAck);
            return None;
        }
        self.update_timestamp(now, seg);
        self.process_ack(now, seg, ack);
        if self.state == State::Closed {
            return None;
        }

        // Sixth: URG (RFC 9293 §3.10.7.4, RFC 6093).
        if let Some(up) = seg.urgent_pointer {
            let end = seg.seq_number + usize::from(up);
            self.rcv_up = Some(self.rcv_up.map_or(end, |u| u.max(end)));
        }

        // Seventh: segment text; eighth: FIN.
        let data_ok = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !seg.payload.is_empty() && data_ok && self.orphaned {
            // Nobody will read it (RFC 9293 §3.10.7.4, seventh step note).
            self.rst_pending = Some((self.snd_max, None));
            self.enter_closed(Some(Error::Reset));
            return None;
        }
        if data_ok && (!seg.payload.is_empty() || seg.control == TcpControl::Fin) {
            self.receive_text(now, seg);
        } else if seg.control == TcpControl::Fin && self.state == State::TimeWait {
            // A retransmitted FIN: acknowledge and restart 2 MSL.
            self.ack_now = true;
            self.close_at = Some(now + self.cfg.time_wait);
        } else if seg.control == TcpControl::Fin
            && matches!(
                self.state,
                State::CloseWait | State::Closing | State::LastAck
            )
        {
            self.ack_now = true;
        }
        None
    }

    /// RFC 1191 / RFC 5927: a router on the path needs datagrams of at
    /// most `next_hop_mtu` bytes, and said so quoting our segment at `seq`.
    /// Taken only when `seq` is in flight (RFC 5927 §4.1: a blind attacker
    /// cannot guess it) and the MTU is lower than what we use now; an MTU
    /// below 552 counts as 552 (Linux's `min_pmtu`, so a forged message
    /// cannot shrink segments to nothing). What is in flight is sent again
    /// in the smaller size at once; this is not congestion, so the window
    /// stays. Larger sizes are searched for again after ten minutes (RFC
    /// 8899 §5.1.1: the path may have changed). True when applied.
    pub fn path_mtu(&mut self, now: Instant, seq: SeqNumber, next_hop_mtu: u16) -> bool {
        if !self.state.sends_data() || seq < self.snd_una || seq >= self.snd_max {
            return false;
        }
        let options = if self.timestamps.is_some() {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        };
        let mtu = usize::from(next_hop_mtu).max(MIN_PMTU);
        let mss = mtu.saturating_sub(40 + options).max(64);
        if mss >= self.send_mss {
            // About an MTU probe (RFC 8899 §4.6.2): sizes above the MTU it
            // gives fail; the size in use stays, and the probe's loss is
            // repaired as any probe's.
            let search = self.mtu_search.as_mut();
            return search.is_some_and(|s| s.too_big_above(seq, mss));
        }
        match self.mtu_search.as_mut() {
            Some(search) => search.cap(mss, now),
            None => self.mtu_search = Some(Box::new(PathMtuSearch::later(mss, self.send_mss, now))),
        }
        self.send_mss = mss;
        self.cc.set_mss(mss);
        // The segments that were too big are lost: send them again, now.
        self.snd_nxt = self.snd_una;
        self.rexmit_log.clear();
        true
    }

    /// Restarts the keepalive timer: the peer was heard from.
    fn keepalive_heard(&mut self, now: Instant) {
        if let Some(k) = self.cfg.keepalive {
            self.keepalive_at = Some(now + k.idle);
            self.keepalive_probes = 0;
        }
    }

    /// RFC 5961 §7: a challenge ACK, at most one per
    /// [`CHALLENGE_ACK_INTERVAL`] per connection (Linux's
    /// `tcp_invalid_ratelimit`), so a flood of forged RSTs or SYNs cannot
    /// turn us into an amplifier; the shard adds a budget for all its
    /// connections together ([`Connection::withdraw_challenge_ack`]).
    fn challenge_ack(&mut self, now: Instant) {
        if self
            .last_challenge
            .is_some_and(|t| now.saturating_duration_since(t) < CHALLENGE_ACK_INTERVAL)
        {
            self.rejected = Some(DropReason::TcpChallengeAckLimited);
            return;
        }
        self.last_challenge = Some(now);
        self.ack_now = true;
        self.rejected = Some(DropReason::TcpChallengeAck);
    }

    /// The shard's budget of challenge ACKs ran out: the one this segment
    /// asked for is not sent.
    pub fn withdraw_challenge_ack(&mut self) {
        if self.rejected == Some(DropReason::TcpChallengeAck) {
            self.ack_now = false;
            self.rejected = Some(DropReason::TcpChallengeAckLimited);
        }
    }

    /// Header prediction (Van Jacobson's, as in Linux's
    /// `tcp_rcv_established`): the common case of a receiver — the next
    /// in-order segment of data in ESTABLISHED, with nothing new
    /// acknowledged, the window unchanged, timestamps in order, no SACK,
    /// URG, FIN or holes — is taken here in a few comparisons, with exactly
    /// the effects the full path below would have. Returns false, having
    /// changed nothing, for anything else.
    fn predicted(&mut self, now: Instant, seg: &TcpRepr) -> bool {
        #[cfg(test)]
        if !self.predict {
            return false;
        }
        let in_order = self.state == State::Established
            && matches!(seg.control, TcpControl::None | TcpControl::Psh)
            && seg.seq_number == self.rcv_nxt
            && seg.ack_number == Some(self.snd_una)
            && seg.sack_ranges[0].is_none()
            && seg.urgent_pointer.is_none()
            && !seg.payload.is_empty()
            && !self.orphaned
            && self.assembler.is_empty()
            // A FIN that arrived ahead of this data must be taken when the
            // data reaches it: the full path does that.
            && self.fin_at.is_none();
        if !in_order {
            return false;
        }
        let window = usize::from(seg.window_len) << self.snd_wscale;
        if window != self.snd_wnd || window == 0 {
            return false;
        }
        let advertised = self.rcv_adv.distance_from(self.rcv_nxt).max(0) as usize;
        if seg.payload.len() > advertised.min(self.rcv_free()) {
            return false;
        }
        if self.recv_buf.window() < seg.payload.len() {
            if self.memory_pressure {
                return false;
            }
            let need = self.recv_buf.len() + seg.payload.len();
            grow_for(&mut self.recv_buf, need, self.cfg.recv_buffer);
        }
        match (self.timestamps.as_mut(), seg.timestamp) {
            (None, _) => {}
            (Some(ts), Some(seg_ts)) if (seg_ts.tsval.wrapping_sub(ts.recent) as i32) >= 0 => {
                // RFC 7323 §4.3 (2); the segment starts at RCV.NXT.
                if seg.seq_number <= self.last_ack_sent {
                    ts.recent = seg_ts.tsval;
                    ts.recent_at = now;
                }
            }
            (Some(_), _) => return false,
        }
        // Fifth step's window update, with nothing else to do for the ACK.
        self.snd_wl1 = seg.seq_number;
        self.snd_wl2 = self.snd_una;
        self.persist_at = None;
        // Seventh step: straight into the buffer, no reassembly.
        let n = self.recv_buf.enqueue_slice(seg.payload);
        self.rcv_nxt += n;
        self.events.insert(Events::READABLE);
        self.segments_unacked += 1;
        if self.segments_unacked >= 2 {
            self.ack_now = true;
        } else if self.delayed_ack_at.is_none() {
            self.delayed_ack_at = Some(now + self.cfg.delayed_ack);
        }
        true
    }

    /// RFC 9293 §3.10.7.4's acceptability table.
    fn segment_acceptable(&self, seg: &TcpRepr) -> bool {
        let len = seg.payload.len() + seg.control.sequence_len();
        let wnd = self.rcv_adv.distance_from(self.rcv_nxt).max(0) as usize;
        let seq = seg.seq_number;
        let in_window = |s: SeqNumber| s >= self.rcv_nxt && s < self.rcv_nxt + wnd;
        match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            // Liberal where the table is strict, as Linux: a segment
            // without text at the right edge itself (a sender that filled
            // our window to the octet sends its ACKs from there).
            (0, _) if seg.control != TcpControl::Rst => {
                seq >= self.rcv_nxt && seq <= self.rcv_nxt + wnd
            }
            (0, _) => in_window(seq),
            (_, 0) => false,
            (_, _) => in_window(seq) || in_window(seq + (len - 1)),
        }
    }

    /// RFC 7323 §4.3 (2): TS.Recent follows the segment that starts at or
    /// before the last ACK we sent.
    fn update_timestamp(&mut self, now: Instant, seg: &TcpRepr) {
        if let (Some(ts), Some(seg_ts)) = (self.timestamps.as_mut(), seg.timestamp) {
            if (seg_ts.tsval.wrapping_sub(ts.recent) as i32) >= 0
                && seg.seq_number <= self.last_ack_sent
            {
                ts.recent = seg_ts.tsval;
                ts.recent_at = now;
            }
        }
    }

    /// An RTT sample for an ACK of `acked_to`: from the echoed timestamp,
    /// or from the one timed segment (Karn: never from a retransmission).
    fn ack_sample(&mut self, now: Instant, seg: &TcpRepr, acked_to: SeqNumber) {
        let sample = match (self.timestamps, seg.timestamp) {
            (Some(ts), Some(seg_ts)) if seg_ts.tsecr != 0 => {
                let ms = self.ts_clock(now, ts).wrapping_sub(seg_ts.tsecr);
                (ms < 1 << 30).then(|| Duration::from_millis(u64::from(ms)))
            }
            _ => match self.rtt_probe {
                Some((seq, sent)) if acked_to > seq => {
                    self.rtt_probe = None;
                    Some(now.saturating_duration_since(sent))
                }
                _ => None,
            },
        };
        if let Some(rtt) = sample {
            self.rtt.sample(rtt);
        }
    }

    fn ts_clock(&self, now: Instant, ts: Timestamps) -> u32 {
        ((now.total_micros() / 1000) as u32).wrapping_add(ts.offset)
    }

    /// The ACK of the fifth step, from ESTABLISHED on.
    fn process_ack(&mut self, now: Instant, seg: &TcpRepr, ack: SeqNumber) {
        let fin_seq = self.fin_seq();
        let (una_before, sacked_before) = (self.snd_una, self.scoreboard.sacked_bytes());
        // RFC 8985 §6.2 step 4: the D-SACK round ends once SND.UNA reaches
        // it. An undo record that fell 2^30 behind is stale (and its
        // sequence numbers would soon compare the wrong way).
        if self.dsack_round.is_some_and(|round| self.snd_una >= round) {
            self.dsack_round = None;
        }
        if self
            .undo
            .as_ref()
            .is_some_and(|u| span(self.snd_una, u.marker) > 1 << 30)
        {
            self.undo = None;
        }
        let dsack = if self.sack {
            Self::dsack_block(seg, ack)
        } else {
            None
        };
        if let Some((left, right)) = dsack {
            self.on_dsack(left, right);
            self.try_undo();
        }
        // SACK blocks update the scoreboard first (RFC 6675 §4).
        if self.sack {
            for &(left, right) in seg.sack_ranges.iter().flatten() {
                let (l, r) = (SeqNumber(left), SeqNumber(right));
                if l >= self.snd_una && r <= self.snd_max && l < r {
                    self.scoreboard.add(l, r, now);
                }
            }
        }
        let window = usize::from(seg.window_len) << self.snd_wscale;
        if ack > self.snd_una {
            // SYN and FIN occupy a sequence number but no buffer byte.
            let mut acked = span(ack, self.snd_una);
            let fin_acked = fin_seq.is_some_and(|f| ack > f);
            if fin_acked {
                acked -= 1;
            }
            let freed = self.send_buf.dequeue_allocated(acked);
            self.ack_sample(now, seg, ack);
            self.snd_una = ack;
            if self.snd_nxt < ack {
                self.snd_nxt = ack;
            }
            self.scoreboard.advance(ack);
            self.rexmit_log.advance(ack);
            // A backed-off RTO stays until a new sample (RFC 9293 §3.8.2,
            // MUST-19; Karn): `ack_sample` above ends it when there is one.
            // RFC 6582 §3.2: past `recover` (RFC 6675 §5.1 with SACK: at
            // or past RecoveryPoint).
            if self
                .recover_mark
                .is_some_and(|m| ack > m || (self.sack && ack >= m))
            {
                self.recover_mark = None;
            }
            self.timeouts = 0;
            self.persist_backoff = 0;
            if freed > 0 {
                self.events.insert(Events::WRITABLE);
            }
            match self.recovery {
                Some(recover) if ack >= recover => {
                    // Full acknowledgement: recovery ends (RFC 6582 §3.2 step 3).
                    self.recovery = None;
                    // RFC 8985 §6.2 step 4: after 16 recoveries without a
                    // D-SACK the reordering window shrinks back.
                    if self.reo_wnd_persist > 0 {
                        self.reo_wnd_persist -= 1;
                        if self.reo_wnd_persist == 0 {
                            self.reo_wnd_mult = 1;
                        }
                    }
                    self.rexmit_log.clear();
                    if self.sack {
                        // RFC 6675 §5: the next loss may start recovery at
                        // once, even at SND.UNA = RecoveryPoint; only a
                        // timeout keeps a mark (§5.1).
                        self.recover_mark = None;
                    }
                    self.dupacks = 0;
                    let flight = span(self.snd_max, self.snd_una);
                    // NewReno deflates the window its duplicate ACKs
                    // inflated (RFC 6582 §3.2 step 6). SACK recovery never
                    // inflated it: cwnd stays ssthresh, as RFC 6675 §5 set
                    // it (Linux's tcp_end_cwnd_reduction). Deflating to
                    // the flight here would cut again whenever the flight
                    // happens to be small at the ACK that ends recovery
                    // (one ACK of a received batch, before the refill).
                    if self.cwnd_spared.take().is_none() && !self.sack {
                        self.cc.on_recovery_exit(flight);
                    }
                }
                Some(_) => {
                    // Partial acknowledgement: the next hole was lost too
                    // (RFC 6582 §3.2 step 4; RFC 6675 keeps going through
                    // holes in dispatch).
                    if !self.sack {
                        self.rexmit_una = true;
                        // Deflate: the window inflation of the duplicate
                        // ACKs so far goes, one segment's worth stays
                        // (RFC 6582 §3.2 step 4: "deflate the congestion
                        // window by the amount of new data acknowledged ...
                        // add back SMSS bytes").
                        self.dupacks = self.dupacks.min(DUPACK_THRESHOLD + 1);
                    }
                }
                None => {
                    self.dupacks = 0;
                    let flight = span(self.snd_max, self.snd_una);
                    self.cc.on_ack(now, freed, self.rtt.srtt(), flight);
                }
            }
            // The retransmission timer restarts for what is still out
            // (RFC 6298 §5.3), or stops (§5.2).
            if self.snd_una == self.snd_max {
                self.rto_at = None;
                self.unacked_since = None;
            } else {
                self.rto_at = Some(now + self.rtt.rto());
                self.unacked_since = Some(now);
            }
            self.tlp_outstanding = false;
            self.arm_tlp(now);
            if fin_acked {
                self.our_fin_acked(now);
            }
        } else if ack == self.snd_una
            && seg.payload.is_empty()
            && seg.control == TcpControl::None
            && self.snd_max > self.snd_una
            && if self.sack {
                self.scoreboard.sacked_bytes() > sacked_before
            } else {
                window == self.snd_wnd
            }
        {
            // A duplicate ACK: with SACK, RFC 6675 §2's definition (it
            // SACKs new data; the window may change, as a receiver holding
            // out-of-order data shrinks it); without, RFC 5681 §2's (same
            // window).
            self.dupacks += 1;
            if self.recovery.is_none()
                && self.dupacks == DUPACK_THRESHOLD
                && self.recover_mark.is_none()
            {
                self.enter_recovery(now);
            }
            // In NewReno recovery each further duplicate inflates the window
            // by one MSS (RFC 5681 §3.2 step 4): see `send_window_limit`.
        }
        if self.sack && self.snd_max > self.snd_una {
            self.rack_detect(now);
            // RFC 6675 §5: recovery also starts when SACK shows the segment
            // at SND.UNA lost, whether or not three ACKs counted as
            // duplicates (data on them, or lost ACKs); and RFC 8985 §6.2:
            // when RACK's time test does.
            self.start_recovery_if_lost(now);
            // A retransmission overtaken by DupThresh worth of later data
            // was lost again: it may go once more, now, not after an RTO.
            if self.recovery.is_some() || self.repairing_after_timeout() {
                // RACK's time test (RFC 8985 §6.2): an ACK with news 5/4 of
                // an RTT after a retransmission went should have covered it.
                let news = ack > una_before || self.scoreboard.sacked_bytes() > sacked_before;
                let overdue = match (news, self.rtt.srtt()) {
                    (true, Some(srtt)) => now.checked_sub(srtt + srtt / 4),
                    _ => None,
                };
                self.rexmit_log
                    .forget_lost(&self.scoreboard, self.send_mss, overdue);
            }
        }
        self.resolve_mtu_probe();
        // After loss detection: a recovery this ACK started has cut cwnd
        // for the probe's loss too, and ended its episode.
        self.tlp_detect(now, seg, ack, una_before, dsack);
        // Window update (RFC 9293 §3.10.7.4, fifth step), and, as Linux
        // does, from any ACK of new data: the peer sends its ACKs in order,
        // so that window is its newest even when the segment's SEQ is older
        // than SND.WL1 (a retransmission). Without this, the right edge
        // would move with SND.UNA over the old window, past the peer's.
        if ack > una_before
            || self.snd_wl1 < seg.seq_number
            || (self.snd_wl1 == seg.seq_number && self.snd_wl2 <= ack)
        {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seg.seq_number;
            self.snd_wl2 = ack;
            if window > 0 {
                self.persist_at = None;
                if was_zero {
                    self.persist_backoff = 0;
                }
            }
        }
    }

    /// RACK's reordering window (RFC 8985 §6.2 step 4): `reo_wnd_mult`
    /// quarters of the path's minimum RTT, never more than SRTT. `None`
    /// before an RTT sample.
    fn reo_wnd(&self) -> Option<std::time::Duration> {
        let srtt = self.rtt.srtt()?;
        Some(((self.rtt.min_rtt().unwrap_or(srtt) / 4) * self.reo_wnd_mult).min(srtt))
    }

    /// The ACK's first SACK block, if it is a D-SACK (RFC 2883 §4): it lies
    /// below the cumulative ACK, or inside the second block. It reports
    /// data that arrived twice, not new data.
    fn dsack_block(seg: &TcpRepr, ack: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let (l, r) = seg.sack_ranges[0].map(|(l, r)| (SeqNumber(l), SeqNumber(r)))?;
        if l >= r {
            return None;
        }
        let inside_second =
            seg.sack_ranges[1].is_some_and(|(l2, r2)| SeqNumber(l2) <= l && r <= SeqNumber(r2));
        (l < ack || inside_second).then_some((l, r))
    }

    /// A D-SACK for `left..right` (RFC 2883 §5): the segments it covers
    /// were received twice, so a retransmission of them was not needed.
    /// Widens RACK's reordering window once per round trip (RFC 8985 §6.2
    /// step 4) and counts towards undoing the response that sent them.
    fn on_dsack(&mut self, left: SeqNumber, right: SeqNumber) {
        self.spurious.0 += 1;
        // A loss probe's copy coming back twice says nothing about
        // reordering (Linux's FLAG_DSACK_TLP).
        let probe_copy = self
            .tlp_episode
            .and_then(|e| e.resent)
            .is_some_and(|(start, end)| left < end && start < right);
        if self.dsack_round.is_none() && !probe_copy {
            self.dsack_round = Some(self.snd_max);
            self.reo_wnd_mult = (self.reo_wnd_mult + 1).min(REO_WND_MULT_MAX);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
        if let Some(undo) = self
            .undo
            .as_mut()
            .filter(|u| left >= u.marker && right <= u.high)
        {
            let segments = span(right, left).div_ceil(self.send_mss.max(1)).max(1);
            undo.retrans = undo.retrans.saturating_sub(segments as u32);
        }
    }

    /// Undoes the last congestion response once a D-SACK has shown every
    /// retransmission it made to be a duplicate: the loss was reordering
    /// or a delay, not congestion (RFC 3708 §3 detection; the response is
    /// Linux's `tcp_try_undo_dsack`: cwnd and ssthresh back to at least
    /// what they were). The recovery or the timeout's go-back ends with it
    /// (every hole it repaired had arrived already): sending resumes at
    /// SND.MAX (RFC 4015 §2), and a hole found lost after this starts a
    /// new recovery, with its own cut, on this very ACK.
    fn try_undo(&mut self) {
        if let Some(undo) = self.undo.take_if(|u| u.any && u.retrans == 0) {
            self.cc.undo(&undo.prior);
            self.spurious.1 += 1;
            self.recovery = None;
            self.recover_mark = None;
            self.rexmit_log.clear();
            self.rexmit_una = false;
            self.cwnd_spared = None;
            self.snd_nxt = self.snd_max;
        }
    }

    /// RFC 8985 §7.4.2: decides a loss probe's episode once the peer has
    /// acknowledged up to where it ended. A probe of new data, or one whose
    /// copy the peer D-SACKs (the original had arrived), found no loss. An
    /// ACK beyond the end with no such D-SACK means the original was lost
    /// and the probe repaired it: that loss is congestion like any other,
    /// and cwnd is cut now (Linux's `tcp_process_tlp_ack`).
    ///
    /// A peer that does not send D-SACKs answers the second copy with a
    /// plain duplicate ACK instead: that too ends the episode without a
    /// loss (§7.4.2's last rule).
    fn tlp_detect(
        &mut self,
        now: Instant,
        seg: &TcpRepr,
        ack: SeqNumber,
        una_before: SeqNumber,
        dsack: Option<(SeqNumber, SeqNumber)>,
    ) {
        let Some(ProbeEpisode { resent, end }) = self.tlp_episode else {
            return;
        };
        if ack < end {
            return;
        }
        let Some((start, stop)) = resent else {
            self.tlp_episode = None;
            return;
        };
        let plain_dupack =
            ack == una_before && seg.payload.is_empty() && seg.sack_ranges[0].is_none();
        if dsack.is_some_and(|(l, r)| l < stop && start < r) || plain_dupack {
            self.tlp_episode = None;
        } else if ack > end {
            if self.recovery.is_none() && !self.repairing_after_timeout() {
                // The probe's copy is this response's one retransmission
                // (start_undo counts it while the episode is open), below
                // SND.UNA by now.
                self.start_undo();
                if let Some(undo) = self.undo.as_mut() {
                    undo.any = true;
                    undo.marker = start;
                }
                self.cc
                    .on_congestion_event(now, span(self.snd_max, self.snd_una));
                self.tlp_recoveries += 1;
            }
            self.tlp_episode = None;
        }
    }

    /// Starts the record of a congestion response about to be made.
    fn start_undo(&mut self) {
        // A loss probe's copy whose episode is still open is a
        // retransmission of this response too (Linux seeds undo_retrans
        // with retrans_out): its D-SACK must not cancel one for a segment
        // that was really lost. A probe of new data is no copy.
        let (retrans, high) = match self.tlp_episode.and_then(|e| e.resent) {
            Some((_, end)) => (1, end),
            None => (0, self.snd_una),
        };
        let fresh = Undo {
            prior: self.cc.clone(),
            marker: self.snd_una,
            retrans,
            any: false,
            high,
        };
        // Reused from one episode to the next (an undo frees it).
        match self.undo.as_mut() {
            Some(undo) => **undo = fresh,
            None => self.undo = Some(Box::new(fresh)),
        }
    }

    /// Data `start..end` arrived twice: the next ACK reports it as a
    /// D-SACK (RFC 2883 §4). Several duplicates before that ACK make one
    /// block where they touch; otherwise the first is reported (one
    /// D-SACK per ACK, as Linux's `tcp_dsack_extend`).
    fn note_duplicate(&mut self, start: SeqNumber, end: SeqNumber) {
        self.dsack_out = Some(match self.dsack_out {
            Some((l, r)) if start <= r && l <= end => (l.min(start), r.max(end)),
            Some(first) => first,
            None => (start, end),
        });
    }

    /// DSACKs received and congestion responses undone since the last call.
    pub fn take_spurious(&mut self) -> (u32, u32) {
        std::mem::take(&mut self.spurious)
    }

    /// RACK's loss detection for holes (RFC 8985 §6.2), run on every ACK and
    /// when its reordering timer fires: moves `rack_edge` up to the highest
    /// SACKed range reported a reordering window ago, and arms the timer
    /// for the next range that will be.
    fn rack_detect(&mut self, now: Instant) {
        self.rack_at = None;
        if self.rack_edge.is_some_and(|e| e <= self.snd_una) || self.scoreboard.is_empty() {
            self.rack_edge = None;
        }
        let Some(reo) = self.reo_wnd() else {
            return;
        };
        let deadline = now.checked_sub(reo).unwrap_or(Instant::ZERO);
        if let Some(edge) = self.scoreboard.reported_by(deadline) {
            if edge > self.snd_una && self.rack_edge.is_none_or(|e| e < edge) {
                self.rack_edge = Some(edge);
            }
        }
        self.rack_at = self.scoreboard.next_report_after(deadline).map(|t| t + reo);
    }

    /// Every unSACKed byte below this is lost: RFC 6675 §4 IsLost or RACK's
    /// time test, whichever reaches higher; after a timeout, at least
    /// everything sent before it (RFC 6298 §5.4 sends it all again; Linux's
    /// `tcp_enter_loss` marks it lost), so that `pipe` counts only what
    /// went since.
    fn lost_edge(&self) -> Option<SeqNumber> {
        let by_count = self.scoreboard.lost_below(self.send_mss);
        let by_time = self.rack_edge.filter(|&e| e > self.snd_una);
        let by_timeout = self
            .recover_mark
            .filter(|&m| self.repairing_after_timeout() && m > self.snd_una);
        [by_count, by_time, by_timeout]
            .into_iter()
            .flatten()
            .reduce(SeqNumber::max)
    }

    /// Starts SACK recovery when a hole is lost and no recover mark stands
    /// in the way (RFC 6675 §5, §5.1).
    fn start_recovery_if_lost(&mut self, now: Instant) {
        if self.recovery.is_none() && self.recover_mark.is_none() && self.lost_edge().is_some() {
            self.enter_recovery(now);
        }
    }

    /// RFC 5681 §3.2 / RFC 6675 §5: three duplicate ACKs (or SACK showing
    /// as much) mean the segment at SND.UNA was lost.
    /// A lost MTU probe alone leaves cwnd as it was (RFC 8899 §3 item 7).
    fn enter_recovery(&mut self, now: Instant) {
        self.tlp_at = None;
        self.recover_mark = Some(self.snd_max);
        let flight = span(self.snd_max, self.snd_una);
        self.recovery = Some(self.snd_max);
        self.cwnd_spared = self.mtu_probe_alone_lost();
        if self.cwnd_spared.is_none() {
            self.start_undo();
            self.cc.on_congestion_event(now, flight);
        }
        // This recovery's cut covers the probe's loss too.
        self.tlp_episode = None;

        self.rexmit_log.clear();
        self.rexmit_una = true;
        self.rtt_probe = None;
    }

    /// A timeout's go-back is under way with SACK: the old SND.MAX (the
    /// recover mark the timeout set) is not yet acknowledged, and no
    /// recovery may start before it is (RFC 6675 §5.1).
    fn repairing_after_timeout(&self) -> bool {
        self.sack && self.recovery.is_none() && self.recover_mark.is_some()
    }

    /// The MTU probe on its way, if it is all that is lost (RFC 6675's
    /// IsLost, RACK, or NewReno's segment at SND.UNA): its range.
    fn mtu_probe_alone_lost(&self) -> Option<(SeqNumber, SeqNumber)> {
        let p = self.mtu_search.as_ref()?.probe()?;
        let alone = if self.sack {
            let edge = self.lost_edge()?;
            let first = self.scoreboard.next_unsacked(self.snd_una);
            let after = self.scoreboard.next_unsacked(p.end).unwrap_or(self.snd_max);
            first == Some(p.start) && after >= edge
        } else {
            self.snd_una == p.start
        };
        alone.then_some((p.start, p.end))
    }

    /// The MTU probe on its way arrived, acknowledged or SACKed: its size
    /// is the segment size now (RFC 8899 §5.2). (A lost one is given up
    /// when its data is sent again, in [`Connection::sent`].)
    fn resolve_mtu_probe(&mut self) {
        let Some(search) = self.mtu_search.as_mut() else {
            return;
        };
        let Some(p) = search.probe() else {
            return;
        };
        // Any of it acknowledged means the frame arrived (the peer may
        // have trimmed it).
        let arrived = self.snd_una > p.start
            || self.scoreboard.sacked_in(p.start, p.end) >= span(p.end, p.start);
        if !arrived {
            return;
        }
        let size = search.probe_acked();
        self.mtu_probes.0 += 1;
        if size > self.send_mss {
            tracing::debug!(remote = %self.remote, mss = size, "path MTU probe acknowledged");
            self.send_mss = size;
            self.cc.set_mss(size);
        }
    }

    /// A loss in this recovery that is not the MTU probe's first: the
    /// reduction the probe's loss alone did not make is made now (RFC 6675
    /// §5 step 4.2: once per recovery). A hole outside the probe's data,
    /// or inside the part already sent again (lost once more: that is
    /// congestion), counts.
    fn loss_beyond_probe(&mut self, now: Instant, seq: SeqNumber) {
        if self
            .cwnd_spared
            .is_some_and(|(start, end)| seq < start || seq >= end)
        {
            self.cwnd_spared = None;
            let flight = span(self.snd_max, self.snd_una);
            self.start_undo();
            self.cc.on_congestion_event(now, flight);
        }
    }

    /// The lost MTU probe's data was sent again up to `to`: what remains
    /// spared is what lies above.
    fn probe_resent(&mut self, to: SeqNumber) {
        if let Some((start, _)) = self.cwnd_spared.as_mut() {
            *start = (*start).max(to);
        }
    }

    /// A retransmission may start at `seq`: at SND.UNA always (a window
    /// probe at worst), elsewhere only inside the peer's window (as
    /// Linux's `tcp_retransmit_skb`).
    fn in_peer_window(&self, seq: SeqNumber) -> bool {
        seq == self.snd_una || seq < self.snd_una + self.snd_wnd
    }

    /// An MTU probe goes out now if the search wants one (RFC 8899 §5.2:
    /// probes are sent as data) and nothing stands in its way: no loss
    /// being repaired, and room in both windows and data enough for the
    /// probe and [`DUPACK_THRESHOLD`] segments behind it, whose ACKs show
    /// its loss without a timeout (Linux's `tcp_mtu_probe` asks the same).
    fn send_mtu_probe<F>(&mut self, now: Instant, emit: &mut F) -> Result<bool, TxError>
    where
        F: FnMut(&TcpRepr) -> Result<(), TxError>,
    {
        let Some(search) = self.mtu_search.as_mut() else {
            return Ok(false);
        };
        if !matches!(self.state, State::Established | State::CloseWait)
            || self.recovery.is_some()
            || self.dupacks > 0
            || self.snd_nxt != self.snd_max
            || self.fin_queued
        {
            return Ok(false);
        }
        let Some(size) = search.probe_size(now).filter(|&s| s > self.send_mss) else {
            return Ok(false);
        };
        let need = size + DUPACK_THRESHOLD as usize * self.send_mss;
        let room = self.send_window_limit().distance_from(self.snd_max).max(0) as usize;
        if self.unsent() < need || room < need {
            return Ok(false);
        }
        // The probe must be one frame of `size`: the send ring's bytes from
        // here must not wrap before that (else it waits a dispatch).
        let offset = span(self.snd_max, self.snd_una);
        if self.send_buf.get_allocated(offset, size).len() < size {
            return Ok(false);
        }
        let seq = self.snd_max;
        let n = self.emit_segment(now, seq, None, false, size, emit)?;
        if n > 0 {
            if let Some(search) = self.mtu_search.as_mut() {
                search.probe_sent(seq, seq + n, size);
            }
        }
        Ok(n > 0)
    }

    /// The sequence number of our FIN, once CLOSE was called.
    fn fin_seq(&self) -> Option<SeqNumber> {
        self.fin_queued.then(|| self.snd_una + self.send_buf.len())
    }

    fn our_fin_acked(&mut self, now: Instant) {
        match self.state {
            State::FinWait1 => {
                self.state = State::FinWait2;
                if self.orphaned {
                    self.close_at = self.cfg.fin_wait_2_timeout.map(|t| now + t);
                }
            }
            State::Closing => self.enter_time_wait(now),
            State::LastAck => self.enter_closed(None),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.close_at = Some(now + self.cfg.time_wait);
        self.rto_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
    }

    /// Seventh and eighth steps: data and FIN into the receive buffer,
    /// through the reassembly bookkeeping for out-of-order arrivals.
    fn receive_text(&mut self, now: Instant, seg: &TcpRepr) {
        let mut payload = seg.payload;
        let mut seq = seg.seq_number;
        // Trim what we already have (RFC 9293: "the segment may be
        // trimmed").
        if seq < self.rcv_nxt {
            let skip = span(self.rcv_nxt, seq).min(payload.len());
            if self.sack && skip > 0 {
                // Its front arrived twice (RFC 2883 §4).
                self.note_duplicate(seq, seq + skip);
            }
            payload = &payload[skip..];
            seq += skip;
        }
        let offset = span(seq, self.rcv_nxt);
        // Trim what does not fit the buffer: the free space, or what we
        // already offered (a window is never taken back).
        let promised = self.rcv_adv.distance_from(self.rcv_nxt).max(0) as usize;
        let room = self.rcv_free().max(promised).saturating_sub(offset);
        let truncated = payload.len() > room;
        if truncated {
            payload = &payload[..room];
        }
        let need = self.recv_buf.len() + offset + payload.len();
        if need > self.recv_buf.capacity() && !payload.is_empty() {
            if self.memory_pressure && offset > 0 {
                // Over budget, out-of-order data goes first (the peer
                // sends it again); in-order data was promised and gets in.
                self.ack_now = true;
                self.rejected = Some(DropReason::TcpMemoryPressure);
                return;
            }
            grow_for(&mut self.recv_buf, need, self.cfg.recv_buffer);
        }
        let was_out_of_order = !self.assembler.is_empty();
        if self.sack && offset > 0 && !payload.is_empty() {
            // Out-of-order data we hold already arrived twice too (RFC 2883
            // §4: the D-SACK then lies inside the SACK block after it).
            let end = offset + payload.len();
            if self
                .assembler
                .ranges()
                .any(|(s, e)| s <= offset && end <= e)
            {
                self.note_duplicate(seq, seq + payload.len());
            }
        }
        if !payload.is_empty() {
            if self.assembler.add(offset, payload.len()).is_err() {
                if offset > 0 {
                    // Too many holes: drop it; the peer will send it again.
                    self.ack_now = true;
                    self.rejected = Some(DropReason::TcpReassemblyFull);
                    return;
                }
                // In-order data must always get in, or nothing ever would:
                // forget the out-of-order ranges (RFC 2018 §8 lets a
                // receiver renege; the sender keeps SACKed data until it is
                // cumulatively acknowledged) and take it.
                self.assembler.clear();
                let _ = self.assembler.add(0, payload.len());
            }
            self.recv_buf.write_unallocated(offset, payload);
            let ready = self.assembler.remove_front();
            if ready > 0 {
                self.recv_buf.enqueue_unallocated(ready);
                self.rcv_nxt += ready;
                self.events.insert(Events::READABLE);
            }
        }
        if seg.control == TcpControl::Fin && !truncated {
            self.fin_at = Some(seg.seq_number + seg.payload.len());
        }
        // Acknowledgement policy (RFC 9293 §3.8.6.3, RFC 5681 §4.2): at once
        // for out-of-order data or for data that fills a hole; otherwise
        // every second full-sized segment, or after the delayed-ACK timer.
        if offset > 0 || was_out_of_order || truncated {
            self.ack_now = true;
        } else {
            self.segments_unacked += 1;
            if self.segments_unacked >= 2 {
                self.ack_now = true;
            } else if self.delayed_ack_at.is_none() {
                self.delayed_ack_at = Some(now + self.cfg.delayed_ack);
            }
        }
        if self.fin_at == Some(self.rcv_nxt) && self.assembler.is_empty() {
            self.fin_at = None;
            self.rcv_nxt += 1;
            self.ack_now = true;
            self.events.insert(Events::PEER_CLOSED | Events::READABLE);
            match self.state {
                State::Established => self.state = State::CloseWait,
                State::FinWait1 => {
                    // Simultaneous close: our FIN is not acknowledged yet.
                    self.state = State::Closing;
                }
                State::FinWait2 => self.enter_time_wait(now),
                _ => {}
            }
        }
    }

    // ------------------------------------------------------------------
    // Timers and output
    // ------------------------------------------------------------------

    /// The next time [`Connection::dispatch`] has work; `now` or earlier
    /// when it has something to send already.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if self.rst_pending.is_some() {
            return Some(now);
        }
        if self.state == State::Closed {
            return None;
        }
        if self.ack_now || self.can_send_now() {
            return Some(now);
        }
        [
            self.rto_at,
            self.tlp_at,
            self.rack_at,
            self.trim_at(),
            self.delayed_ack_at,
            self.persist_at,
            self.keepalive_at,
            self.close_at,
            self.user_timeout_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn user_timeout_at(&self) -> Option<Instant> {
        Some(self.unacked_since? + self.cfg.user_timeout?)
    }

    /// Whether a segment would go out right now without any timer.
    fn can_send_now(&self) -> bool {
        match self.state {
            State::SynSent | State::SynReceived => self.snd_nxt == self.iss,
            State::Closed | State::TimeWait => false,
            _ => self.rexmit_una || self.next_data().is_some(),
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if self.trim_at().is_some_and(|t| t <= now) {
            self.trim();
        }
        if self.close_at.is_some_and(|t| t <= now) {
            self.close_at = None;
            match self.state {
                State::TimeWait => self.enter_closed(None),
                // An orphan's FIN-WAIT-2 ran out: drop quietly (Linux sends
                // a RST; the peer has stopped talking to us anyway).
                State::FinWait2 => self.enter_closed(None),
                _ => {}
            }
            return;
        }
        if self.user_timeout_at().is_some_and(|t| t <= now) {
            self.rst_pending = Some((self.snd_max, None));
            self.enter_closed(Some(Error::TimedOut));
            return;
        }
        if self.delayed_ack_at.is_some_and(|t| t <= now) {
            self.delayed_ack_at = None;
            self.ack_now = true;
        }
        let probe_first = self
            .tlp_at
            .is_some_and(|t| t <= now && self.rto_at.is_none_or(|rto| t <= rto));
        if self.rto_at.is_some_and(|t| t <= now) && !probe_first {
            self.tlp_at = None;
            self.on_retransmit_timeout(now);
        }
        if self.rack_at.is_some_and(|t| t <= now) {
            self.rack_detect(now);
            if self.snd_max > self.snd_una && self.state.sends_data() {
                self.start_recovery_if_lost(now);
            }
        }
        if self.tlp_at.is_some_and(|t| t <= now) {
            self.tlp_at = None;
            self.tlp_due = true;
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            self.persist_backoff += 1;
            // A window probe: sent in dispatch as a segment below SND.UNA.
            self.probe_due = true;
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            if let Some(k) = self.cfg.keepalive {
                if self.snd_max > self.snd_una || self.rto_at.is_some() {
                    // Data is outstanding: the retransmission timer (and R2)
                    // watches the peer; keep-alives are for an idle
                    // connection only (RFC 9293 §3.8.4, MUST-26).
                    self.keepalive_at = Some(now + k.idle);
                    self.keepalive_probes = 0;
                    return;
                }
                if self.keepalive_probes >= k.probes {
                    self.enter_closed(Some(Error::TimedOut));
                    return;
                }
                self.keepalive_probes += 1;
                self.probe_due = true;
                self.keepalive_at = Some(now + k.interval);
            } else {
                self.keepalive_at = None;
            }
        }
    }

    /// RFC 6298 §5.4–5.7 and RFC 5681 §3.1: retransmit from SND.UNA with a
    /// one-segment window, back the timer off.
    fn on_retransmit_timeout(&mut self, now: Instant) {
        self.rto_at = None;
        let limit = match self.state {
            State::SynSent => self.cfg.syn_retries,
            State::SynReceived => self.cfg.synack_retries,
            _ => self.cfg.max_retransmits,
        };
        if self.timeouts >= limit {
            if self.state.is_synchronized() {
                self.rst_pending = Some((self.snd_max, None));
            }
            self.enter_closed(Some(Error::TimedOut));
            return;
        }
        self.timeouts += 1;
        self.rto_count += 1;
        tracing::debug!(
            remote = %self.remote,
            state = %self.state,
            timeouts = self.timeouts,
            una = self.snd_una.0,
            nxt = self.snd_nxt.0,
            max = self.snd_max.0,
            in_recovery = self.recovery.is_some(),
            tlp_outstanding = self.tlp_outstanding,
            cwnd = self.cc.window(),
            pipe = self.pipe(),
            sacked = self.scoreboard.sacked_bytes(),
            "retransmission timeout"
        );
        self.rtt.backoff();
        self.rtt_probe = None;
        match self.state {
            State::SynSent | State::SynReceived => self.snd_nxt = self.iss,
            _ => {
                let flight = span(self.snd_max, self.snd_una);
                self.suspect_black_hole(flight);
                self.cwnd_spared = None;
                // A timeout during recovery, or a second in a row, extends
                // the response under way: undoing it means going back to
                // before the first.
                if self.recovery.is_none() && self.timeouts == 1 {
                    self.start_undo();
                }
                self.tlp_episode = None;
                self.cc.on_retransmit_timeout(now, flight);
                self.recovery = None;
                self.rexmit_log.clear();
                self.rack_edge = None;
                self.rack_at = None;
                // RFC 6582 §3.2 step 1 (and §4.1): duplicate ACKs for data
                // sent before the timeout must not start another fast
                // retransmit and halve the window again.
                self.recover_mark = Some(self.snd_max);
                self.dupacks = 0;
                self.rexmit_una = false;
                // RFC 6675 §5.1: the go-back from SND.UNA skips what the
                // peer SACKed (as Linux does), so one timeout does not resend
                // a whole window the peer holds. A receiver may renege on
                // SACKed data (RFC 2018 §8; ours does when reassembly is
                // full): a second timeout in a row forgets the scoreboard.
                if self.timeouts > 1 {
                    self.scoreboard.clear();
                }
                self.snd_nxt = self.snd_una;
            }
        }
    }

    /// Emits every segment that is due, in order, through `emit`; stops at
    /// the first transmit error (the rest go on the next call).
    pub fn dispatch<F>(&mut self, now: Instant, mut emit: F) -> Result<(), TxError>
    where
        F: FnMut(&TcpRepr) -> Result<(), TxError>,
    {
        if let Some((seq, ack)) = self.rst_pending {
            let rst = self.reset_reply(seq, ack);
            emit(&rst)?;
            self.rst_pending = None;
            return Ok(());
        }
        if self.state == State::Closed {
            return Ok(());
        }
        self.on_timers(now);
        if self.rst_pending.is_some() || self.state == State::Closed {
            return self.dispatch(now, emit);
        }
        match self.state {
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    let syn = self.syn_repr(now);
                    emit(&syn)?;
                    if self.state == State::SynReceived {
                        let edge = self.rcv_nxt + usize::from(syn.window_len);
                        self.rcv_adv = self.rcv_adv.max(edge);
                        self.last_ack_sent = self.rcv_nxt;
                    }
                    self.sent(now, self.iss, 1, false);
                }
                // Before the handshake completes there is nothing to
                // acknowledge with a bare ACK (the SYN-ACK carries it).
                self.ack_now = false;
                self.delayed_ack_at = None;
                return Ok(());
            }
            _ => {}
        }
        let mut sent_any = false;
        // Probes (zero window, keepalive): one segment below SND.UNA that
        // the peer must acknowledge (RFC 9293 §3.8.6.1, RFC 1122
        // §4.2.3.6); Linux's form.
        if std::mem::take(&mut self.probe_due) {
            let mut probe = self.ack_repr(now);
            probe.seq_number = self.snd_una - 1;
            emit(&probe)?;
            self.ack_sent();
            sent_any = true;
            if self.snd_wnd == 0 && self.persist_backoff > 0 {
                self.arm_persist(now);
            }
        }
        // A tail loss probe (RFC 8985 §7.3): one new segment if the peer's
        // window allows, else the last one sent again, so that the peer's
        // ACK (with SACK) shows what a lost tail or a lost ACK hid; the
        // RTO is armed anew behind it.
        if std::mem::take(&mut self.tlp_due) && self.snd_max > self.snd_una {
            let new_ok = self.unsent() > 0
                && span(self.snd_max, self.snd_una) + self.send_mss <= self.snd_wnd;
            let seq = if new_ok {
                self.snd_max
            } else {
                let last = span(self.snd_max, self.snd_una).min(self.send_mss);
                self.snd_max - last
            };
            let n = self.emit_probe(now, seq, &mut emit)?;
            if n > 0 {
                sent_any = true;
                self.loss_probes += 1;
                self.tlp_outstanding = true;
                let resent = (!new_ok).then_some((seq, seq + n));
                self.tlp_episode = Some(ProbeEpisode {
                    resent,
                    end: self.snd_max,
                });
                self.rto_at = Some(now + self.rtt.rto());
            }
        }
        // The first retransmission of a recovery (RFC 6675 §5 step 4.2,
        // RFC 6582 §3.2 step 2), or NewReno's after a partial ACK.
        if self.rexmit_una {
            let seq = self.snd_una;
            self.loss_beyond_probe(now, seq);
            let end = self.scoreboard.next_sacked(seq);
            let n = self.emit_data(now, seq, end, &mut emit)?;
            if n > 0 {
                sent_any = true;
                self.rexmit_log.record(seq, seq + n, self.snd_max, now);
                self.probe_resent(seq + n);
            }
            self.rexmit_una = false;
        }
        // SACK recovery (RFC 6675 §5 step C): while the pipe leaves room in
        // cwnd, NextSeg's rule 1, the lost holes not yet retransmitted;
        // then rule 2, new data, below.
        while self.recovery.is_some() && self.sack {
            let Some((hole, end)) = self.next_lost() else {
                break;
            };
            if !self.in_peer_window(hole) {
                break;
            }
            self.loss_beyond_probe(now, hole);
            if self.pipe() >= self.cc.window() {
                break;
            }
            let n = self.emit_data(now, hole, Some(end), &mut emit)?;
            if n == 0 {
                break;
            }
            self.rexmit_log.record(hole, hole + n, self.snd_max, now);
            self.probe_resent(hole + n);
            sent_any = true;
        }
        // After a timeout, RFC 6675 §5.1 starts no recovery before the old
        // SND.MAX is acknowledged; but a go-back retransmission that SACK
        // or RACK shows lost again goes once more now, while the pipe
        // leaves room in cwnd (as in Linux's Loss state), rather than
        // waiting for the next timeout. What the go-back has not reached
        // yet is left to it.
        while self.repairing_after_timeout() && self.pipe() < self.cc.window() {
            let Some((hole, end)) = self.next_lost() else {
                break;
            };
            if hole >= self.snd_nxt || !self.in_peer_window(hole) {
                break;
            }
            let n = self.emit_data(now, hole, Some(end.min(self.snd_nxt)), &mut emit)?;
            if n == 0 {
                break;
            }
            self.rexmit_log.record(hole, hole + n, self.snd_max, now);
            sent_any = true;
        }
        let high_before = self.snd_max;
        sent_any |= self.send_mtu_probe(now, &mut emit)?;
        while let Some(seq) = self.next_data() {
            // Going back over sent data after a timeout: stop where the
            // peer's SACKed data starts.
            let resend = seq < self.snd_max;
            let end = if resend {
                self.scoreboard.next_sacked(seq)
            } else {
                None
            };
            let n = self.emit_data(now, seq, end, &mut emit)?;
            if n == 0 {
                break;
            }
            if resend && self.repairing_after_timeout() {
                // Logged as recovery's are, so a go-back retransmission
                // lost again is found (above) and sent once more.
                self.rexmit_log.record(seq, seq + n, self.snd_max, now);
            }
            sent_any = true;
        }
        // New data went out: the probe timer restarts, for the whole
        // flight from its last segment (RFC 8985 §7.2: "after transmitting
        // new data"), so a timer armed for one segment (with the peer's
        // delayed ACK allowed for) does not stand for a larger flight.
        if self.snd_max > high_before {
            self.arm_tlp(now);
        }
        // Zero window with data waiting or outstanding and no timer that
        // would otherwise wake us: persist (a lost window update must not
        // hang the connection).
        let waiting = self.unsent() > 0 || self.snd_max > self.snd_una;
        if self.snd_wnd == 0 && waiting && self.persist_at.is_none() && self.rto_at.is_none() {
            self.arm_persist(now);
        }
        if self.ack_now && !sent_any {
            let ack = self.ack_repr(now);
            emit(&ack)?;
            self.ack_sent();
        }
        Ok(())
    }

    /// A tail loss probe for `seq`, outside the congestion window (RFC 8985
    /// §7.3 lets exactly one go).
    fn emit_probe<F>(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        emit: &mut F,
    ) -> Result<usize, TxError>
    where
        F: FnMut(&TcpRepr) -> Result<(), TxError>,
    {
        let before = self.snd_nxt;
        // A new segment is sent from SND.MAX as a retransmission would be:
        // sized by the MSS alone.
        self.snd_nxt = self.snd_nxt.max(seq);
        let end = (seq < self.snd_max).then_some(self.snd_max);
        let mss = self.send_mss;
        let n = self.emit_segment(now, seq, end.or(Some(seq + mss)), true, mss, emit)?;
        if n == 0 {
            self.snd_nxt = before;
        }
        Ok(n)
    }

    /// RFC 4821 §7.4: [`BLACK_HOLE_RTOS`] timeouts in a row with full-sized
    /// segments out: they may be too big for a hop that drops them without
    /// telling us. Fall back to [`BLACK_HOLE_MSS`] (the go-back after this
    /// timeout already uses it) and search for the largest size the path
    /// carries ([`PathMtuSearch`]).
    fn suspect_black_hole(&mut self, flight: usize) {
        if self.timeouts != BLACK_HOLE_RTOS
            || self.send_mss <= BLACK_HOLE_MSS
            || flight <= BLACK_HOLE_MSS
        {
            return;
        }
        tracing::debug!(
            remote = %self.remote,
            mss = self.send_mss,
            fallback = BLACK_HOLE_MSS,
            "path MTU black hole suspected"
        );
        let full = self.mtu_search.as_ref().map_or(self.send_mss, |s| s.full());
        self.mtu_search = Some(Box::new(PathMtuSearch::start(BLACK_HOLE_MSS, full)));
        self.black_holes += 1;
        self.send_mss = BLACK_HOLE_MSS;
        self.cc.set_mss(BLACK_HOLE_MSS);
    }

    /// Schedules the tail loss probe (RFC 8985 §7.2): with SACK, outside
    /// recovery, data in flight, at PTO = 2·SRTT (plus the peer's worst
    /// delayed ACK when one segment is out), never after the RTO.
    fn arm_tlp(&mut self, now: Instant) {
        self.tlp_at = None;
        if !self.sack
            || self.tlp_outstanding
            || self.tlp_episode.is_some()
            || self.recovery.is_some()
            || self.snd_max == self.snd_una
            || self.timeouts > 0
            || !self.state.sends_data()
        {
            return;
        }
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        let mut pto = srtt * 2;
        if span(self.snd_max, self.snd_una) <= self.send_mss {
            pto += TLP_DELAYED_ACK;
        }
        let pto = pto.max(TLP_MIN).min(self.rtt.rto());
        // Never after the RTO: a probe due then goes in its place (Linux's
        // `tcp_schedule_loss_probe`), so new data sent without ACKs cannot
        // push it past the timeout.
        let at = now + pto;
        self.tlp_at = Some(self.rto_at.map_or(at, |rto| at.min(rto)));
    }

    fn arm_persist(&mut self, now: Instant) {
        let base = self.rtt.rto();
        let backoff = base.saturating_mul(1 << self.persist_backoff.min(10));
        self.persist_at = Some(now + backoff.min(self.cfg.max_rto));
    }

    /// Bytes queued and not yet sent.
    fn unsent(&self) -> usize {
        let sent = span(self.snd_nxt, self.snd_una).min(self.send_buf.len());
        self.send_buf.len() - sent
    }

    /// RFC 6675 §4 SetPipe: the bytes in the network. Every unSACKed byte
    /// that is not lost counts once (it may still arrive), and every
    /// retransmitted one once more (its retransmission may). Lost bytes not
    /// yet sent again count nothing: counting them is what would stall
    /// recovery with `pipe >= cwnd` until the RTO.
    fn pipe(&self) -> usize {
        let lost_below = self
            .lost_edge()
            .map_or(self.snd_una, |e| e.max(self.snd_una).min(self.snd_max));
        let not_lost =
            span(self.snd_max, lost_below) - self.scoreboard.sacked_in(lost_below, self.snd_max);
        not_lost + self.rexmit_log.unsacked_bytes(&self.scoreboard)
    }

    /// RFC 6675 §4 NextSeg rule 1: the first lost hole (unSACKed, below the
    /// IsLost edge) not yet retransmitted in this recovery, as [start, end).
    fn next_lost(&self) -> Option<(SeqNumber, SeqNumber)> {
        let edge = self.lost_edge()?;
        let mut seq = self.snd_una;
        // Each pass skips one SACKed or one retransmitted range: bounded.
        loop {
            seq = self.scoreboard.next_unsacked(seq)?;
            if seq >= edge {
                return None;
            }
            if let Some(end) = self.rexmit_log.covering(seq) {
                seq = end;
                continue;
            }
            let end = [
                self.scoreboard.next_sacked(seq),
                self.rexmit_log.next_start(seq),
            ]
            .into_iter()
            .flatten()
            .fold(edge, SeqNumber::min);
            return Some((seq, end));
        }
    }

    /// How far new data may go: SND.UNA plus the smaller of the peer's
    /// window and the congestion window (inflated by duplicate ACKs in
    /// NewReno recovery, RFC 5681 §3.2 step 4).
    fn send_window_limit(&self) -> SeqNumber {
        let mut cwnd = self.cc.window();
        if self.recovery.is_some() && !self.sack {
            cwnd += self.dupacks.saturating_sub(DUPACK_THRESHOLD) as usize * self.send_mss;
        }
        if self.recovery.is_none() && self.dupacks > 0 {
            // Limited transmit (RFC 3042 §2): each of the first two
            // duplicate ACKs lets one new segment beyond cwnd go, so a
            // small window still gets the ACKs fast retransmit needs.
            cwnd += self.dupacks.min(DUPACK_THRESHOLD - 1) as usize * self.send_mss;
        }
        if self.recovery.is_some() && self.sack {
            // RFC 6675: limited by the pipe, not by SND.UNA + cwnd.
            let room = cwnd.saturating_sub(self.pipe());
            return self.snd_max
                + room.min(
                    self.snd_wnd
                        .saturating_sub(span(self.snd_max, self.snd_una)),
                );
        }
        self.snd_una + self.snd_wnd.min(cwnd)
    }

    /// The next data (or FIN) segment to send from SND.NXT, if the windows,
    /// Nagle and sender SWS avoidance (RFC 9293 §3.8.6.2.1) allow: its
    /// sequence number ([`Connection::emit_data`] sizes it).
    fn next_data(&self) -> Option<SeqNumber> {
        if !self.state.sends_data() {
            return None;
        }
        let mut seq = self.snd_nxt;
        // Skip what the peer has SACKed (after a timeout we go back over
        // ground it already holds).
        if seq < self.snd_max {
            if let Some(end) = self.scoreboard.sacked_end(seq) {
                seq = end;
            }
        }
        let offset = span(seq, self.snd_una);
        let queued = self.send_buf.len();
        let fin_seq = self.fin_seq();
        let fin_unsent = fin_seq.is_some_and(|f| seq <= f) && self.fin_queued;
        let unsent = queued.saturating_sub(offset);
        if unsent == 0 && !fin_unsent {
            return None;
        }
        let limit = self.send_window_limit();
        let room = limit.distance_from(seq).max(0) as usize;
        let len = unsent.min(room).min(self.send_mss);
        let fin = fin_unsent && len == unsent;
        // A bare FIN, like data, waits for room in both windows.
        if len == 0 && (!fin || room == 0) {
            return None;
        }
        // Sender SWS avoidance and Nagle, for new data only: a short
        // segment waits unless it is all there is and nothing is in flight
        // (Nagle) or Nagle is off; and it never goes out merely because
        // the window is small. Going back over sent data after a timeout is
        // a retransmission: it goes at once, whatever the window left.
        if len < self.send_mss && !fin && seq >= self.snd_max {
            let window_limited = len < unsent;
            // With nothing in flight no ACK will come to open the window
            // further: send what fits (the override of §3.8.6.2.1, at once).
            if window_limited && len < self.max_snd_wnd / 2 && self.snd_max > self.snd_una {
                return None;
            }
            if self.cfg.nagle && self.snd_max > self.snd_una && !window_limited {
                return None;
            }
        }
        Some(seq)
    }

    /// Sends one data segment starting at `seq` (new or retransmitted, and
    /// for a retransmission not past `end`, where the hole ends) and returns
    /// the sequence space it used (0 if nothing could be sent).
    fn emit_data<F>(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        end: Option<SeqNumber>,
        emit: &mut F,
    ) -> Result<usize, TxError>
    where
        F: FnMut(&TcpRepr) -> Result<(), TxError>,
    {
        self.emit_segment(now, seq, end, false, self.send_mss, emit)
    }

    /// [`Connection::emit_data`] in segments of at most `mss` (larger than
    /// the size in use for an MTU probe), and for a loss probe (`probe`)
    /// new data past the congestion window (never past the peer's).
    fn emit_segment<F>(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        end: Option<SeqNumber>,
        probe: bool,
        mss: usize,
        emit: &mut F,
    ) -> Result<usize, TxError>
    where
        F: FnMut(&TcpRepr) -> Result<(), TxError>,
    {
        // Bytes are found by their distance from SND.UNA: a SEQ below it
        // would label them wrongly.
        debug_assert!(seq >= self.snd_una, "segment at {seq:?} below SND.UNA");
        if seq < self.snd_una {
            return Ok(0);
        }
        let offset = span(seq, self.snd_una);
        let queued = self.send_buf.len();
        if offset > queued {
            return Ok(0);
        }
        let is_new = seq >= self.snd_max;
        if is_new && self.snd_max == self.snd_una {
            // Sending into an empty pipe: after an idle period longer than
            // the RTO the window restarts (RFC 5681 §4.1).
            self.cc.restart_after_idle(now, self.rtt.rto());
        }
        let base = self.ack_repr(now);
        // SACK blocks take room from the payload, as Linux's
        // tcp_current_mss: the segment must still fit the peer's MSS
        // (RFC 9293 §3.7.1 counts options against it).
        let sack_blocks = base.sack_ranges.iter().flatten().count();
        let sack_room = if sack_blocks > 0 {
            4 + 8 * sack_blocks
        } else {
            0
        };
        let mut max = mss.saturating_sub(sack_room).max(1);
        if is_new && !probe {
            let room = self.send_window_limit().distance_from(seq).max(0) as usize;
            max = max.min(room);
        } else {
            if let Some(end) = end {
                max = max.min(span(end, seq).max(1));
            }
            // A retransmission stays inside the peer's window while it has
            // room (one that shrank below a full segment gets what fits).
            let room = (self.snd_una + self.snd_wnd).distance_from(seq);
            if room > 0 && !probe {
                max = max.min(room as usize);
            }
        }
        let fin_seq = self.fin_seq();
        let (len, fin) = {
            let data = self.send_buf.get_allocated(offset, max);
            let len = data.len();
            let fin = fin_seq.is_some_and(|f| seq + len == f);
            if len == 0 && !fin {
                return Ok(0);
            }
            let mut repr = base;
            repr.seq_number = seq;
            repr.payload = data;
            repr.control = if fin {
                TcpControl::Fin
            } else if offset + len == queued {
                TcpControl::Psh
            } else {
                TcpControl::None
            };
            emit(&repr)?;
            (len, fin)
        };
        let used = len + usize::from(fin);
        self.ack_sent();
        self.sent(now, seq, used, !is_new);
        Ok(used)
    }

    /// Bookkeeping after a segment using `len` sequence numbers from `seq`
    /// went out.
    fn sent(&mut self, now: Instant, seq: SeqNumber, len: usize, retransmission: bool) {
        let end = seq + len;
        if retransmission || end <= self.snd_max {
            self.retransmits += 1;
            if let Some(undo) = self.undo.as_mut().filter(|u| seq >= u.marker) {
                undo.retrans += 1;
                undo.any = true;
                undo.high = undo.high.max(end);
            }
            if self.rtt_probe.is_some_and(|(s, _)| s >= seq && s < end) {
                self.rtt_probe = None;
            }
            // Whatever sends an MTU probe's data again (recovery, a
            // timeout's go-back, a loss probe) has given it up as lost.
            if let Some(search) = self.mtu_search.as_mut() {
                if search.probe().is_some_and(|p| seq < p.end && p.start < end) {
                    search.probe_lost();
                    self.mtu_probes.1 += 1;
                }
            }
        } else if self.rtt_probe.is_none() && self.timestamps.is_none() {
            self.rtt_probe = Some((seq, now));
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
        if self.unacked_since.is_none() {
            self.unacked_since = Some(now);
        }
        self.persist_at = None;
    }

    fn ack_sent(&mut self) {
        self.ack_now = false;
        self.dsack_out = None;
        self.delayed_ack_at = None;
        self.segments_unacked = 0;
        self.last_ack_sent = self.rcv_nxt;
        let wnd = self.advertised_window();
        let edge = self.rcv_nxt + (wnd << self.rcv_wscale);
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
    }

    /// The window field: free receive space, not shrinking the right edge
    /// already advertised, scaled (RFC 7323 §2.3). Receiver SWS avoidance
    /// (RFC 9293 §3.8.6.2.2, RFC 1122 §4.2.3.3): the right edge moves only
    /// by at least min(buffer / 2, MSS), never in small steps.
    fn advertised_window(&self) -> usize {
        let free = self.rcv_free();
        let promised = self.rcv_adv.distance_from(self.rcv_nxt).max(0) as usize;
        let step = (self.rcv_limit() / 2).min(usize::from(self.cfg.mss));
        let wnd = if free > promised && free - promised < step {
            promised
        } else {
            free.max(promised)
        };
        (wnd >> self.rcv_wscale).min(usize::from(u16::MAX))
    }

    /// Fields every segment after the handshake carries: ports, ACK,
    /// window, timestamps, SACK blocks.
    /// A pure ACK is exactly this: `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`,
    /// where SND.NXT is the highest sent (`snd_max`).
    fn ack_repr(&self, now: Instant) -> TcpRepr<'static> {
        let mut sack_ranges = [None; 3];
        let mut n = 0;
        // A D-SACK goes first (RFC 2883 §4), then the SACK blocks.
        if let Some((left, right)) = self.dsack_out {
            sack_ranges[0] = Some((left.0, right.0));
            n = 1;
        }
        if self.sack && !self.assembler.is_empty() {
            let to_seq = |(a, b): (usize, usize)| ((self.rcv_nxt + a).0, (self.rcv_nxt + b).0);
            let first = self.assembler.last_added();
            if let Some(r) = first {
                sack_ranges[n] = Some(to_seq(r));
                n += 1;
            }
            for r in self.assembler.ranges() {
                if n == sack_ranges.len() {
                    break;
                }
                if Some(r) != first {
                    sack_ranges[n] = Some(to_seq(r));
                    n += 1;
                }
            }
        }
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            control: TcpControl::None,
            seq_number: self.acceptable_seq(),
            ack_number: Some(self.rcv_nxt),
            window_len: self.advertised_window() as u16,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges,
            timestamp: self.timestamps.map(|ts| TcpTimestamp {
                tsval: self.ts_clock(now, ts),
                tsecr: ts.recent,
            }),
            urgent_pointer: None,
            payload: &[],
        }
    }

    /// The SEQ of a segment without text: SND.MAX, not the go-back
    /// pointer (after a timeout rewinds SND.NXT, an ACK from below what the
    /// peer already received would be unacceptable to it, answered by an
    /// ACK just as unacceptable to us, and so on for ever), but never past
    /// the peer's window (as Linux's `tcp_acceptable_seq`): after the window
    /// shrank or closed under data already sent, or when our data fills it
    /// to the octet, an ACK at SND.MAX is unacceptable to a receiver that
    /// applies RFC 9293 §3.10.7.4's table to the letter (RCV.NXT =<
    /// SEG.SEQ < RCV.NXT + RCV.WND), which drops it unread, and both sides
    /// can then wait on each other. The last octet of the window then, or
    /// SND.UNA when it is closed.
    fn acceptable_seq(&self) -> SeqNumber {
        let edge = self.snd_una + self.snd_wnd;
        if !self.state.is_synchronized() || edge > self.snd_max {
            self.snd_max
        } else if self.snd_wnd == 0 {
            self.snd_una
        } else {
            edge - 1
        }
    }

    /// SYN or SYN-ACK with our options.
    fn syn_repr(&self, now: Instant) -> TcpRepr<'static> {
        let synack = self.state == State::SynReceived;
        let ts = self.timestamps.map(|ts| TcpTimestamp {
            tsval: self.ts_clock(now, ts),
            tsecr: if synack { ts.recent } else { 0 },
        });
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            control: TcpControl::Syn,
            seq_number: self.iss,
            ack_number: synack.then_some(self.rcv_nxt),
            window_len: self.rcv_free().min(usize::from(u16::MAX)) as u16,
            window_scale: self.window_scaling.then_some(self.rcv_wscale),
            max_seg_size: Some(self.cfg.mss),
            sack_permitted: self.sack,
            sack_ranges: [None; 3],
            timestamp: ts,
            urgent_pointer: None,
            payload: &[],
        }
    }

    /// `<SEQ=seq><CTL=RST>` or, with `ack`, `<SEQ=seq><ACK=ack><CTL=RST,ACK>`.
    fn reset_reply(&self, seq: SeqNumber, ack: Option<SeqNumber>) -> TcpRepr<'static> {
        reset_segment(self.local.port(), self.remote.port(), seq, ack)
    }
}

/// A bare reset: `<SEQ=seq><CTL=RST>`, or with `ack`
/// `<SEQ=seq><ACK=ack><CTL=RST,ACK>` (RFC 9293 §3.10.7.1).
pub(crate) fn reset_segment(
    src_port: u16,
    dst_port: u16,
    seq: SeqNumber,
    ack: Option<SeqNumber>,
) -> TcpRepr<'static> {
    TcpRepr {
        src_port,
        dst_port,
        control: TcpControl::Rst,
        seq_number: seq,
        ack_number: ack,
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        urgent_pointer: None,
        payload: &[],
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod conformance;
