//! A transmit sink that keeps what is sent, for tests and benchmarks. Its
//! buffers are reused after `clear`, so a benchmark loop allocates nothing
//! once warm.

use super::{TxError, TxSink};

/// Collects sent frames in order.
#[derive(Debug, Default)]
pub struct Capture {
    buffers: Vec<Vec<u8>>,
    used: usize,
    /// Refuse frames beyond this many (to test transmit back-pressure).
    pub limit: Option<usize>,
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames sent since the last `clear`.
    pub fn frames(&self) -> &[Vec<u8>] {
        &self.buffers[..self.used]
    }

    /// Forgets the frames, keeping the buffers.
    pub fn clear(&mut self) {
        self.used = 0;
    }
}

impl TxSink for Capture {
    fn send<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxError> {
        if self.limit.is_some_and(|l| self.used >= l) {
            return Err(TxError::NoBuffer);
        }
        if self.used == self.buffers.len() {
            self.buffers.push(Vec::with_capacity(2048));
        }
        let buf = &mut self.buffers[self.used];
        // Filled with a pattern, not zeros, so a builder that forgets to
        // write a byte shows up in tests.
        buf.clear();
        buf.resize(len, 0xAA);
        fill(buf);
        self.used += 1;
        Ok(())
    }
}
