//! The RFC 793 user interface (RFC 9293 §3.10: OPEN, SEND, RECEIVE,
//! STATUS, CLOSE, ABORT) for ordinary threads.
//!
//! [`Stack::init`] starts the per-core threads; [`Stack::open_passive`] and
//! [`Stack::open_active`] return a [`TcpConnection`] whose state the owning
//! core keeps up to date behind the scenes. A call never touches TCP
//! itself: it becomes a command on the owning core's lock-free queue
//! (crossbeam's `SegQueue`) and wakes that core, which runs it between
//! frames. Results come back through the connection's record (a completion:
//! a mutex and condition variable per connection, shared with no other
//! connection), or, for RECEIVE with a callback, on the core's thread.
//!
//! Bytes cross threads through two bounded queues per connection, the
//! outbox (SEND → core → TCP send buffer) and the inbox (TCP receive buffer
//! → core → blocking RECEIVE). Both are bounded, so back-pressure reaches
//! TCP: a full inbox leaves data in the receive buffer and the advertised
//! window closes; a full outbox makes SEND queue less (or block, with
//! [`TcpConnection::send_all`]).
//!
//! Inside, each core runs [`UserCore`], a [`Handler`] of the event API: the
//! user interface is an application like any other.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::SocketAddrV4,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant as StdInstant},
};

use crossbeam_queue::SegQueue;

use super::events::{Conn, Core, EventApp, Handler};
use crate::{
    counters::Counters,
    driver::{threadlink::ThreadPort, Waker},
    iface::InterfaceConfig,
    launch::{LaunchConfig, LaunchError, Report, Running},
    runtime::{CoreReport, CoreSpec, PollMode, Runtime, RuntimeError, TcpSetup},
    tcp::{
        connection::{Error, State, Status},
        shard::{ConnectionHandle, ShardError},
    },
};

/// Bytes a connection's outbox holds (SEND not yet in the TCP buffer).
pub const OUTBOX_LIMIT: usize = 256 * 1024;
/// Bytes a connection's inbox holds (received, not yet taken by a blocking
/// RECEIVE).
pub const INBOX_LIMIT: usize = 256 * 1024;
/// Commands a core runs per pass, so a flood of calls cannot starve its
/// network work.
const COMMANDS_PER_PASS: usize = 1024;

/// Errors of the user calls, worded as RFC 9293 §3.10 words them, plus the
/// stack's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("connection does not exist")]
    DoesNotExist,
    #[error("connection closing")]
    Closing,
    #[error("connection reset")]
    Reset,
    #[error("connection refused")]
    Refused,
    #[error("connection aborted due to user timeout")]
    UserTimeout,
    #[error("insufficient resources")]
    InsufficientResources,
    #[error("port {0} is not steered to the stack (shared-IP mode steers only the configured TCP ports)")]
    PortNotSteered(u16),
    /// A blocking call's own timeout ran out; the connection is unaffected.
    #[error("timed out waiting")]
    WaitTimeout,
    #[error("the stack is shut down")]
    StackDown,
    /// OPEN to a broadcast, multicast or unspecified address (RFC 9293
    /// §3.9.1.1).
    #[error("invalid remote address")]
    InvalidAddress,
}

impl From<Error> for UserError {
    fn from(e: Error) -> Self {
        match e {
            Error::DoesNotExist => UserError::DoesNotExist,
            Error::Closing => UserError::Closing,
            Error::Reset => UserError::Reset,
            Error::TimedOut => UserError::UserTimeout,
            Error::Refused => UserError::Refused,
        }
    }
}

/// Why [`Stack::init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("the stack is already initialised in this process; shut it down before calling Stack::init again")]
    AlreadyInitialised,
    #[error("an in-memory stack needs at least one port")]
    NoPorts,
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Where the stack runs.
pub enum StackDevice {
    /// A real interface: AF_XDP sockets and the XDP program, one pinned
    /// core per receive queue.
    Interface(LaunchConfig),
    /// In-memory links (tests): one core per port.
    Memory {
        ports: Vec<ThreadPort>,
        iface: InterfaceConfig,
        poll: PollMode,
    },
}

/// What [`Stack::init`] needs.
pub struct StackConfig {
    pub device: StackDevice,
    pub tcp: TcpSetup,
}

/// A connection's state as the user sees it: LISTEN until a passive open
/// is matched with a peer, then the TCP state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleState {
    Listen,
    Tcp(State),
}

impl fmt::Display for HandleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleState::Listen => f.write_str("LISTEN"),
            HandleState::Tcp(s) => s.fmt(f),
        }
    }
}

/// STATUS (RFC 9293 §3.10.6).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionStatus {
    pub state: HandleState,
    /// The TCP engine's view (addresses, RTT, windows, retransmits); none
    /// in LISTEN.
    pub tcp: Option<Status>,
    /// Bytes sent by the user and not yet acknowledged (outbox included).
    pub send_queued: usize,
    /// Bytes received and not yet taken by the user (inbox included).
    pub recv_queued: usize,
}

/// Only one stack per process: it owns the interface's queues.
static LIVE: AtomicBool = AtomicBool::new(false);

type Callback = Box<dyn FnMut(&[u8]) + Send>;
type PassiveQueue = SegQueue<Arc<Shared>>;

/// Work for a core.
enum Command {
    /// Listen on a port (sent to every core) for the passive opens queued
    /// in `opens`.
    Listen {
        port: u16,
        opens: Arc<PassiveQueue>,
    },
    /// Open actively.
    Connect {
        shared: Arc<Shared>,
        remote: SocketAddrV4,
    },
    /// Move bytes (outbox to TCP, TCP to inbox or callback), and send the
    /// FIN once a CLOSE is due.
    Pump(Arc<Shared>),
    /// The handle is already gone on the user's side, so it travels with
    /// the command (none: the active open has not reached its core yet,
    /// and `Connect` will see the abort).
    Abort(Option<ConnectionHandle>),
    Status(Arc<Shared>),
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A passive open waiting for a peer.
    Listening,
    /// Given to a core (an active open, or a matched passive one).
    Bound {
        core: usize,
        handle: Option<ConnectionHandle>,
    },
    /// Closed, aborted, or never opened.
    Gone,
}

/// A connection's record, shared by the user's handle and its core.
struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

struct Inner {
    phase: Phase,
    state: HandleState,
    error: Option<UserError>,
    /// CLOSE was called: no more SENDs; the FIN follows the outbox.
    user_closed: bool,
    /// The core has sent our FIN's CLOSE to TCP.
    fin_queued: bool,
    aborted: bool,
    /// The peer's FIN arrived and everything before it was delivered.
    peer_fin: bool,
    outbox: VecDeque<u8>,
    inbox: VecDeque<u8>,
    /// RECEIVE with a callback; taken out while the core calls it.
    callback: Option<Callback>,
    callback_set: bool,
    /// The TCP engine's view, refreshed on events and on STATUS.
    status: Option<Status>,
    status_seq: u64,
}

impl Shared {
    fn new(phase: Phase, state: HandleState) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                phase,
                state,
                error: None,
                user_closed: false,
                fin_queued: false,
                aborted: false,
                peer_fin: false,
                outbox: VecDeque::new(),
                inbox: VecDeque::new(),
                callback: None,
                callback_set: false,
                status: None,
                status_seq: 0,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds or `timeout` passes.
    fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&mut Inner) -> bool,
    ) -> Result<MutexGuard<'_, Inner>, UserError> {
        let deadline = StdInstant::now() + timeout;
        let mut g = self.lock();
        loop {
            if done(&mut g) {
                return Ok(g);
            }
            let now = StdInstant::now();
            if now >= deadline {
                return Err(UserError::WaitTimeout);
            }
            g = self
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The connection is over (the core let go of it).
    fn finish(&self, error: Option<UserError>) {
        let mut g = self.lock();
        if g.phase != Phase::Gone {
            g.phase = Phase::Gone;
            g.error = g.error.or(error);
        }
        g.state = HandleState::Tcp(State::Closed);
        g.outbox.clear();
        drop(g);
        self.changed.notify_all();
    }
}

impl Inner {
    /// The RFC's answer for a call on a connection that is gone, if it is.
    fn gone(&self) -> Option<UserError> {
        match self.phase {
            Phase::Gone => Some(self.error.unwrap_or(UserError::DoesNotExist)),
            _ => None,
        }
    }
}

/// One core's link: its command queue and waker.
struct CoreLink {
    commands: Arc<SegQueue<Command>>,
    waker: Waker,
}

enum Engine {
    Interface(Box<Running>),
    Memory(Runtime),
}

struct StackInner {
    cores: Vec<CoreLink>,
    /// Passive opens waiting, per port.
    passive: Mutex<HashMap<u16, Arc<PassiveQueue>>>,
    next_core: AtomicUsize,
    /// In shared-IP mode, the only ports the XDP program steers to us.
    steered: Option<Vec<u16>>,
    engine: Mutex<Option<Engine>>,
}

impl StackInner {
    fn command(&self, core: usize, command: Command) {
        let link = &self.cores[core];
        link.commands.push(command);
        link.waker.wake();
    }

    fn is_down(&self) -> bool {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn shutdown(&self) -> Option<StackReport> {
        let engine = self
            .engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let (cores, errors) = match engine {
            Engine::Interface(running) => {
                let Report { cores, errors, .. } = running.stop();
                (cores, errors)
            }
            Engine::Memory(runtime) => {
                runtime.stop();
                for c in &self.cores {
                    c.waker.wake();
                }
                let mut cores = Vec::new();
                let mut errors = Vec::new();
                for r in runtime.join() {
                    match r {
                        Ok(c) => cores.push(c),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (cores, errors)
            }
        };
        // Passive opens nobody connected to end here.
        for (_, opens) in self
            .passive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            while let Some(s) = opens.pop() {
                s.finish(Some(UserError::StackDown));
            }
        }
        LIVE.store(false, Ordering::Release);
        Some(StackReport { cores, errors })
    }
}

impl Drop for StackInner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the stack did, once shut down.
#[derive(Debug)]
pub struct StackReport {
    pub cores: Vec<CoreReport>,
    /// Cores that ended on an error.
    pub errors: Vec<String>,
}

impl StackReport {
    /// Every core's counters added up.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for c in &self.cores {
            t.accumulate(&c.counters);
        }
        t
    }

    /// Connections still holding a slot when the cores stopped (zero: every
    /// slot was freed).
    pub fn connections_left(&self) -> usize {
        self.cores.iter().map(|c| c.connections_left).sum()
    }
}

/// The stack, for ordinary threads. Cheap to clone; every clone is the same
/// stack. Dropping the last clone (and every connection handle) shuts it
/// down, as [`Stack::shutdown`] does.
#[derive(Clone)]
pub struct Stack {
    inner: Arc<StackInner>,
}

impl Stack {
    /// Initialises the stack and its per-core threads. One stack per
    /// process: a second call while one exists is an error.
    pub fn init(config: StackConfig) -> Result<Stack, InitError> {
        if LIVE
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(InitError::AlreadyInitialised);
        }
        Self::start(config).inspect_err(|_| LIVE.store(false, Ordering::Release))
    }

    fn start(config: StackConfig) -> Result<Stack, InitError> {
        let backlog = config.tcp.shard.accept_backlog;
        let core_count = match &config.device {
            StackDevice::Memory { ports, .. } if ports.is_empty() => {
                return Err(InitError::NoPorts)
            }
            StackDevice::Memory { ports, .. } => ports.len(),
            // Launch decides; at most the XDP program's queue limit.
            StackDevice::Interface(_) => bypass_xdp::MAX_QUEUES as usize,
        };
        let queues: Vec<Arc<SegQueue<Command>>> =
            (0..core_count).map(|_| Arc::new(SegQueue::new())).collect();
        let for_cores = queues.clone();
        let make_app = move |queue: u32| {
            EventApp::new(UserCore {
                index: queue as usize,
                commands: for_cores[queue as usize].clone(),
                passive: Vec::new(),
                unclaimed: VecDeque::new(),
                backlog,
            })
        };
        let (engine, wakers, steered) = match config.device {
            StackDevice::Interface(launch) => {
                let running = Running::start_with(&launch, Some(config.tcp), make_app)?;
                let wakers = running.wakers().to_vec();
                let steered = launch.shared_ip.then(|| launch.tcp_ports.clone());
                (Engine::Interface(Box::new(running)), wakers, steered)
            }
            StackDevice::Memory { ports, iface, poll } => {
                let specs: Vec<CoreSpec> = (0..ports.len() as u32)
                    .map(|queue| CoreSpec { queue, cpu: None })
                    .collect();
                let ports = Mutex::new(ports.into_iter().map(Some).collect::<Vec<_>>());
                let (mut runtime, ready) = Runtime::spawn(
                    &specs,
                    &iface,
                    Some(config.tcp),
                    poll,
                    move |queue| {
                        ports.lock().unwrap_or_else(|e| e.into_inner())[queue as usize]
                            .take()
                            .ok_or_else(|| format!("no port for queue {queue}"))
                    },
                    make_app,
                )?;
                runtime.go();
                let wakers = ready.into_iter().map(|c| c.waker).collect();
                (Engine::Memory(runtime), wakers, None)
            }
        };
        let cores = queues
            .into_iter()
            .zip(wakers)
            .map(|(commands, waker)| CoreLink { commands, waker })
            .collect();
        Ok(Stack {
            inner: Arc::new(StackInner {
                cores,
                passive: Mutex::new(HashMap::new()),
                next_core: AtomicUsize::new(0),
                steered,
                engine: Mutex::new(Some(engine)),
            }),
        })
    }

    /// Cores (one per receive queue).
    pub fn cores(&self) -> usize {
        self.inner.cores.len()
    }

    /// OPEN, passive, with the foreign socket unspecified (RFC 9293
    /// §3.10.1): the handle is in LISTEN until a peer connects to `port`,
    /// and then becomes that connection. Each call takes one connection;
    /// the port keeps listening (with the configured backlog) for as long
    /// as the stack runs.
    pub fn open_passive(&self, port: u16) -> Result<TcpConnection, UserError> {
        if self.inner.is_down() {
            return Err(UserError::StackDown);
        }
        if let Some(steered) = &self.inner.steered {
            if !steered.contains(&port) {
                return Err(UserError::PortNotSteered(port));
            }
        }
        let shared = Shared::new(Phase::Listening, HandleState::Listen);
        let mut passive = self.inner.passive.lock().unwrap_or_else(|e| e.into_inner());
        let opens = match passive.get(&port) {
            Some(q) => q.clone(),
            None => {
                let q = Arc::new(SegQueue::new());
                passive.insert(port, q.clone());
                for core in 0..self.inner.cores.len() {
                    self.inner.command(
                        core,
                        Command::Listen {
                            port,
                            opens: q.clone(),
                        },
                    );
                }
                q
            }
        };
        drop(passive);
        opens.push(shared.clone());
        // Any core may hold a connection waiting for this open.
        for core in &self.inner.cores {
            core.waker.wake();
        }
        Ok(TcpConnection {
            stack: self.inner.clone(),
            shared,
        })
    }

    /// OPEN, active: a SYN to `remote` leaves at once; the handle is in
    /// SYN-SENT until the peer answers ([`TcpConnection::wait_established`]).
    /// Data sent before then goes out after the handshake.
    pub fn open_active(&self, remote: SocketAddrV4) -> Result<TcpConnection, UserError> {
        if self.inner.is_down() {
            return Err(UserError::StackDown);
        }
        let core = self.inner.next_core.fetch_add(1, Ordering::Relaxed) % self.inner.cores.len();
        let shared = Shared::new(
            Phase::Bound { core, handle: None },
            HandleState::Tcp(State::SynSent),
        );
        self.inner.command(
            core,
            Command::Connect {
                shared: shared.clone(),
                remote,
            },
        );
        Ok(TcpConnection {
            stack: self.inner.clone(),
            shared,
        })
    }

    /// Shuts the stack down: every connection is closed gracefully (FIN)
    /// and given the configured grace period, the rest are aborted (RST);
    /// then the cores stop, XDP is detached and everything is freed.
    /// Handles still held answer "connection reset" (or their real end).
    /// Later calls on any clone return `None`.
    pub fn shutdown(&self) -> Option<StackReport> {
        self.inner.shutdown()
    }
}

/// A connection of the user interface. Every call may come from any
/// thread; the handle can be shared (`Arc`) or moved.
pub struct TcpConnection {
    stack: Arc<StackInner>,
    shared: Arc<Shared>,
}

impl fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.shared.lock();
        f.debug_struct("TcpConnection")
            .field("state", &g.state)
            .field("error", &g.error)
            .finish()
    }
}

impl TcpConnection {
    /// Asks the owning core to move bytes and flags, if the connection has
    /// a core.
    fn pump(&self, g: &Inner) {
        if let Phase::Bound { core, .. } = g.phase {
            self.stack.command(core, Command::Pump(self.shared.clone()));
        }
    }

    /// The state now.
    pub fn state(&self) -> HandleState {
        self.shared.lock().state
    }

    /// SEND (RFC 9293 §3.10.2), without blocking: queues as much of `data`
    /// as the outbox takes (up to [`OUTBOX_LIMIT`] bytes not yet in TCP's
    /// send buffer) and returns how much; 0 means full, try again later or
    /// use [`TcpConnection::send_all`]. Allowed from LISTEN and the
    /// handshake on (sent once established) until CLOSE.
    pub fn send(&self, data: &[u8]) -> Result<usize, UserError> {
        let mut g = self.shared.lock();
        Self::may_send(&g)?;
        let n = data.len().min(OUTBOX_LIMIT.saturating_sub(g.outbox.len()));
        g.outbox.extend(&data[..n]);
        if n > 0 {
            self.pump(&g);
        }
        Ok(n)
    }

    /// SEND all of `data`, blocking while the outbox is full, for at most
    /// `timeout` in all. On a timeout, what was queued stays queued.
    pub fn send_all(&self, mut data: &[u8], timeout: Duration) -> Result<(), UserError> {
        let deadline = StdInstant::now() + timeout;
        while !data.is_empty() {
            let n = self.send(data)?;
            data = &data[n..];
            if data.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(StdInstant::now());
            drop(self.shared.wait_until(left, |g| {
                g.outbox.len() < OUTBOX_LIMIT || Self::may_send(g).is_err()
            })?);
        }
        Ok(())
    }

    fn may_send(g: &Inner) -> Result<(), UserError> {
        if let Some(e) = g.gone() {
            return Err(e);
        }
        if g.user_closed {
            return Err(UserError::Closing);
        }
        match g.state {
            HandleState::Listen => Ok(()),
            HandleState::Tcp(
                State::SynSent | State::SynReceived | State::Established | State::CloseWait,
            ) => Ok(()),
            HandleState::Tcp(State::Closed) => Err(g.error.unwrap_or(UserError::DoesNotExist)),
            HandleState::Tcp(_) => Err(UserError::Closing),
        }
    }

    /// RECEIVE with a callback: from now on, every received byte is handed
    /// to `callback` on the owning core's thread, in order (bytes already
    /// waiting in the inbox first). The callback must not block; it may
    /// call this handle's SEND.
    pub fn receive<F>(&self, callback: F) -> Result<(), UserError>
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        let mut g = self.shared.lock();
        if let Some(e) = g.gone() {
            return Err(e);
        }
        g.callback = Some(Box::new(callback));
        g.callback_set = true;
        self.pump(&g);
        Ok(())
    }

    /// RECEIVE, blocking: copies up to `buf.len()` received bytes and
    /// returns how many, waiting at most `timeout` for the first. After the
    /// peer's FIN and once everything was read: "connection closing". With
    /// a callback installed the bytes go there, so this waits for the FIN.
    pub fn receive_blocking(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UserError> {
        let mut g = self.shared.wait_until(timeout, |g| {
            !g.inbox.is_empty() || g.peer_fin || g.phase == Phase::Gone
        })?;
        if g.inbox.is_empty() {
            if let Some(e) = g.gone().filter(|e| *e != UserError::DoesNotExist) {
                return Err(e);
            }
            return Err(UserError::Closing);
        }
        let was_full = g.inbox.len() >= INBOX_LIMIT;
        let n = buf.len().min(g.inbox.len());
        for (dst, src) in buf.iter_mut().zip(g.inbox.drain(..n)) {
            *dst = src;
        }
        if was_full {
            // The core left bytes in TCP's buffer: room for them now.
            self.pump(&g);
        }
        Ok(n)
    }

    /// Waits until the handshake is done (or the connection failed).
    pub fn wait_established(&self, timeout: Duration) -> Result<(), UserError> {
        let g = self.shared.wait_until(timeout, |g| {
            g.phase == Phase::Gone || matches!(g.state, HandleState::Tcp(s) if s.is_synchronized())
        })?;
        match g.gone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until the connection is fully closed (CLOSED or TIME-WAIT:
    /// the peer has everything); returns why it ended if abnormally.
    pub fn wait_closed(&self, timeout: Duration) -> Result<Option<UserError>, UserError> {
        let g = self.shared.wait_until(timeout, |g| {
            g.phase == Phase::Gone || g.state == HandleState::Tcp(State::TimeWait)
        })?;
        Ok(g.error)
    }

    /// STATUS (RFC 9293 §3.10.6): asks the owning core for a fresh view.
    pub fn status(&self) -> Result<ConnectionStatus, UserError> {
        let g = self.shared.lock();
        if let Some(e) = g.gone() {
            return Err(e);
        }
        let seen = g.status_seq;
        let bound = matches!(
            g.phase,
            Phase::Bound {
                handle: Some(_),
                ..
            }
        );
        if bound {
            if let Phase::Bound { core, .. } = g.phase {
                self.stack
                    .command(core, Command::Status(self.shared.clone()));
            }
        }
        drop(g);
        let g = if bound {
            // A core answers within a pass; if it cannot (stopping), the
            // last view is still a true one.
            self.shared
                .wait_until(Duration::from_secs(1), |g| {
                    g.status_seq != seen || g.phase == Phase::Gone
                })
                .unwrap_or_else(|_| self.shared.lock())
        } else {
            self.shared.lock()
        };
        if let Some(e) = g.gone() {
            return Err(e);
        }
        let tcp = g.status.clone();
        Ok(ConnectionStatus {
            state: g.state,
            send_queued: g.outbox.len() + tcp.as_ref().map_or(0, |s| s.send_queued),
            recv_queued: g.inbox.len() + tcp.as_ref().map_or(0, |s| s.recv_queued),
            tcp,
        })
    }

    /// CLOSE (RFC 9293 §3.10.4): no more SENDs; a FIN follows what is
    /// queued. RECEIVE goes on until the peer closes too. A passive open
    /// still in LISTEN is simply withdrawn.
    pub fn close(&self) -> Result<(), UserError> {
        let mut g = self.shared.lock();
        if let Some(e) = g.gone() {
            return Err(e);
        }
        if g.user_closed {
            return Err(UserError::Closing);
        }
        if g.phase == Phase::Listening {
            g.phase = Phase::Gone;
            g.state = HandleState::Tcp(State::Closed);
            drop(g);
            self.shared.changed.notify_all();
            return Ok(());
        }
        if matches!(
            g.state,
            HandleState::Tcp(
                State::FinWait1
                    | State::FinWait2
                    | State::Closing
                    | State::LastAck
                    | State::TimeWait
            )
        ) {
            return Err(UserError::Closing);
        }
        g.user_closed = true;
        self.pump(&g);
        Ok(())
    }

    /// ABORT (RFC 9293 §3.10.5): queued data is dropped and a synchronized
    /// peer gets a RST. Later calls answer "connection does not exist".
    pub fn abort(&self) -> Result<(), UserError> {
        let mut g = self.shared.lock();
        if let Some(e) = g.gone() {
            return Err(e);
        }
        g.aborted = true;
        g.outbox.clear();
        g.inbox.clear();
        match g.phase {
            Phase::Bound { core, handle } => {
                self.stack.command(core, Command::Abort(handle));
            }
            Phase::Listening | Phase::Gone => {}
        }
        // The handle is done at once, whatever the core does next.
        g.phase = Phase::Gone;
        g.state = HandleState::Tcp(State::Closed);
        drop(g);
        self.shared.changed.notify_all();
        Ok(())
    }
}

/// The user interface's side on a core: an event-API application that
/// runs commands and moves bytes between TCP and the connection records.
struct UserCore {
    index: usize,
    commands: Arc<SegQueue<Command>>,
    /// Ports this core listens on, with their passive opens.
    passive: Vec<(u16, Arc<PassiveQueue>)>,
    /// Accepted connections no passive open has claimed yet (bounded by
    /// the accept backlog).
    unclaimed: VecDeque<ConnectionHandle>,
    backlog: usize,
}

/// A connection's entry on its core.
struct CoreConn {
    shared: Option<Arc<Shared>>,
}

impl Drop for CoreConn {
    /// When the core lets go of a connection, its handle sees the end: a
    /// normal one was recorded by `closed` already; otherwise (the stack
    /// stopped) it was reset.
    fn drop(&mut self) {
        if let Some(s) = self.shared.take() {
            s.finish(Some(UserError::Reset));
        }
    }
}

impl UserCore {
    /// The next passive open for `port` that is still wanted, tied to
    /// `conn` (the check and the tie under one lock, so a CLOSE of the
    /// LISTEN handle on another thread cannot slip in between).
    fn claim(&self, port: u16, conn: &mut Conn<'_>) -> Option<Arc<Shared>> {
        let (_, opens) = self.passive.iter().find(|(p, _)| *p == port)?;
        while let Some(s) = opens.pop() {
            let mut g = s.lock();
            if g.phase == Phase::Listening {
                g.phase = Phase::Bound {
                    core: self.index,
                    handle: Some(conn.handle()),
                };
                drop(g);
                // Catch up on what happened before (data, flags).
                pump(&s, conn);
                return Some(s);
            }
        }
        None
    }

    fn run(&mut self, command: Command, core: &mut Core<'_, CoreConn>) {
        match command {
            Command::Listen { port, opens } => {
                // Listening already is fine: the opens share the port.
                let _ = core.listen(port);
                self.passive.push((port, opens));
            }
            Command::Connect { shared, remote } => {
                if shared.lock().phase == Phase::Gone {
                    return; // aborted before the core got to it
                }
                match core.connect(
                    remote,
                    CoreConn {
                        shared: Some(shared.clone()),
                    },
                ) {
                    Ok(h) => {
                        let mut g = shared.lock();
                        // ABORT may have come from the user meanwhile.
                        let aborted = g.phase == Phase::Gone;
                        if !aborted {
                            g.phase = Phase::Bound {
                                core: self.index,
                                handle: Some(h),
                            };
                        }
                        drop(g);
                        if let Some((_, mut conn)) = core.conn(h) {
                            if aborted {
                                conn.abort();
                            } else {
                                pump(&shared, &mut conn);
                            }
                        }
                    }
                    Err(ShardError::AlreadyListening) => unreachable!("connect never listens"),
                    Err(ShardError::NoSlots | ShardError::NoPorts) => {
                        shared.finish(Some(UserError::InsufficientResources));
                    }
                    Err(ShardError::InvalidAddress) => {
                        shared.finish(Some(UserError::InvalidAddress));
                    }
                }
            }
            Command::Pump(shared) => {
                if let Some(mut conn) = Self::find(&shared, core) {
                    pump(&shared, &mut conn.1);
                }
            }
            Command::Abort(handle) => {
                if let Some((_, mut conn)) = handle.and_then(|h| core.conn(h)) {
                    conn.abort();
                }
            }
            Command::Status(shared) => {
                if let Some((_, conn)) = Self::find(&shared, core) {
                    let mut g = shared.lock();
                    g.status = Some(conn.status());
                    g.status_seq += 1;
                    drop(g);
                    shared.changed.notify_all();
                }
            }
        }
    }

    fn find<'c>(
        shared: &Shared,
        core: &'c mut Core<'_, CoreConn>,
    ) -> Option<(&'c mut CoreConn, Conn<'c>)> {
        let Phase::Bound {
            handle: Some(h), ..
        } = shared.lock().phase
        else {
            return None;
        };
        core.conn(h)
    }
}

/// Moves bytes and flags between a connection and its record: the outbox
/// into TCP, the FIN once CLOSE was called and the outbox is empty,
/// received bytes to the callback or the inbox.
fn pump(shared: &Shared, conn: &mut Conn<'_>) {
    let mut g = shared.lock();
    if g.aborted {
        drop(g);
        conn.abort();
        return;
    }
    while !g.outbox.is_empty() {
        let (a, _) = g.outbox.as_slices();
        match conn.send(a) {
            Ok(0) => break,
            Ok(n) => drop(g.outbox.drain(..n)),
            Err(_) => {
                g.outbox.clear();
                break;
            }
        }
    }
    if g.user_closed && g.outbox.is_empty() && !g.fin_queued {
        g.fin_queued = true;
        let _ = conn.shutdown_write();
    }
    if g.callback_set {
        // Call it without the lock: it may SEND on this connection.
        let mut callback = g.callback.take();
        let leftover: Vec<u8> = g.inbox.drain(..).collect();
        drop(g);
        if let Some(cb) = callback.as_mut() {
            if !leftover.is_empty() {
                cb(&leftover);
            }
            loop {
                let (a, _) = conn.readable();
                if a.is_empty() {
                    break;
                }
                cb(a);
                let n = a.len();
                conn.consume(n);
            }
        }
        g = shared.lock();
        if g.callback.is_none() {
            g.callback = callback;
        }
    } else {
        loop {
            let room = INBOX_LIMIT.saturating_sub(g.inbox.len());
            let (a, _) = conn.readable();
            let n = a.len().min(room);
            if n == 0 {
                break;
            }
            g.inbox.extend(&a[..n]);
            conn.consume(n);
        }
    }
    g.state = HandleState::Tcp(conn.state());
    if conn.readable().0.is_empty()
        && matches!(
            conn.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        )
    {
        g.peer_fin = true;
    }
    g.status = Some(conn.status());
    drop(g);
    shared.changed.notify_all();
}

impl Handler for UserCore {
    type Conn = CoreConn;

    fn start(&mut self, _core: &mut Core<'_, CoreConn>) {}

    fn accepted(&mut self, conn: &mut Conn<'_>) -> CoreConn {
        let port = conn.local().port();
        if let Some(shared) = self.claim(port, conn) {
            return CoreConn {
                shared: Some(shared),
            };
        }
        if self.unclaimed.len() >= self.backlog {
            conn.abort(); // the backlog is full: refuse, as a listener would
        } else {
            self.unclaimed.push_back(conn.handle());
        }
        CoreConn { shared: None }
    }

    fn connected(&mut self, state: &mut CoreConn, conn: &mut Conn<'_>) {
        if let Some(s) = &state.shared {
            pump(s, conn);
        }
    }

    fn readable(&mut self, state: &mut CoreConn, conn: &mut Conn<'_>) {
        if let Some(s) = &state.shared {
            pump(s, conn);
        }
    }

    fn writable(&mut self, state: &mut CoreConn, conn: &mut Conn<'_>) {
        if let Some(s) = &state.shared {
            pump(s, conn);
        }
    }

    /// The user decides when to close (RFC 9293: CLOSE is the user's call);
    /// RECEIVE reports "connection closing" once everything is read.
    fn peer_closed(&mut self, state: &mut CoreConn, conn: &mut Conn<'_>) {
        if let Some(s) = &state.shared {
            pump(s, conn);
        }
    }

    fn closed(&mut self, mut state: CoreConn, why: Option<Error>) {
        // An unclaimed one leaves `unclaimed` on the next poll.
        if let Some(s) = state.shared.take() {
            s.finish(why.map(UserError::from));
        }
    }

    fn poll(&mut self, core: &mut Core<'_, CoreConn>) {
        for _ in 0..COMMANDS_PER_PASS {
            let Some(command) = self.commands.pop() else {
                break;
            };
            self.run(command, core);
        }
        // Match waiting connections with passive opens that came since.
        let mut i = 0;
        while i < self.unclaimed.len() {
            let h = self.unclaimed[i];
            let Some((entry, mut conn)) = core.conn(h) else {
                self.unclaimed.remove(i); // closed meanwhile
                continue;
            };
            let port = conn.local().port();
            match self.claim(port, &mut conn) {
                Some(shared) => {
                    entry.shared = Some(shared);
                    self.unclaimed.remove(i);
                }
                None => i += 1,
            }
        }
    }
}
