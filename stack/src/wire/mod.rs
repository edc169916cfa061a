//! Zero-copy wire formats: Ethernet II, ARP, IPv4, ICMPv4 and TCP.
//!
//! Every protocol follows the same two-layer design (after smoltcp):
//!
//! * `XxxPacket<T: AsRef<[u8]>>` is a typed view over a byte buffer. `new_checked` validates the
//!   lengths once so that every getter afterwards is infallible and panic-free; setters exist when
//!   `T: AsMut<[u8]>`. Nothing is copied.
//! * `XxxRepr` is the high-level, validated meaning of a packet. `parse` rejects bad values in one
//!   place, `buffer_len` tells the caller how much room to reserve, and `emit` writes a packet into
//!   a buffer of that size and cannot fail.
//!
//! Getters that return a part of the buffer (`payload`, `options`, ICMP `data`) exist only on views
//! over a shared reference, `XxxPacket<&'a T>`, and return `&'a [u8]`: the slice borrows the
//! underlying buffer, not the view, so a function can parse a frame it was lent and return pieces
//! of it. Views over owned or `&mut` buffers have `payload_mut` etc. instead (or wrap
//! `packet.as_ref()` in a new view).
//!
//! No code in this module allocates, uses `unsafe`, or panics on received bytes.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;

use core::fmt;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use self::icmp::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use self::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use self::tcp::{SeqNumber, TcpControl, TcpOption, TcpPacket, TcpRepr, TcpTimestamp};

/// Why a buffer could not be interpreted as a packet.
///
/// Deliberately small and `Copy` so the receive path can count drops per reason without
/// allocating (see [`WireError::as_str`] for stable metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than a header or length field says it must be.
    Truncated,
    /// A field holds a value the protocol forbids (bad version, impossible length, ...).
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Well-formed, but a feature this stack does not implement (fragments, non-Ethernet ARP, ...).
    Unsupported,
}

impl WireError {
    /// A stable, lowercase label, suitable for metrics and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::Malformed => "malformed",
            WireError::Checksum => "bad_checksum",
            WireError::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for WireError {}

/// Reads a big-endian `u16` at `at`; the caller guarantees `at + 2 <= buf.len()`.
#[inline]
fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Writes a big-endian `u16` at `at`; the caller guarantees `at + 2 <= buf.len()`.
#[inline]
fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Reads a big-endian `u32` at `at`; the caller guarantees `at + 4 <= buf.len()`.
#[inline]
fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian `u32` at `at`; the caller guarantees `at + 4 <= buf.len()`.
#[inline]
fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Reads an IPv4 address at `at`; the caller guarantees `at + 4 <= buf.len()`.
#[inline]
fn read_ipv4(buf: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}

/// Writes an IPv4 address at `at`; the caller guarantees `at + 4 <= buf.len()`.
#[inline]
fn write_ipv4(buf: &mut [u8], at: usize, addr: std::net::Ipv4Addr) {
    buf[at..at + 4].copy_from_slice(&addr.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels() {
        assert_eq!(WireError::Truncated.as_str(), "truncated");
        assert_eq!(WireError::Malformed.as_str(), "malformed");
        assert_eq!(WireError::Checksum.as_str(), "bad_checksum");
        assert_eq!(WireError::Unsupported.as_str(), "unsupported");
        assert_eq!(WireError::Checksum.to_string(), "bad_checksum");
        let boxed: Box<dyn std::error::Error> = Box::new(WireError::Malformed);
        assert_eq!(boxed.to_string(), "malformed");
    }
}
