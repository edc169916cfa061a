//! Per-core run-to-completion loops: one thread per receive queue, pinned to
//! its own core, owning its device and its engine outright (no locks, no
//! sharing). Each pass: receive a batch and handle every frame to completion,
//! run due timers, flush transmits with one kick; when idle, spin a little
//! and then block in poll() until traffic or the next deadline (adaptive, the
//! default), or never block (busy polling, lowest latency, one full core).

use std::{
    io,
    os::fd::RawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
    thread::JoinHandle,
    time::Duration,
};

use crossbeam_queue::ArrayQueue;

use crate::{
    counters::{Counters, DropReason},
    driver::{Device, DeviceCounters, Waker},
    iface::{Interface, InterfaceConfig, Route},
    tcp::{
        config::TcpConfig,
        isn::IsnGenerator,
        shard::{Shard, ShardConfig},
        syncookie::SynCookies,
    },
    time::{Clock, Instant},
};

/// An application on a core's TCP: the core calls it once per loop pass,
/// after the received batch, with the core's shard. It accepts, reads and
/// writes there and then, on the same core (see [`Shard::take_events`]).
pub trait App {
    /// Once, before the first frame: listen, connect.
    fn start(&mut self, shard: &mut Shard, now: Instant);
    /// Every pass.
    fn poll(&mut self, shard: &mut Shard, now: Instant);
    /// Once, when the core is asked to stop: stop accepting and close
    /// connections (gracefully: `poll` keeps running until every one is
    /// closed or the grace period ends; what is left is then reset).
    fn shutdown(&mut self, shard: &mut Shard, _now: Instant) {
        for port in shard.listening().collect::<Vec<_>>() {
            shard.unlisten(port);
        }
        shard.close_all();
    }
    /// Whether the application has finished and the core may stop (a
    /// one-shot program); servers never finish.
    fn finished(&self) -> bool {
        false
    }
}

/// A core without an application (ARP and ICMP only).
pub struct NoApp;

impl App for NoApp {
    fn start(&mut self, _: &mut Shard, _: Instant) {}
    fn poll(&mut self, _: &mut Shard, _: Instant) {}
}

/// TCP for every core: settings, limits, and the keys all cores share (a
/// SYN cookie made on one core validates on another).
#[derive(Debug, Clone)]
pub struct TcpSetup {
    pub config: TcpConfig,
    pub shard: ShardConfig,
    pub isn: IsnGenerator,
    pub cookies: SynCookies,
    /// On stop: how long connections get to close gracefully before the
    /// rest are reset.
    pub shutdown_grace: Duration,
}

impl TcpSetup {
    pub fn new(config: TcpConfig, shard: ShardConfig) -> Self {
        TcpSetup {
            config,
            shard,
            isn: IsnGenerator::random(),
            cookies: SynCookies::random(),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// How a core waits for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Never sleep: lowest latency, burns the core.
    Busy,
    /// Spin `spins` empty passes, then sleep in poll() until a frame arrives
    /// or a timer is due.
    Adaptive { spins: u32 },
}

impl Default for PollMode {
    fn default() -> Self {
        PollMode::Adaptive { spins: 256 }
    }
}

/// Frames handled per receive batch.
pub const BATCH: usize = 64;
/// Longest sleep, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Frames one core can hold from the others at once; beyond it they are
/// dropped (and counted), as a full NIC ring would.
const MAILBOX_FRAMES: usize = 4096;

/// What a handed-over frame is.
#[derive(Debug, Clone, Copy)]
enum Handoff {
    /// A frame this core owns (a TCP segment for its active open).
    Frame,
    /// ARP another core learned from: update the cache only.
    Arp,
}

/// A core's inbox for frames from the other cores, with the buffers they
/// came in kept for reuse (no allocation once warm).
struct Mailbox {
    frames: ArrayQueue<(Handoff, Vec<u8>)>,
    spares: ArrayQueue<Vec<u8>>,
}

/// One core's counters as of its last publication.
#[derive(Debug, Clone, Default)]
pub struct CoreSnapshot {
    pub counters: Counters,
    /// TCP connections holding a slot (every state).
    pub connections: usize,
    /// Bytes of send and receive buffers the connections hold.
    pub buffer_bytes: usize,
    /// Over the shard's memory budget (new connections refused).
    pub memory_pressure: bool,
}

/// Every core's counters while the stack runs, for metrics and the stats
/// log: each core copies its own into its slot once a second (one
/// uncontended lock per core per second, never per frame); readers take
/// one slot at a time.
#[derive(Debug, Default)]
pub struct LiveCounters {
    cores: Vec<Mutex<CoreSnapshot>>,
}

impl LiveCounters {
    fn new(cores: usize) -> Self {
        LiveCounters {
            cores: (0..cores).map(|_| Mutex::default()).collect(),
        }
    }

    /// The latest snapshot of every core, in core order.
    pub fn snapshot(&self) -> Vec<CoreSnapshot> {
        self.cores
            .iter()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

/// How often a core publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// How the cores of one interface reach each other: the NIC may deliver a
/// frame to any queue, but a connection lives on one core. Also where each
/// core publishes its counters for the rest of the process.
pub struct CrossCore {
    me: usize,
    mail: Arc<[Mailbox]>,
    wakers: Arc<OnceLock<Vec<Waker>>>,
    /// Cores handed frames this pass, woken once at its end.
    to_wake: u64,
    live: Arc<LiveCounters>,
    published_at: Option<Instant>,
}

impl CrossCore {
    /// Links for `cores` cores, in order; their wakers are set once the
    /// devices exist.
    fn group(cores: usize) -> Vec<CrossCore> {
        let mail: Arc<[Mailbox]> = (0..cores)
            .map(|_| Mailbox {
                frames: ArrayQueue::new(MAILBOX_FRAMES),
                spares: ArrayQueue::new(MAILBOX_FRAMES),
            })
            .collect();
        let wakers = Arc::new(OnceLock::new());
        let live = Arc::new(LiveCounters::new(cores));
        (0..cores)
            .map(|me| CrossCore {
                me,
                mail: mail.clone(),
                wakers: wakers.clone(),
                to_wake: 0,
                live: live.clone(),
                published_at: None,
            })
            .collect()
    }

    /// Copies this core's counters into its slot, once a second.
    fn publish(&mut self, iface: &Interface, now: Instant) {
        if self
            .published_at
            .is_some_and(|at| now.saturating_duration_since(at) < PUBLISH_EVERY)
        {
            return;
        }
        self.published_at = Some(now);
        let snapshot = CoreSnapshot {
            counters: iface.counters().clone(),
            connections: iface.tcp().map_or(0, |s| s.connection_count()),
            buffer_bytes: iface.tcp().map_or(0, |s| s.buffer_bytes()),
            memory_pressure: iface.tcp().is_some_and(|s| s.memory_pressure()),
        };
        *self.live.cores[self.me]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// Copies `frame` into core `to`'s inbox; false when it is full.
    fn hand(&mut self, to: usize, kind: Handoff, frame: &[u8]) -> bool {
        let mailbox = &self.mail[to];
        let mut buf = mailbox.spares.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        if mailbox.frames.push((kind, buf)).is_err() {
            return false;
        }
        self.to_wake |= 1 << (to % 64);
        true
    }

    /// Routes a received frame the interface did not keep.
    fn route(&mut self, route: Route, frame: &[u8], counters: &mut (u64, u64)) {
        let mut hand = |cc: &mut Self, to: usize, kind| {
            if cc.hand(to, kind, frame) {
                counters.0 += 1;
            } else {
                counters.1 += 1;
            }
        };
        match route {
            Route::Done => {}
            Route::Forward(to) if to < self.mail.len() => hand(self, to, Handoff::Frame),
            Route::Forward(_) => counters.1 += 1,
            Route::Share => {
                let me = self.me;
                for to in (0..self.mail.len()).filter(|&c| c != me) {
                    hand(self, to, Handoff::Arp);
                }
            }
        }
    }

    /// Wakes every core handed something this pass.
    fn wake(&mut self) {
        if self.to_wake == 0 {
            return;
        }
        if let Some(wakers) = self.wakers.get() {
            for (i, w) in wakers.iter().enumerate() {
                if self.to_wake & (1 << (i % 64)) != 0 {
                    w.wake();
                }
            }
        }
        self.to_wake = 0;
    }

    /// Handles up to `budget` frames other cores handed this one.
    fn receive<D: Device>(
        &self,
        device: &mut D,
        iface: &mut Interface,
        now: Instant,
        budget: usize,
    ) -> usize {
        let mailbox = &self.mail[self.me];
        let mut n = 0;
        while n < budget {
            let Some((kind, buf)) = mailbox.frames.pop() else {
                break;
            };
            match kind {
                Handoff::Frame => iface.receive_forwarded(&buf, now, &mut device.transmitter()),
                Handoff::Arp => {
                    iface.counters_mut().forwarded_in += 1;
                    iface.learn_arp(&buf, now, &mut device.transmitter());
                }
            }
            let _ = mailbox.spares.push(buf);
            n += 1;
        }
        n
    }
}

/// What one core did, handed back when it stops.
#[derive(Debug, Clone)]
pub struct CoreReport {
    pub queue: u32,
    pub core: Option<usize>,
    pub counters: Counters,
    pub device: DeviceCounters,
    /// TCP connections still holding a slot when the core stopped: zero,
    /// since shutdown frees every one (tests assert it).
    pub connections_left: usize,
}

/// Runs one core's loop on the current thread until `stop` is set (or the
/// application finished), then shuts TCP down: every connection is closed,
/// given `grace` to finish, and the rest reset. One core per interface
/// (`announce`) sends the start-of-life frames.
#[allow(clippy::too_many_arguments)]
pub fn run_core<D: Device, A: App>(
    device: &mut D,
    iface: &mut Interface,
    app: &mut A,
    mode: PollMode,
    clock: &Clock,
    stop: &AtomicBool,
    announce: bool,
    grace: Duration,
    cross: &mut CrossCore,
) -> io::Result<()> {
    if announce {
        iface.start(clock.now(), &mut device.transmitter());
        device.flush()?;
    }
    if let Some(shard) = iface.tcp_mut() {
        app.start(shard, clock.now());
    }
    run_passes(device, iface, app, mode, clock, cross, |_, app| {
        stop.load(Ordering::Relaxed) || app.finished()
    })?;
    if iface.tcp().is_none() {
        return Ok(());
    }
    // Graceful: the application stops accepting and closes (by default,
    // CLOSE on everything); run, application included, until every
    // connection is closed or in TIME-WAIT (the peer has all our data), or
    // the grace ends.
    if let Some(shard) = iface.tcp_mut() {
        app.shutdown(shard, clock.now());
    }
    let deadline = clock.now() + grace;
    let settled = run_passes(device, iface, app, mode, clock, cross, |iface, _| {
        clock.now() >= deadline || iface.tcp().is_none_or(|s| s.all_closed_or_time_wait())
    });
    // Then abort what is left (RST) and free every slot.
    iface.destroy_tcp(clock.now(), &mut device.transmitter());
    device.flush()?;
    settled
}

/// One pass after another until `done` says so.
fn run_passes<D: Device, A: App>(
    device: &mut D,
    iface: &mut Interface,
    app: &mut A,
    mode: PollMode,
    clock: &Clock,
    cross: &mut CrossCore,
    mut done: impl FnMut(&Interface, &A) -> bool,
) -> io::Result<()> {
    let mut idle: u32 = 0;
    while !done(iface, app) {
        let now = clock.now();
        // (handed over, dropped for a full inbox)
        let mut handoffs = (0u64, 0u64);
        let mut handled = device.receive(BATCH, |frame, tx| {
            let route = iface.receive_frame_routed(frame, now, tx);
            cross.route(route, frame, &mut handoffs);
        });
        if handoffs != (0, 0) {
            let counters = iface.counters_mut();
            counters.forwarded_out += handoffs.0;
            counters.drop_n(DropReason::ForwardQueueFull, handoffs.1);
            cross.wake();
        }
        handled += cross.receive(device, iface, now, BATCH);
        cross.publish(iface, now);
        if let Some(shard) = iface.tcp_mut() {
            app.poll(shard, now);
        }
        if iface.poll_at(now).is_some_and(|at| at <= now) {
            iface.poll(now, &mut device.transmitter());
        }
        device.flush()?;
        if handled > 0 {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        if let PollMode::Adaptive { spins } = mode {
            if idle > spins {
                let timeout = iface
                    .poll_at(clock.now())
                    .map_or(MAX_SLEEP, |at| at.saturating_duration_since(clock.now()))
                    .min(MAX_SLEEP);
                device.wait(timeout)?;
            }
        } else {
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// One core to start: which receive queue, pinned to which CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreSpec {
    pub queue: u32,
    pub cpu: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("queue {queue}: {message}")]
    Device { queue: u32, message: String },
    #[error("CPU {0} does not exist or cannot be used (see --cores)")]
    BadCpu(usize),
    #[error("cannot start a core thread: {0}")]
    Spawn(#[from] io::Error),
}

/// The running cores. Dropping it stops and joins them.
pub struct Runtime {
    stop: Arc<AtomicBool>,
    live: Arc<LiveCounters>,
    threads: Vec<JoinHandle<io::Result<CoreReport>>>,
    /// One per core: `true` starts its loop, `false` (or a drop) ends it.
    go: Vec<mpsc::Sender<bool>>,
}

/// A core whose device exists, waiting for [`Runtime::go`].
#[derive(Debug, Clone)]
pub struct ReadyCore {
    pub queue: u32,
    /// Its AF_XDP socket, for the XDP program's socket map.
    pub xsk_fd: Option<RawFd>,
    /// Wakes the core when it sleeps, for work from other threads.
    pub waker: Waker,
}

/// What a core thread reports once its device exists.
type Ready = Result<ReadyCore, RuntimeError>;

impl Runtime {
    /// Starts one pinned thread per spec. Each builds its device on its own
    /// core (so the UMEM is first touched there) with `make_device`, reports
    /// its socket fd, and then waits: no frame is sent or handled until
    /// [`Runtime::go`]. Returns once every device exists, in queue order,
    /// with each queue's socket fd for the XDP program's socket map (valid
    /// until the runtime is stopped, since a waiting core keeps its device)
    /// and its waker. On any failure, stops the others and reports the
    /// first error.
    pub fn spawn<D, F, A, G>(
        specs: &[CoreSpec],
        iface: &InterfaceConfig,
        tcp: Option<TcpSetup>,
        mode: PollMode,
        make_device: F,
        make_app: G,
    ) -> Result<(Runtime, Vec<ReadyCore>), RuntimeError>
    where
        D: Device + 'static,
        F: Fn(u32) -> Result<D, String> + Send + Sync + 'static,
        A: App + 'static,
        G: Fn(u32) -> A + Send + Sync + 'static,
    {
        let available = core_affinity::get_core_ids().unwrap_or_default();
        for spec in specs {
            if let Some(cpu) = spec.cpu {
                if !available.iter().any(|c| c.id == cpu) {
                    return Err(RuntimeError::BadCpu(cpu));
                }
            }
        }
        let make_device = Arc::new(make_device);
        let make_app = Arc::new(make_app);
        let clock = Clock::new();
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let mut links = CrossCore::group(specs.len());
        let mut runtime = Runtime {
            stop: Arc::new(AtomicBool::new(false)),
            live: links
                .first()
                .map_or_else(|| Arc::new(LiveCounters::default()), |l| l.live.clone()),
            threads: Vec::with_capacity(specs.len()),
            go: Vec::with_capacity(specs.len()),
        };
        let first_link = links.first().map(|l| (l.wakers.clone(), l.mail.len()));
        for (i, &spec) in specs.iter().enumerate() {
            let announce = i == 0;
            let mut cross = links.remove(0);
            let stop = runtime.stop.clone();
            let make_device = make_device.clone();
            let make_app = make_app.clone();
            let ready = ready_tx.clone();
            let config = iface.clone();
            let tcp = tcp.clone();
            let (go_tx, go_rx) = mpsc::channel::<bool>();
            let spawned = std::thread::Builder::new()
                .name(format!("bypass-q{}", spec.queue))
                .spawn(move || {
                    if let Some(cpu) = spec.cpu {
                        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    }
                    let mut device = match make_device(spec.queue) {
                        Ok(d) => d,
                        Err(message) => {
                            let _ = ready.send(Err(RuntimeError::Device {
                                queue: spec.queue,
                                message,
                            }));
                            return Err(io::Error::other("device setup failed"));
                        }
                    };
                    let _ = ready.send(Ok(ReadyCore {
                        queue: spec.queue,
                        xsk_fd: device.xsk_fd(),
                        waker: device.waker(),
                    }));
                    drop(ready);
                    let grace = tcp.as_ref().map_or(Duration::ZERO, |t| t.shutdown_grace);
                    let mut engine = Interface::new(config.clone());
                    if let Some(t) = tcp {
                        engine = engine.with_tcp(Shard::new(t.config, t.shard, config.ipv4.addr, t.isn, t.cookies));
                    }
                    engine.set_core(cross.me, cross.mail.len());
                    let mut app = make_app(spec.queue);
                    if go_rx.recv() == Ok(true) {
                        let result =
                            run_core(
                            &mut device,
                            &mut engine,
                            &mut app,
                            mode,
                            &clock,
                            &stop,
                            announce,
                            grace,
                            &mut cross,
                        );
                        if let Err(e) = &result {
                            tracing::error!(queue = spec.queue, error = %e, "core stopped on an I/O error");
                            stop.store(true, Ordering::Relaxed);
                            return Err(e.kind().into());
                        }
                    }
                    Ok(CoreReport {
                        queue: spec.queue,
                        core: spec.cpu,
                        counters: engine.counters().clone(),
                        device: device.counters(),
                        connections_left: engine.tcp().map_or(0, |s| s.connection_count()),
                    })
                });
            match spawned {
                Ok(handle) => {
                    runtime.threads.push(handle);
                    runtime.go.push(go_tx);
                }
                // `runtime` drops here: the cores already started stop.
                Err(e) => return Err(RuntimeError::Spawn(e)),
            }
        }
        drop(ready_tx);
        let mut ready = Vec::with_capacity(specs.len());
        for _ in specs {
            match ready_rx.recv() {
                Ok(Ok(core)) => ready.push(core),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(RuntimeError::Spawn(io::Error::other(
                        "a core thread ended during start-up",
                    )))
                }
            }
        }
        ready.sort_unstable_by_key(|c| c.queue);
        // Cores are linked in spec order; wake them in that order too.
        if let Some((wakers, _)) = first_link {
            let by_spec = specs
                .iter()
                .map(|s| {
                    ready
                        .iter()
                        .find(|c| c.queue == s.queue)
                        .map_or_else(Waker::noop, |c| c.waker.clone())
                })
                .collect();
            let _ = wakers.set(by_spec);
        }
        Ok((runtime, ready))
    }

    /// Every core's counters, as published once a second while running.
    pub fn live(&self) -> Arc<LiveCounters> {
        self.live.clone()
    }

    /// Lets every core start its loop (after the caller has registered the
    /// sockets and attached XDP).
    pub fn go(&mut self) {
        for go in self.go.drain(..) {
            let _ = go.send(true);
        }
    }

    /// Asks every core to stop; they finish their current pass.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether a core has stopped by itself (an I/O error).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.threads.iter().any(|t| t.is_finished())
    }

    /// Stops every core, waits for them, and returns their reports.
    pub fn join(mut self) -> Vec<io::Result<CoreReport>> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Vec<io::Result<CoreReport>> {
        self.stop();
        // Cores still waiting for `go` end when their sender drops.
        self.go.clear();
        self.threads
            .drain(..)
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("core thread panicked")))
            })
            .collect()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
