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
    driver::Device,
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
        if iface.poll_at().is_some_and(|at| at <= now) {
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
                    .poll_at()
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

/// The running cores.
pub struct Runtime {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<CoreReport>>>,
}

impl Runtime {
    /// Starts one pinned thread per spec. Each builds its device on its own
    /// core (so the UMEM is first touched there) with `make_device`. Returns
    /// once every device exists, with each queue's socket fd for the XDP
    /// program's socket map; on any failure, stops the others and reports.
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
        let stop = Arc::new(AtomicBool::new(false));
        let make_device = Arc::new(make_device);
        let clock = Clock::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(specs.len());
        for (i, &spec) in specs.iter().enumerate() {
            let announce = i == 0;
            let stop = stop.clone();
            let make_device = make_device.clone();
            let ready = ready_tx.clone();
            let config = iface.clone();
            let handle = std::thread::Builder::new()
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
                    let result = run_core(&mut device, &mut engine, mode, &clock, &stop, announce);
                    if let Err(e) = &result {
                        tracing::error!(queue = spec.queue, error = %e, "core stopped on an I/O error");
                        stop.store(true, Ordering::Relaxed);
                    }
                    result.map(|()| CoreReport {
                        queue: spec.queue,
                        core: spec.cpu,
                        counters: engine.counters().clone(),
                    })
                })?;
            threads.push(handle);
        }
        drop(ready_tx);
        let runtime = Runtime { stop, threads };
        let mut fds = Vec::with_capacity(specs.len());
        let mut first_error = None;
        for _ in specs {
            match ready_rx.recv() {
                Ok(Ok(fd)) => fds.push(fd),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        if let Some(e) = first_error {
            runtime.stop();
            let _ = runtime.join();
            return Err(e);
        }
        fds.sort_unstable();
        Ok((runtime, fds))
    }

    /// Asks every core to stop; they finish their current pass.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether a core has stopped by itself (an I/O error).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.threads.iter().any(|t| t.is_finished())
    }

    /// Waits for every core and returns their reports.
    pub fn join(self) -> Vec<io::Result<CoreReport>> {
        self.threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("core thread panicked")))
            })
            .collect()
    }
}
