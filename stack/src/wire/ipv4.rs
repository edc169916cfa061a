//! IPv4 (RFC 791 §3.1) with the receive-side checks of RFC 1122 §3.2.1.
//!
//! Options are never interpreted, only skipped: [`Ipv4Packet::payload`] starts after them.
//! Fragments are recognised but not reassembled ([`Ipv4Repr::parse`] rejects them).

use std::net::Ipv4Addr;

use super::{checksum, read_ipv4, read_u16, write_ipv4, write_u16, WireError};

/// Length of an IPv4 header without options (IHL = 5).
pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
}

/// Flag bits and offset mask of the flags/fragment-offset word (RFC 791 §3.1).
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// The Protocol field: which upper layer the payload belongs to (IANA protocol numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1 (RFC 792).
    Icmp,
    /// 6 (RFC 9293).
    Tcp,
    /// 17 (RFC 768).
    Udp,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// A zero-copy view of an IPv4 datagram.
///
/// After [`Ipv4Packet::new_checked`] the header, options and `total_len` are consistent with the
/// buffer, so every accessor (including [`Ipv4Packet::payload`]) is panic-free. With
/// [`Ipv4Packet::new_unchecked`] accessors may panic on short or inconsistent buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without validating it.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`Ipv4Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the lengths the header claims fit the buffer:
    ///
    /// * at least [`HEADER_LEN`] bytes, else [`WireError::Truncated`];
    /// * version 4 (RFC 1122 §3.2.1.1), else [`WireError::Malformed`];
    /// * IHL >= 5 (RFC 791 §3.1), else [`WireError::Malformed`];
    /// * the header with options fits, else [`WireError::Truncated`];
    /// * total length >= header length, else [`WireError::Malformed`];
    /// * total length fits, else [`WireError::Truncated`].
    ///
    /// A buffer longer than the total length is fine: Ethernet pads short frames (RFC 894).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::Malformed);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives back the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 for any checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL × 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services codepoint (RFC 2474 §3).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification bits (RFC 3168 §5).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length of the datagram, header included.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification, used only for reassembly.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & FRAG_OFFSET_MASK) * 8
    }

    /// True if this datagram is any piece of a fragmented one (first, middle or last).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// True if the header checksum, computed over the whole header including options, verifies
    /// (RFC 791 §3.1 "Header Checksum", RFC 1122 §3.2.1.2).
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        checksum::data(header) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload: after the options, up to `total_len`, so link-layer padding is excluded.
    ///
    /// The slice borrows the underlying buffer (`'a`), not the view, so a function can parse a
    /// datagram it was lent and return its payload. Only views over a shared reference have this
    /// getter; for an owned or `&mut` buffer use [`Ipv4Packet::payload_mut`], or wrap
    /// `packet.as_ref()` in a new view.
    pub fn payload(&self) -> &'a [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        let buffer: &'a T = self.buffer;
        &buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version (only the low four bits are kept).
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes; it is stored as IHL = `value / 4`.
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) & 0x0f);
    }

    /// Sets the DSCP (only the low six bits are kept).
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Sets the ECN bits (only the low two bits are kept).
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Clears all three flags (including the reserved bit) and keeps the offset.
    pub fn clear_flags(&mut self) {
        let raw = read_u16(self.buffer.as_ref(), field::FLG_OFF) & FRAG_OFFSET_MASK;
        write_u16(self.buffer.as_mut(), field::FLG_OFF, raw);
    }

    /// Sets or clears Don't Fragment.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DF, value);
    }

    /// Sets or clears More Fragments.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MF, value);
    }

    /// Sets the fragment offset in bytes; it is stored in 8-byte units, so `value % 8` is lost.
    pub fn set_frag_offset(&mut self, value: u16) {
        let raw = read_u16(self.buffer.as_ref(), field::FLG_OFF);
        let raw = (raw & !FRAG_OFFSET_MASK) | (value / 8);
        write_u16(self.buffer.as_mut(), field::FLG_OFF, raw);
    }

    /// Sets the time to live.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol field.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Sets the checksum field verbatim (see [`Ipv4Packet::fill_checksum`]).
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::SRC_ADDR, value);
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::DST_ADDR, value);
    }

    /// Computes and stores the header checksum over `header_len` bytes; call it after every
    /// other header field is final.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..usize::from(self.header_len())]);
        self.set_checksum(!sum);
    }

    /// Mutable payload, after the options and up to `total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let raw = read_u16(self.buffer.as_ref(), field::FLG_OFF);
        let raw = if value { raw | flag } else { raw & !flag };
        write_u16(self.buffer.as_mut(), field::FLG_OFF, raw);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The validated, high-level content of an unfragmented IPv4 header.
///
/// DSCP/ECN, identification and options are not represented: this stack neither honours nor
/// sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_header: IpProtocol,
    /// Bytes after the header (and options), i.e. `total_len - header_len`.
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv4Repr {
    /// Validates and reads a packet. Errors, in order of checking:
    ///
    /// * any [`Ipv4Packet::check_len`] failure (so an unchecked packet is safe here too);
    /// * [`WireError::Checksum`] if the header checksum fails (RFC 1122 §3.2.1.2);
    /// * [`WireError::Unsupported`] for any fragment, since there is no reassembly;
    /// * [`WireError::Malformed`] if the source is the limited broadcast or a multicast address,
    ///   which RFC 1122 §3.2.1.3 requires to be discarded.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Unsupported);
        }
        let src_addr = packet.src_addr();
        if src_addr.is_broadcast() || src_addr.is_multicast() {
            return Err(WireError::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr,
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Bytes for the header and payload: `HEADER_LEN + payload_len` (no options are emitted).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header (version 4, IHL 5, DSCP/ECN 0, ident 0, DF set, offset 0) and
    /// fills its checksum. The payload is left for the caller to write via `payload_mut`.
    ///
    /// Ident 0 is allowed for atomic datagrams (DF set, not fragmented; RFC 6864 §4.1).
    /// `payload_len` must not exceed `65535 - HEADER_LEN`; the MTU guarantees it.
    ///
    /// # Panics
    ///
    /// Panics if the buffer is shorter than [`HEADER_LEN`]; the caller sizes it with
    /// [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp(0);
        packet.set_ecn(0);
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(0);
        packet.clear_flags();
        packet.set_dont_frag(true);
        packet.set_frag_offset(0);
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request as sent by Linux `ping` (192.168.1.10 -> 192.168.1.1, DF, TTL 64,
    /// 56 data bytes: a timeval then 0x10..=0x37). Header checksum 0x2a0e, ICMP checksum 0xd89e.
    const PING_REQUEST: [u8; 84] = [
        0x45, 0x00, 0x00, 0x54, 0x8d, 0x3f, 0x40, 0x00, 0x40, 0x01, 0x2a, 0x0e, 0xc0, 0xa8, 0x01,
        0x0a, 0xc0, 0xa8, 0x01, 0x01, // IPv4 header
        0x08, 0x00, 0xd8, 0x9e, 0x1c, 0x46, 0x00, 0x01, // ICMP echo request, id 0x1c46, seq 1
        0xb2, 0xa1, 0x27, 0x66, 0x00, 0x00, 0x00, 0x00, 0x5e, 0x3f, 0x0c, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
        0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    /// The echo reply this stack sends back: ident 0, DF, TTL 64. Header checksum 0xb74d.
    const PING_REPLY: [u8; 84] = [
        0x45, 0x00, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0xb7, 0x4d, 0xc0, 0xa8, 0x01,
        0x01, 0xc0, 0xa8, 0x01, 0x0a, // IPv4 header
        0x00, 0x00, 0xe0, 0x9e, 0x1c, 0x46, 0x00, 0x01, // ICMP echo reply
        0xb2, 0xa1, 0x27, 0x66, 0x00, 0x00, 0x00, 0x00, 0x5e, 0x3f, 0x0c, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
        0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    /// An IGMPv2 membership report for 224.0.0.251: IHL 6 with a Router Alert option
    /// (RFC 2113), DSCP CS6, TTL 1, header checksum 0x416a.
    const IGMP_WITH_OPTION: [u8; 32] = [
        0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x41, 0x6a, 0xc0, 0xa8, 0x01,
        0x0a, 0xe0, 0x00, 0x00, 0xfb, // IPv4 header
        0x94, 0x04, 0x00, 0x00, // Router Alert option
        0x16, 0x00, 0x09, 0x04, 0xe0, 0x00, 0x00, 0xfb, // IGMPv2 report
    ];

    /// Recomputes the header checksum of a test buffer after a mutation.
    fn refill(buf: &mut [u8]) {
        Ipv4Packet::new_unchecked(buf).fill_checksum();
    }

    /// Header and payload of a datagram the function was lent: the payload outlives the view.
    fn accept(bytes: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
        let packet = Ipv4Packet::new_checked(bytes)?;
        Ok((Ipv4Repr::parse(&packet)?, packet.payload()))
    }

    #[test]
    fn payload_borrows_the_buffer_not_the_view() {
        let (repr, payload) = accept(&PING_REQUEST).unwrap();
        assert_eq!(repr.payload_len, payload.len());
        assert_eq!(payload, &PING_REQUEST[20..]);
        // Link padding after total_len is excluded.
        let mut padded = PING_REQUEST.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(accept(&padded).unwrap().1, &PING_REQUEST[20..]);
        assert_eq!(accept(&PING_REQUEST[..19]), Err(WireError::Truncated));
    }

    #[test]
    fn parse_real_ping() {
        let packet = Ipv4Packet::new_checked(&PING_REQUEST[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.dscp(), 0);
        assert_eq!(packet.ecn(), 0);
        assert_eq!(packet.total_len(), 84);
        assert_eq!(packet.ident(), 0x8d3f);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.next_header(), IpProtocol::Icmp);
        assert_eq!(packet.checksum(), 0x2a0e);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 1, 1));
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &PING_REQUEST[20..]);
        assert_eq!(
            Ipv4Repr::parse(&packet),
            Ok(Ipv4Repr {
                src_addr: Ipv4Addr::new(192, 168, 1, 10),
                dst_addr: Ipv4Addr::new(192, 168, 1, 1),
                next_header: IpProtocol::Icmp,
                payload_len: 64,
                hop_limit: 64,
            })
        );
    }

    #[test]
    fn fill_checksum_matches_capture() {
        for vector in [&PING_REQUEST[..], &PING_REPLY[..], &IGMP_WITH_OPTION[..]] {
            let mut buf = [0u8; 84];
            let buf = &mut buf[..vector.len()];
            buf.copy_from_slice(vector);
            buf[10] = 0x12;
            buf[11] = 0x34;
            let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            assert!(!packet.verify_checksum());
            packet.fill_checksum();
            assert!(packet.verify_checksum());
            assert_eq!(buf, vector);
        }
    }

    #[test]
    fn round_trip_reply() {
        let packet = Ipv4Packet::new_checked(&PING_REPLY[..]).unwrap();
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.buffer_len(), PING_REPLY.len());
        let mut out = [0xa5u8; 84];
        let mut out_packet = Ipv4Packet::new_unchecked(&mut out[..]);
        repr.emit(&mut out_packet);
        out_packet.payload_mut().copy_from_slice(packet.payload());
        assert_eq!(out, PING_REPLY);
    }

    #[test]
    fn emit_reply_to_request() {
        // What the ICMP layer does: swap addresses, keep TTL, same payload length.
        let request = Ipv4Repr::parse(&Ipv4Packet::new_checked(&PING_REQUEST[..]).unwrap());
        let request = request.unwrap();
        let reply = Ipv4Repr {
            src_addr: request.dst_addr,
            dst_addr: request.src_addr,
            ..request
        };
        let mut out = [0u8; 84];
        reply.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..HEADER_LEN], PING_REPLY[..HEADER_LEN]);
    }

    #[test]
    fn options_are_skipped() {
        let packet = Ipv4Packet::new_checked(&IGMP_WITH_OPTION[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.dscp(), 48);
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &IGMP_WITH_OPTION[24..]);
        assert_eq!(
            Ipv4Repr::parse(&packet),
            Ok(Ipv4Repr {
                src_addr: Ipv4Addr::new(192, 168, 1, 10),
                dst_addr: Ipv4Addr::new(224, 0, 0, 251),
                next_header: IpProtocol::Unknown(2),
                payload_len: 8,
                hop_limit: 1,
            })
        );
        // The checksum covers the options too.
        let mut buf = IGMP_WITH_OPTION;
        buf[22] = 1;
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Checksum));
    }

    #[test]
    fn ethernet_padding_trimmed() {
        // A 46-byte Ethernet payload holding a 32-byte datagram plus 14 padding bytes.
        let mut buf = [0xeeu8; 46];
        buf[..32].copy_from_slice(&IGMP_WITH_OPTION);
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.payload(), &IGMP_WITH_OPTION[24..]);
        assert_eq!(Ipv4Repr::parse(&packet).unwrap().payload_len, 8);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..PING_REQUEST.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&PING_REQUEST[..len]).unwrap_err(),
                WireError::Truncated,
                "len {len}"
            );
            let unchecked = Ipv4Packet::new_unchecked(&PING_REQUEST[..len]);
            assert_eq!(Ipv4Repr::parse(&unchecked), Err(WireError::Truncated));
        }
        for len in 0..IGMP_WITH_OPTION.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&IGMP_WITH_OPTION[..len]).unwrap_err(),
                WireError::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn bad_version() {
        for version in [0u8, 1, 5, 6, 15] {
            let mut buf = PING_REQUEST;
            buf[0] = (version << 4) | 5;
            refill(&mut buf);
            assert_eq!(Ipv4Packet::new_checked(&buf[..]), Err(WireError::Malformed));
            assert_eq!(
                Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&buf[..])),
                Err(WireError::Malformed)
            );
        }
    }

    #[test]
    fn bad_ihl() {
        for ihl in 0u8..5 {
            let mut buf = PING_REQUEST;
            buf[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&buf[..]),
                Err(WireError::Malformed),
                "{ihl}"
            );
        }
    }

    #[test]
    fn ihl_beyond_buffer() {
        // IHL 15 = 60 bytes of header in a 40-byte buffer.
        let mut buf = [0u8; 40];
        buf[..20].copy_from_slice(&PING_REQUEST[..20]);
        buf[0] = 0x4f;
        buf[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&buf[..]), Err(WireError::Truncated));
        // Options present but cut off.
        assert_eq!(
            Ipv4Packet::new_checked(&IGMP_WITH_OPTION[..22]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn total_len_below_header_len() {
        for total in [0u16, 1, 19] {
            let mut buf = PING_REQUEST;
            buf[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(Ipv4Packet::new_checked(&buf[..]), Err(WireError::Malformed));
        }
        // 20 is below the 24-byte header of the packet with options.
        let mut buf = IGMP_WITH_OPTION;
        buf[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&buf[..]), Err(WireError::Malformed));
        // Equal is fine: an empty payload.
        buf[2..4].copy_from_slice(&24u16.to_be_bytes());
        refill(&mut buf);
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.payload().is_empty());
        assert_eq!(Ipv4Repr::parse(&packet).unwrap().payload_len, 0);
    }

    #[test]
    fn total_len_beyond_buffer() {
        for total in [85u16, 1500, 0xffff] {
            let mut buf = PING_REQUEST;
            buf[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(Ipv4Packet::new_checked(&buf[..]), Err(WireError::Truncated));
        }
    }

    #[test]
    fn bad_checksum() {
        let mut buf = PING_REQUEST;
        buf[11] ^= 0x01;
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Checksum));
        // A flipped address bit is caught too.
        let mut buf = PING_REQUEST;
        buf[15] ^= 0x80;
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Checksum));
        // The payload is not covered by the header checksum.
        let mut buf = PING_REQUEST;
        buf[40] ^= 0xff;
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(Ipv4Repr::parse(&packet).is_ok());
    }

    #[test]
    fn fragments_rejected() {
        // First fragment (MF), middle (MF + offset), last (offset only).
        for (mf, offset) in [(true, 0u16), (true, 1480), (false, 2960), (false, 8)] {
            let mut buf = PING_REQUEST;
            let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
            packet.set_dont_frag(false);
            packet.set_more_frags(mf);
            packet.set_frag_offset(offset);
            packet.fill_checksum();
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            assert!(packet.is_fragment());
            assert_eq!(packet.more_frags(), mf);
            assert_eq!(packet.frag_offset(), offset);
            assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Unsupported));
        }
        // A checksum error is reported before the fragment.
        let mut buf = PING_REQUEST;
        buf[6] = 0x20;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).unwrap()),
            Err(WireError::Checksum)
        );
    }

    #[test]
    fn broadcast_or_multicast_source_rejected() {
        for src in [
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(239, 255, 255, 250),
        ] {
            let mut buf = PING_REQUEST;
            let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
            packet.set_src_addr(src);
            packet.fill_checksum();
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Ipv4Repr::parse(&packet), Err(WireError::Malformed), "{src}");
        }
        // A multicast destination is fine (that is the interface's policy, not the parser's).
        let packet = Ipv4Packet::new_checked(&IGMP_WITH_OPTION[..]).unwrap();
        assert!(Ipv4Repr::parse(&packet).is_ok());
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 28];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        packet.set_version(4);
        packet.set_header_len(24);
        packet.set_dscp(46);
        packet.set_ecn(3);
        packet.set_total_len(28);
        packet.set_ident(0xbeef);
        packet.set_dont_frag(true);
        packet.set_more_frags(true);
        packet.set_frag_offset(0x1fff * 8);
        packet.set_hop_limit(255);
        packet.set_next_header(IpProtocol::Udp);
        packet.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        packet.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        packet.payload_mut().copy_from_slice(&[9, 9, 9, 9]);
        packet.fill_checksum();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.ecn(), 3);
        assert_eq!(packet.total_len(), 28);
        assert_eq!(packet.ident(), 0xbeef);
        assert!(packet.dont_frag() && packet.more_frags());
        assert_eq!(packet.frag_offset(), 0x1fff * 8);
        assert_eq!(packet.hop_limit(), 255);
        assert_eq!(packet.next_header(), IpProtocol::Udp);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload_mut(), &[9, 9, 9, 9]);
        packet.set_dont_frag(false);
        assert!(!packet.dont_frag() && packet.more_frags());
        packet.clear_flags();
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0x1fff * 8);
        packet.set_checksum(0x1234);
        assert_eq!(packet.checksum(), 0x1234);
        assert_eq!(buf[..2], [0x46, (46 << 2) | 3]);
    }

    #[test]
    fn protocol_conversions() {
        for (value, proto) in [
            (1u8, IpProtocol::Icmp),
            (6, IpProtocol::Tcp),
            (17, IpProtocol::Udp),
            (2, IpProtocol::Unknown(2)),
        ] {
            assert_eq!(IpProtocol::from(value), proto);
            assert_eq!(u8::from(proto), value);
        }
    }

    fn exercise(buf: &[u8]) {
        let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(buf));
        let Ok(packet) = Ipv4Packet::new_checked(buf) else {
            return;
        };
        let _ = (
            packet.version(),
            packet.header_len(),
            packet.dscp(),
            packet.ecn(),
        );
        let _ = (packet.total_len(), packet.ident(), packet.dont_frag());
        let _ = (
            packet.more_frags(),
            packet.frag_offset(),
            packet.is_fragment(),
        );
        let _ = (packet.hop_limit(), packet.next_header(), packet.checksum());
        let _ = (
            packet.src_addr(),
            packet.dst_addr(),
            packet.verify_checksum(),
        );
        assert_eq!(
            packet.payload().len(),
            usize::from(packet.total_len()) - usize::from(packet.header_len())
        );
        if let Ok(repr) = Ipv4Repr::parse(&packet) {
            let mut out = [0u8; 128];
            let out = &mut out[..repr.buffer_len()];
            let mut out_packet = Ipv4Packet::new_unchecked(&mut out[..]);
            repr.emit(&mut out_packet);
            out_packet.payload_mut().copy_from_slice(packet.payload());
            let reparsed = Ipv4Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Ipv4Repr::parse(&reparsed), Ok(repr));
            assert_eq!(reparsed.payload(), packet.payload());
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0x0791);
        let mut buf = [0u8; 100];
        let vectors = [&PING_REQUEST[..], &PING_REPLY[..], &IGMP_WITH_OPTION[..]];
        for i in 0..100_000 {
            let len = if i % 2 == 0 {
                let len = rng.usize(0..=buf.len());
                rng.fill(&mut buf[..len]);
                if len > 0 && rng.bool() {
                    // Make it past the version check more often.
                    buf[0] = 0x40 | (buf[0] & 0x0f);
                }
                len
            } else {
                // A real packet, possibly cut short, with a few bytes overwritten and, half the
                // time, a fixed-up checksum so that the checks after it are reached.
                let vector = vectors[rng.usize(..vectors.len())];
                let len = if rng.bool() {
                    vector.len() + rng.usize(0..=buf.len() - vector.len())
                } else {
                    rng.usize(0..=vector.len())
                };
                buf[..len].fill(0);
                let copy = len.min(vector.len());
                buf[..copy].copy_from_slice(&vector[..copy]);
                for _ in 0..rng.usize(1..4) {
                    if len > 0 {
                        buf[rng.usize(0..len.min(24))] = rng.u8(..);
                    }
                }
                if rng.bool() {
                    let header_len = usize::from(buf.first().copied().unwrap_or(0) & 0x0f) * 4;
                    if header_len >= 12 && header_len <= len {
                        refill(&mut buf[..header_len]);
                    }
                }
                len
            };
            exercise(&buf[..len]);
        }
    }
}
