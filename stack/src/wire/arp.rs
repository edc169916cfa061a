//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! Only the Ethernet/IPv4 instance is supported, so the address fields sit at fixed offsets. The
//! packet view reads them there whatever `hardware_len`/`protocol_len` claim; [`ArpRepr::parse`]
//! is what checks those lengths.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetAddress};
use super::{read_ipv4, read_u16, write_ipv4, write_u16, WireError};

/// Length of an Ethernet/IPv4 ARP packet: 8-byte fixed header plus 2 × (6 + 4) address bytes.
pub const PACKET_LEN: usize = 28;

/// `ar$hrd` value for Ethernet (10Mb) hardware, per the IANA ARP parameters registry.
pub const HARDWARE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;

    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: usize = 14;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: usize = 24;
}

/// The ARP opcode (`ar$op`, RFC 826 "Packet format").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who has `target_protocol_addr`?
    Request,
    /// 2: `source_protocol_addr` is at `source_hardware_addr`.
    Reply,
    /// Any other opcode (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A zero-copy view of an Ethernet/IPv4 ARP packet.
///
/// After [`ArpPacket::new_checked`] every accessor is panic-free. With
/// [`ArpPacket::new_unchecked`] accessors panic if the buffer is shorter than [`PACKET_LEN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without validating it.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking that it holds [`PACKET_LEN`] bytes. Longer buffers are
    /// accepted: an Ethernet payload carrying ARP is padded to 46 bytes (RFC 894).
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// [`WireError::Truncated`] unless the buffer holds at least [`PACKET_LEN`] bytes.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives back the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `ar$hrd`: hardware address space ([`HARDWARE_ETHERNET`] for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// `ar$pro`: protocol address space, using EtherType values.
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// `ar$hln`: bytes per hardware address.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// `ar$pln`: bytes per protocol address.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// `ar$op`.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// `ar$sha`, read at the Ethernet/IPv4 offset.
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// `ar$spa`, read at the Ethernet/IPv4 offset.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SPA)
    }

    /// `ar$tha`, read at the Ethernet/IPv4 offset.
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// `ar$tpa`, read at the Ethernet/IPv4 offset.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets `ar$hrd`.
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets `ar$pro`.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::PTYPE, value.into());
    }

    /// Sets `ar$hln`.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets `ar$pln`.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets `ar$op`.
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER, value.into());
    }

    /// Sets `ar$sha`.
    pub fn set_source_hardware_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value.0);
    }

    /// Sets `ar$spa`.
    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::SPA, value);
    }

    /// Sets `ar$tha`.
    pub fn set_target_hardware_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value.0);
    }

    /// Sets `ar$tpa`.
    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::TPA, value);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A validated Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: EthernetAddress,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Validates and reads a packet.
    ///
    /// [`WireError::Truncated`] if shorter than [`PACKET_LEN`]; [`WireError::Unsupported`] unless
    /// it is Ethernet (1) / IPv4 (0x0800) with lengths 6 / 4, or if the opcode is neither request
    /// nor reply (RFC 826 "Packet Reception": unknown `ar$hrd`/`ar$pro` are discarded).
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        let operation = match packet.operation() {
            op @ (ArpOperation::Request | ArpOperation::Reply) => op,
            ArpOperation::Unknown(_) => return Err(WireError::Unsupported),
        };
        Ok(ArpRepr {
            operation,
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Always [`PACKET_LEN`].
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes every field, including the fixed Ethernet/IPv4 type and length fields, into the
    /// first [`PACKET_LEN`] bytes of `packet`.
    ///
    /// # Panics
    ///
    /// Panics if the buffer is shorter than [`Self::buffer_len`], which the caller guarantees.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast ARP request (Ethernet payload, padding included): 24.166.172.1 at
    /// 00:07:0d:af:f4:54 asks who has 24.166.173.159.
    const REQUEST: [u8; 46] = [
        0x00, 0x01, // htype: Ethernet
        0x08, 0x00, // ptype: IPv4
        0x06, 0x04, // hlen, plen
        0x00, 0x01, // request
        0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54, // sha
        0x18, 0xa6, 0xac, 0x01, // spa 24.166.172.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha (unknown)
        0x18, 0xa6, 0xad, 0x9f, // tpa 24.166.173.159
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, // Ethernet padding
    ];

    /// The matching reply, as a Linux host sends it (no padding: the NIC adds it).
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // Ethernet/IPv4, reply
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x18, 0xa6, 0xad, 0x9f, // sender
        0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54, 0x18, 0xa6, 0xac, 0x01, // target
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54]),
            source_protocol_addr: Ipv4Addr::new(24, 166, 172, 1),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(24, 166, 173, 159),
        }
    }

    #[test]
    fn parse_real_request() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), EtherType::Ipv4);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(ArpRepr::parse(&packet), Ok(request_repr()));
    }

    #[test]
    fn round_trip_request_drops_padding() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        let mut out = [0xaau8; PACKET_LEN];
        assert_eq!(repr.buffer_len(), out.len());
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out[..], REQUEST[..PACKET_LEN]);
    }

    #[test]
    fn round_trip_reply() {
        let packet = ArpPacket::new_checked(&REPLY[..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                source_protocol_addr: Ipv4Addr::new(24, 166, 173, 159),
                target_hardware_addr: EthernetAddress([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54]),
                target_protocol_addr: Ipv4Addr::new(24, 166, 172, 1),
            }
        );
        let mut out = [0u8; PACKET_LEN];
        let mut out_packet = ArpPacket::new_checked(&mut out[..]).unwrap();
        repr.emit(&mut out_packet);
        assert_eq!(out_packet.into_inner()[..], REPLY[..]);
    }

    #[test]
    fn setters_and_getters() {
        let mut buf = [0u8; PACKET_LEN];
        let mut packet = ArpPacket::new_unchecked(&mut buf[..]);
        packet.set_hardware_type(6);
        packet.set_protocol_type(EtherType::Unknown(0x1234));
        packet.set_hardware_len(8);
        packet.set_protocol_len(16);
        packet.set_operation(ArpOperation::Unknown(9));
        packet.set_source_hardware_addr(EthernetAddress([1, 2, 3, 4, 5, 6]));
        packet.set_source_protocol_addr(Ipv4Addr::new(10, 0, 0, 1));
        packet.set_target_hardware_addr(EthernetAddress([7, 8, 9, 10, 11, 12]));
        packet.set_target_protocol_addr(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(packet.hardware_type(), 6);
        assert_eq!(packet.protocol_type(), EtherType::Unknown(0x1234));
        assert_eq!(packet.hardware_len(), 8);
        assert_eq!(packet.protocol_len(), 16);
        assert_eq!(packet.operation(), ArpOperation::Unknown(9));
        assert_eq!(
            packet.source_hardware_addr(),
            EthernetAddress([1, 2, 3, 4, 5, 6])
        );
        assert_eq!(packet.source_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            packet.target_hardware_addr(),
            EthernetAddress([7, 8, 9, 10, 11, 12])
        );
        assert_eq!(packet.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            buf,
            [
                0, 6, 0x12, 0x34, 8, 16, 0, 9, 1, 2, 3, 4, 5, 6, 10, 0, 0, 1, 7, 8, 9, 10, 11, 12,
                10, 0, 0, 2
            ]
        );
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).unwrap_err(),
                WireError::Truncated
            );
            let unchecked = ArpPacket::new_unchecked(&REQUEST[..len]);
            assert_eq!(ArpRepr::parse(&unchecked), Err(WireError::Truncated));
        }
        assert!(ArpPacket::new_checked(&REQUEST[..PACKET_LEN]).is_ok());
    }

    #[test]
    fn non_ethernet_ipv4_rejected() {
        // (byte offset, replacement bytes): htype, ptype, hlen, plen.
        let cases: [(usize, &[u8]); 6] = [
            (0, &[0x00, 0x06]), // IEEE 802 hardware
            (0, &[0x00, 0x00]), // reserved hardware type
            (2, &[0x86, 0xdd]), // IPv6 protocol
            (2, &[0x08, 0x06]), // nonsense protocol
            (4, &[0x08]),       // hlen 8 (EUI-64)
            (5, &[0x10]),       // plen 16
        ];
        for (at, bytes) in cases {
            let mut buf = REQUEST;
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            let packet = ArpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(ArpRepr::parse(&packet), Err(WireError::Unsupported), "{at}");
        }
    }

    #[test]
    fn unknown_operation_rejected() {
        for op in [0u16, 3, 4, 8, 9, 0xffff] {
            let mut buf = REQUEST;
            buf[6..8].copy_from_slice(&op.to_be_bytes());
            let packet = ArpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(packet.operation(), ArpOperation::Unknown(op));
            assert_eq!(ArpRepr::parse(&packet), Err(WireError::Unsupported));
        }
    }

    #[test]
    fn operation_conversions() {
        assert_eq!(ArpOperation::from(1), ArpOperation::Request);
        assert_eq!(ArpOperation::from(2), ArpOperation::Reply);
        assert_eq!(u16::from(ArpOperation::Request), 1);
        assert_eq!(u16::from(ArpOperation::Reply), 2);
        assert_eq!(u16::from(ArpOperation::Unknown(7)), 7);
    }

    fn exercise(buf: &[u8]) {
        let _ = ArpRepr::parse(&ArpPacket::new_unchecked(buf));
        let Ok(packet) = ArpPacket::new_checked(buf) else {
            assert!(buf.len() < PACKET_LEN);
            return;
        };
        let _ = (packet.hardware_type(), packet.protocol_type());
        let _ = (
            packet.hardware_len(),
            packet.protocol_len(),
            packet.operation(),
        );
        let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
        let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
        if let Ok(repr) = ArpRepr::parse(&packet) {
            let mut out = [0u8; PACKET_LEN];
            repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
            assert_eq!(out[..], buf[..PACKET_LEN]);
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0x0826);
        let mut buf = [0u8; 64];
        for i in 0..100_000 {
            let len = if i % 2 == 0 {
                let len = rng.usize(0..=buf.len());
                rng.fill(&mut buf[..len]);
                len
            } else {
                // A real request, possibly cut short, with a few bytes overwritten.
                let len = if rng.bool() {
                    REQUEST.len()
                } else {
                    rng.usize(0..=REQUEST.len())
                };
                buf[..len].copy_from_slice(&REQUEST[..len]);
                for _ in 0..rng.usize(1..4) {
                    if len > 0 {
                        buf[rng.usize(0..len)] = rng.u8(..);
                    }
                }
                len
            };
            exercise(&buf[..len]);
        }
    }
}
