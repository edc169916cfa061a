//! Packet I/O: the trait the per-core loop drives, and its drivers.
//!
//! - [`xdp`]: AF_XDP on xsk-rs, one socket and UMEM per receive queue.
//! - [`memlink`]: two endpoints joined in memory, with seeded drop,
//!   duplication, reordering, corruption and delay, for deterministic tests.
//!
//! A device hands received frames to a callback in batches, together with a
//! [`TxSink`] that writes answers straight into transmit buffers; `flush`
//! pushes everything queued to the wire with one kick.

pub mod capture;
pub mod memlink;
pub mod xdp;

use std::{io, time::Duration};

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

    /// Sleeps until a frame may have arrived or `timeout` has passed.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;
}
