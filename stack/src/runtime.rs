//! Per-core run-to-completion loops: one thread per receive queue, pinned to
//! its own core, owning its device and its engine outright (no locks, no
//! sharing). Each pass: receive a batch and handle every frame to completion,
//! run due timers, flush transmits with one kick; when idle, spin a little
//! and then block in poll() until traffic or the next deadline (adaptive, the
//! default), or never block (busy polling, lowest latency, one full core).

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    counters::Counters,
    driver::{Device, DeviceCounters},
    iface::{Interface, InterfaceConfig},
    time::Clock,
};

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

/// What one core did, handed back when it stops.
#[derive(Debug, Clone)]
pub struct CoreReport {
    pub queue: u32,
    pub core: Option<usize>,
    pub counters: Counters,
    pub device: DeviceCounters,
}

/// Runs one core's loop on the current thread until `stop` is set. One core
/// per interface (`announce`) sends the start-of-life frames.
pub fn run_core<D: Device>(
    device: &mut D,
    iface: &mut Interface,
    mode: PollMode,
    clock: &Clock,
    stop: &AtomicBool,
    announce: bool,
) -> io::Result<()> {
    if announce {
        iface.start(clock.now(), &mut device.transmitter());
        device.flush()?;
    }
    let mut idle: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        let handled = device.receive(BATCH, |frame, tx| iface.receive_frame(frame, now, tx));
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
    threads: Vec<JoinHandle<io::Result<CoreReport>>>,
    /// One per core: `true` starts its loop, `false` (or a drop) ends it.
    go: Vec<mpsc::Sender<bool>>,
}

/// What a core thread reports once its device exists.
type Ready = Result<(u32, RawFd), RuntimeError>;

impl Runtime {
    /// Starts one pinned thread per spec. Each builds its device on its own
    /// core (so the UMEM is first touched there) with `make_device`, reports
    /// its socket fd, and then waits: no frame is sent or handled until
    /// [`Runtime::go`]. Returns once every device exists, with each queue's
    /// socket fd for the XDP program's socket map; the fds stay valid until
    /// the runtime is stopped, since a waiting core keeps its device. On any
    /// failure, stops the others and reports the first error.
    pub fn spawn<D, F>(
        specs: &[CoreSpec],
        iface: &InterfaceConfig,
        mode: PollMode,
        make_device: F,
    ) -> Result<(Runtime, Vec<(u32, RawFd)>), RuntimeError>
    where
        D: Device + AsRawFd + 'static,
        F: Fn(u32) -> Result<D, String> + Send + Sync + 'static,
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
        let clock = Clock::new();
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let mut runtime = Runtime {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(specs.len()),
            go: Vec::with_capacity(specs.len()),
        };
        for (i, &spec) in specs.iter().enumerate() {
            let announce = i == 0;
            let stop = runtime.stop.clone();
            let make_device = make_device.clone();
            let ready = ready_tx.clone();
            let config = iface.clone();
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
                    let _ = ready.send(Ok((spec.queue, device.as_raw_fd())));
                    drop(ready);
                    let mut engine = Interface::new(config);
                    if go_rx.recv() == Ok(true) {
                        let result = run_core(&mut device, &mut engine, mode, &clock, &stop, announce);
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
        let mut fds = Vec::with_capacity(specs.len());
        for _ in specs {
            match ready_rx.recv() {
                Ok(Ok(fd)) => fds.push(fd),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(RuntimeError::Spawn(io::Error::other(
                        "a core thread ended during start-up",
                    )))
                }
            }
        }
        fds.sort_unstable();
        Ok((runtime, fds))
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
