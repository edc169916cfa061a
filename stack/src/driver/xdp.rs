//! AF_XDP driver on xsk-rs: one socket and one UMEM per receive queue.
//!
//! Frame ownership: the UMEM's frames are split once, at start, between the
//! FILL ring (receive) and a free list (transmit). A received frame goes back
//! to FILL as soon as the batch is handled (answers are written into transmit
//! frames, never in place), and a transmitted frame comes back to the free
//! list through the COMPLETION ring. So a frame is always in exactly one
//! place: kernel rings, this driver's lists, or a batch being handled.
//!
//! Every ring has as many slots as the UMEM has frames, twice what can ever
//! be on it, because the kernel publishes its consumer positions lazily: a
//! ring can look fuller than it is. Frames a ring does not take now wait in
//! `refill` (receive) or `pending` (transmit) and are offered again on the
//! next pass; nothing is dropped for want of a ring slot.
//!
//! This module holds all of the stack's `unsafe`: xsk-rs marks ring and UMEM
//! access unsafe because the compiler cannot see that the kernel and we take
//! turns on each frame; the ownership rule above is what makes it sound.

use std::{
    ffi::CString,
    io,
    num::NonZeroU32,
    os::fd::{AsRawFd, RawFd},
    sync::Arc,
    time::Duration,
};

use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
};

use super::{
    wake::{WakeFd, Waker},
    Device, DeviceCounters, TxError, TxSink,
};

/// How to build one queue's socket.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    pub iface: String,
    pub queue: u32,
    /// UMEM frames, split evenly between receive and transmit. Power of two.
    pub frame_count: u32,
    /// Bytes per UMEM frame: 2048 or 4096.
    pub frame_size: u32,
    /// Ask for zero-copy; fail with a clear error when the driver can't.
    pub zero_copy: bool,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            iface: String::new(),
            queue: 0,
            frame_count: 4096,
            frame_size: 2048,
            zero_copy: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("bad AF_XDP configuration: {0}")]
    Config(String),
    #[error("cannot allocate a UMEM of {frames} frames x {size} bytes: {reason} (lower --umem-frames, or raise RLIMIT_MEMLOCK when not root)")]
    Umem {
        frames: u32,
        size: u32,
        reason: String,
    },
    #[error("{iface} does not support AF_XDP zero-copy on queue {queue} ({reason}); run without --zero-copy to use copy mode")]
    ZeroCopyUnsupported {
        iface: String,
        queue: u32,
        reason: String,
    },
    #[error("cannot open an AF_XDP socket on {iface} queue {queue}: {reason}")]
    Socket {
        iface: String,
        queue: u32,
        reason: String,
    },
}

/// One AF_XDP socket with its own UMEM.
pub struct XdpDevice {
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    tx: TxQueue,
    rx: RxQueue,
    /// Frames free for transmit.
    free: Vec<FrameDesc>,
    /// Frames written and not yet taken by the TX ring.
    pending: Vec<FrameDesc>,
    /// Received frames not yet taken back by the FILL ring.
    refill: Vec<FrameDesc>,
    /// Frames on the TX ring or in flight: produced, not yet completed.
    outstanding: usize,
    /// Scratch for a received batch.
    rx_batch: Vec<FrameDesc>,
    /// Scratch for completions.
    comp_batch: Vec<FrameDesc>,
    frame_size: usize,
    counters: DeviceCounters,
    /// Polled beside the socket, so other threads can wake a sleeping core.
    wake: Arc<WakeFd>,
}

/// Largest receive batch handled at once.
pub const MAX_BATCH: usize = 64;

impl XdpDevice {
    pub fn new(config: &XdpConfig) -> Result<Self, XdpError> {
        let frame_count = NonZeroU32::new(config.frame_count)
            .filter(|n| n.get().is_power_of_two() && n.get() >= 64)
            .ok_or_else(|| {
                XdpError::Config(format!(
                    "UMEM frame count must be a power of two >= 64, got {}",
                    config.frame_count
                ))
            })?;
        if frame_count.get() > MAX_FRAMES {
            return Err(XdpError::Config(format!(
                "UMEM frame count {} is above the limit of {MAX_FRAMES}",
                config.frame_count
            )));
        }
        let half = frame_count.get() / 2;
        let ring =
            QueueSize::new(frame_count.get()).map_err(|e| XdpError::Config(e.to_string()))?;
        let frame_size =
            FrameSize::new(config.frame_size).map_err(|e| XdpError::Config(e.to_string()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| XdpError::Config(e.to_string()))?;
        let (umem, mut frames) =
            Umem::new(umem_config, frame_count, false).map_err(|e| XdpError::Umem {
                frames: config.frame_count,
                size: config.frame_size,
                reason: error_chain(&e),
            })?;

        let mut bind = BindFlags::XDP_USE_NEED_WAKEUP;
        bind |= if config.zero_copy {
            BindFlags::XDP_ZEROCOPY
        } else {
            BindFlags::XDP_COPY
        };
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            // Our own XDP program (bypass-xdp) steers frames; libxdp must not
            // load its default one.
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();
        let iface = CString::new(config.iface.as_str())
            .map(Interface::new)
            .map_err(|_| XdpError::Config(format!("bad interface name {:?}", config.iface)))?;
        // A killed predecessor's socket is released by the kernel a moment
        // after the process dies; until then binding the queue fails with
        // EBUSY. Wait for it briefly before calling the queue taken.
        let mut attempts = 0;
        let (tx, rx, rings) = loop {
            // SAFETY: the UMEM is not shared with another socket, so the
            // double-free hazard xsk-rs documents for shared UMEMs does not
            // apply (and INHIBIT_PROG_LOAD is set regardless).
            match unsafe { Socket::new(socket_config, &umem, &iface, config.queue) } {
                Ok(queues) => break queues,
                Err(e) if os_error(&e) == Some(libc::EBUSY) && attempts < BUSY_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let errno = os_error(&e);
                    let mut reason = error_chain(&e);
                    if errno == Some(libc::EBUSY) {
                        reason.push_str(" (is another bypass, or another AF_XDP program, already using this queue?)");
                    }
                    return Err(if config.zero_copy && errno == Some(libc::EOPNOTSUPP) {
                        XdpError::ZeroCopyUnsupported {
                            iface: config.iface.clone(),
                            queue: config.queue,
                            reason,
                        }
                    } else {
                        XdpError::Socket {
                            iface: config.iface.clone(),
                            queue: config.queue,
                            reason,
                        }
                    });
                }
            }
        };
        let (mut fill, comp) = rings.ok_or_else(|| XdpError::Socket {
            iface: config.iface.clone(),
            queue: config.queue,
            reason: "no FILL/COMPLETION rings returned for an unshared UMEM".into(),
        })?;

        let free = frames.split_off(half as usize);
        // SAFETY: these frames were just created with this UMEM and nothing
        // else refers to them; from now on they belong to the kernel until
        // they come back on the RX ring.
        let filled = unsafe { fill.produce(&frames) };
        if filled != frames.len() {
            return Err(XdpError::Config(format!(
                "FILL ring took {filled} of {} frames",
                frames.len()
            )));
        }
        let wake = WakeFd::new().map_err(|e| XdpError::Socket {
            iface: config.iface.clone(),
            queue: config.queue,
            reason: format!("eventfd: {e}"),
        })?;
        Ok(XdpDevice {
            wake: Arc::new(wake),
            umem,
            fill,
            comp,
            tx,
            rx,
            pending: Vec::with_capacity(free.len()),
            refill: Vec::with_capacity(half as usize),
            outstanding: 0,
            free,
            rx_batch: vec![FrameDesc::default(); MAX_BATCH],
            comp_batch: vec![FrameDesc::default(); half as usize],
            frame_size: config.frame_size as usize,
            counters: DeviceCounters::default(),
        })
    }

    /// Takes finished transmissions back onto the free list.
    fn reclaim_completions(&mut self) {
        if self.outstanding == 0 {
            return;
        }
        // SAFETY: descriptors on the COMPLETION ring are frames of this UMEM
        // that the kernel has finished sending; they are ours again.
        let n = unsafe { self.comp.consume(&mut self.comp_batch) };
        self.outstanding -= n;
        self.free.extend_from_slice(&self.comp_batch[..n]);
    }

    /// Gives received frames back to the FILL ring, as many as it takes now,
    /// and wakes the driver if it sleeps for want of them.
    fn refill(&mut self) {
        if !self.refill.is_empty() {
            let room = self.fill.nb_free(self.refill.len() as u32) as usize;
            let k = room.min(self.refill.len());
            // SAFETY: frames in `refill` are ours (their batch is handled
            // and no view into them survives); on FILL they belong to the
            // kernel until they come back on RX.
            let given = unsafe { self.fill.produce(&self.refill[..k]) };
            self.refill.drain(..given);
        }
        self.wake_fill();
    }

    fn wake_fill(&mut self) {
        if self.fill.needs_wakeup() {
            self.counters.fill_wakeups += 1;
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
    }
}

/// Frames per UMEM at most: 2^20 (4 GiB at 4 KiB frames), so a typo cannot
/// ask the kernel to pin the machine's memory.
pub const MAX_FRAMES: u32 = 1 << 20;
/// Tries, 50 ms apart, to bind a queue a dead predecessor still holds.
const BUSY_RETRIES: u32 = 20;

/// Transmit side of [`XdpDevice`], borrowed per batch.
pub struct XdpTx<'a> {
    umem: &'a Umem,
    free: &'a mut Vec<FrameDesc>,
    pending: &'a mut Vec<FrameDesc>,
    frame_size: usize,
}

impl TxSink for XdpTx<'_> {
    #[inline]
    fn send<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxError> {
        if len > self.frame_size {
            return Err(TxError::TooLong);
        }
        let mut desc = self.free.pop().ok_or(TxError::NoBuffer)?;
        let fits = {
            // SAFETY: `desc` came from the free list: the kernel is done with
            // it (completion ring) and no other reference to it exists.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let fits = {
                let mut cursor = data.cursor();
                cursor.set_pos(len);
                cursor.pos() == len
            };
            if fits {
                fill(data.contents_mut());
            }
            fits
        };
        if !fits {
            // The data segment is shorter than the frame (headroom).
            self.free.push(desc);
            return Err(TxError::TooLong);
        }
        self.pending.push(desc);
        Ok(())
    }
}

impl Device for XdpDevice {
    type Tx<'a> = XdpTx<'a>;

    fn receive<F>(&mut self, budget: usize, mut on_frame: F) -> usize
    where
        F: FnMut(&[u8], &mut Self::Tx<'_>),
    {
        self.reclaim_completions();
        let budget = budget.min(MAX_BATCH);
        // SAFETY: descriptors consumed from the RX ring are frames of this
        // UMEM that the kernel has filled and handed to us.
        let n = unsafe { self.rx.consume(&mut self.rx_batch[..budget]) };
        if n == 0 {
            // The driver may have gone to sleep with FILL empty (zero-copy,
            // need_wakeup): give back what is waiting and wake it.
            self.refill();
            return 0;
        }
        let mut tx = XdpTx {
            umem: &self.umem,
            free: &mut self.free,
            pending: &mut self.pending,
            frame_size: self.frame_size,
        };
        for desc in &self.rx_batch[..n] {
            // SAFETY: the frame is ours (consumed from RX, not yet back on
            // FILL); transmit frames are distinct frames, so this shared view
            // never aliases a mutable one.
            let data = unsafe { self.umem.data(desc) };
            on_frame(data.contents(), &mut tx);
        }
        self.refill.extend_from_slice(&self.rx_batch[..n]);
        self.refill();
        n
    }

    fn transmitter(&mut self) -> Self::Tx<'_> {
        self.reclaim_completions();
        XdpTx {
            umem: &self.umem,
            free: &mut self.free,
            pending: &mut self.pending,
            frame_size: self.frame_size,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let room = self.tx.nb_free(self.pending.len() as u32) as usize;
            let k = room.min(self.pending.len());
            // SAFETY: pending frames are written and owned by us; once on the
            // TX ring they belong to the kernel until they complete.
            let sent = unsafe { self.tx.produce(&self.pending[..k]) };
            self.outstanding += sent;
            self.pending.drain(..sent);
        }
        // Kick whenever frames are outstanding and the kernel asks for it,
        // not only after producing: copy mode sends at most 32 frames per
        // kick, and the rest wait for the next one.
        if self.outstanding > 0 && self.tx.needs_wakeup() {
            self.counters.tx_kicks += 1;
            self.tx.wakeup()?;
        }
        self.reclaim_completions();
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
        let mut fds = [
            libc::pollfd {
                fd: self.rx.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfds for descriptors this
        // device owns; poll writes only their `revents`.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // A signal (SIGTERM for a graceful stop) is not an error.
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if fds[1].revents != 0 {
            self.wake.clear();
        }
        Ok(())
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake.clone())
    }

    fn xsk_fd(&self) -> Option<RawFd> {
        Some(self.rx.fd().as_raw_fd())
    }

    fn counters(&self) -> DeviceCounters {
        let mut c = self.counters;
        if let Ok(k) = self.rx.fd().xdp_statistics() {
            c.kernel_rx_dropped = k.rx_dropped();
            c.kernel_rx_ring_full = k.rx_ring_full();
            c.kernel_fill_ring_empty = k.rx_fill_ring_empty_descs();
            c.kernel_invalid_descs = k.rx_invalid_descs() + k.tx_invalid_descs();
        }
        c
    }
}

/// The OS error code somewhere in an error's chain.
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
