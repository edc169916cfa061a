//! Packet I/O: the trait the per-core loop drives, and its drivers.
//!
//! - [`xdp`]: AF_XDP on xsk-rs, one socket and UMEM per receive queue.
//! - [`memlink`]: two endpoints joined in memory, with seeded drop,
//!   duplication, reordering, corruption and delay, for deterministic tests.
//! - [`threadlink`]: the same link for endpoints on different threads, on
//!   the real clock, for tests of the threaded runtime and user API.
//! - [`wake`]: waking a sleeping core from another thread.
//!
//! A device hands received frames to a callback in batches, together with a
//! [`TxSink`] that writes answers straight into transmit buffers; `flush`
//! pushes everything queued to the wire with one kick.

pub mod capture;
pub mod linktrace;
pub mod memlink;
pub mod threadlink;
#[allow(unsafe_code)] // eventfd; see the SAFETY notes
pub mod wake;
#[allow(unsafe_code)] // ring and UMEM access; see the SAFETY notes
pub mod xdp;

use std::{fmt, io, os::fd::RawFd, time::Duration};

pub use wake::Waker;

/// Why a frame could not be queued for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// Every transmit buffer is in flight; the frame is dropped (and counted).
    NoBuffer,
    /// The frame is longer than a transmit buffer.
    TooLong,
}

/// Where frames to send are written.
pub trait TxSink {
    /// Queues one frame of exactly `len` bytes, written in place by `fill`.
    fn send<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxError>;
}

/// A source and sink of Ethernet frames for one core.
pub trait Device {
    /// The transmitter handed out alongside received frames.
    type Tx<'a>: TxSink
    where
        Self: 'a;

    /// Hands up to `budget` received frames to `on_frame`, each with a
    /// transmitter for answers. Returns how many frames were handled.
    fn receive<F>(&mut self, budget: usize, on_frame: F) -> usize
    where
        F: FnMut(&[u8], &mut Self::Tx<'_>);

    /// A transmitter for frames that no received frame triggered (timers).
    fn transmitter(&mut self) -> Self::Tx<'_>;

    /// Sends what is queued (one kick per batch) and recycles buffers.
    fn flush(&mut self) -> io::Result<()>;

    /// Sleeps until a frame may have arrived, the device's [`Waker`] was
    /// called, or `timeout` has passed.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;

    /// Wakes this device's `wait` from another thread.
    fn waker(&self) -> Waker {
        Waker::noop()
    }

    /// The AF_XDP socket, for the XDP program's socket map (none for
    /// in-memory devices).
    fn xsk_fd(&self) -> Option<RawFd> {
        None
    }

    /// What the device and, where it has them, the kernel counted.
    fn counters(&self) -> DeviceCounters {
        DeviceCounters::default()
    }
}

/// Device-level counters: syscalls the driver made and frames the kernel
/// dropped before the stack saw them (AF_XDP's XDP_STATISTICS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Transmit kicks (sendto).
    pub tx_kicks: u64,
    /// FILL-ring wakeups (need_wakeup).
    pub fill_wakeups: u64,
    /// Dropped by the kernel for other reasons.
    pub kernel_rx_dropped: u64,
    /// Dropped by the kernel because our RX ring was full.
    pub kernel_rx_ring_full: u64,
    /// Times the kernel found the FILL ring empty.
    pub kernel_fill_ring_empty: u64,
    /// Invalid descriptors, receive and transmit (a driver bug if nonzero).
    pub kernel_invalid_descs: u64,
}

impl DeviceCounters {
    pub fn accumulate(&mut self, o: &DeviceCounters) {
        self.tx_kicks += o.tx_kicks;
        self.fill_wakeups += o.fill_wakeups;
        self.kernel_rx_dropped += o.kernel_rx_dropped;
        self.kernel_rx_ring_full += o.kernel_rx_ring_full;
        self.kernel_fill_ring_empty += o.kernel_fill_ring_empty;
        self.kernel_invalid_descs += o.kernel_invalid_descs;
    }
}

impl fmt::Display for DeviceCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx_kicks={} fill_wakeups={} kernel_rx_dropped={} kernel_rx_ring_full={} kernel_fill_ring_empty={} kernel_invalid_descs={}",
            self.tx_kicks,
            self.fill_wakeups,
            self.kernel_rx_dropped,
            self.kernel_rx_ring_full,
            self.kernel_fill_ring_empty,
            self.kernel_invalid_descs
        )
    }
}
