//! ICMP for IPv4 (RFC 792), echo only (RFC 1122 §3.2.2.6).
//!
//! The packet view covers any ICMPv4 message's common 8-byte header; [`Icmpv4Repr`] only
//! represents echo request and reply, the two messages this stack answers or sends.

use super::{checksum, read_u16, write_u16, WireError};

/// Length of the ICMPv4 header: type, code, checksum and the 4-byte "rest of header".
pub const HEADER_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
}

/// ICMPv4 message type (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    /// 0.
    EchoReply,
    /// 3.
    DstUnreachable,
    /// 11.
    TimeExceeded,
    /// 8.
    EchoRequest,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(value: u8) -> Self {
        match value {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(value: Icmpv4Message) -> Self {
        match value {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::Unknown(other) => other,
        }
    }
}

/// A zero-copy view of an ICMPv4 message.
///
/// The buffer must be exactly the IPv4 payload (use [`super::Ipv4Packet::payload`], which drops
/// link padding): the checksum covers all of it. After [`Icmpv4Packet::new_checked`] every
/// accessor is panic-free; with [`Icmpv4Packet::new_unchecked`] they panic on buffers shorter
/// than [`HEADER_LEN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without validating it.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// [`WireError::Truncated`] unless the buffer holds at least [`HEADER_LEN`] bytes.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives back the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code (must be 0 for echo).
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo messages only).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo messages only).
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// True if the checksum over the whole message verifies (RFC 792, "Checksum").
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    ///
    /// The slice borrows the underlying buffer (`'a`), not the view. Only views over a shared
    /// reference have this getter; for an owned or `&mut` buffer use [`Icmpv4Packet::data_mut`],
    /// or wrap `packet.as_ref()` in a new view.
    pub fn data(&self) -> &'a [u8] {
        let buffer: &'a T = self.buffer;
        &buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field verbatim (see [`Icmpv4Packet::fill_checksum`]).
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
    }

    /// Computes and stores the checksum over the whole buffer; call it last.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// Mutable access to everything after the 8-byte header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A validated ICMPv4 echo message. `data` borrows from the received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Validates and reads a message. Errors, in order of checking:
    ///
    /// * [`WireError::Truncated`] if shorter than [`HEADER_LEN`] (an unchecked packet is safe);
    /// * [`WireError::Checksum`] if the checksum fails (RFC 1122 §3.2.2: silently discard);
    /// * [`WireError::Malformed`] for an echo with a non-zero code (RFC 792 "Echo": code 0);
    /// * [`WireError::Unsupported`] for every other message type.
    ///
    /// `data` borrows the buffer the view was made over (`'a`), not the view itself, so the view
    /// may be a temporary.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
    ) -> Result<Icmpv4Repr<'a>, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        let msg_type = packet.msg_type();
        match msg_type {
            Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply if packet.msg_code() != 0 => {
                Err(WireError::Malformed)
            }
            Icmpv4Message::EchoRequest => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.data(),
            }),
            Icmpv4Message::EchoReply => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.data(),
            }),
            _ => Err(WireError::Unsupported),
        }
    }

    /// `HEADER_LEN + data.len()`.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
        }
    }

    /// Writes the header and data and fills the checksum.
    ///
    /// The checksum covers the whole buffer, so it must be exactly [`Self::buffer_len`] bytes.
    ///
    /// # Panics
    ///
    /// Panics if the buffer is shorter than [`Self::buffer_len`], which the caller guarantees.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let (msg_type, ident, seq_no, data) = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (Icmpv4Message::EchoRequest, ident, seq_no, data),
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (Icmpv4Message::EchoReply, ident, seq_no, data),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(0);
        packet.set_echo_ident(ident);
        packet.set_echo_seq_no(seq_no);
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ICMP part of a Linux `ping` echo request: id 0x1c46, seq 1, checksum 0xd89e, 56 data
    /// bytes (a timeval, then 0x10..=0x37).
    const ECHO_REQUEST: [u8; 64] = [
        0x08, 0x00, 0xd8, 0x9e, 0x1c, 0x46, 0x00, 0x01, // header
        0xb2, 0xa1, 0x27, 0x66, 0x00, 0x00, 0x00, 0x00, 0x5e, 0x3f, 0x0c, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
        0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    /// Its reply: only the type changes, so the checksum goes up by 0x0800 to 0xe09e.
    const ECHO_REPLY_HEADER: [u8; 8] = [0x00, 0x00, 0xe0, 0x9e, 0x1c, 0x46, 0x00, 0x01];

    /// A port unreachable quoting the start of a UDP datagram (checksum 0xddf8).
    const PORT_UNREACHABLE: [u8; 36] = [
        0x03, 0x03, 0xdd, 0xf8, 0x00, 0x00, 0x00, 0x00, // header
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0xf7, 0x55, 0xc0, 0xa8, 0x01,
        0x0a, 0xc0, 0xa8, 0x01, 0x01, // quoted IPv4 header
        0x9c, 0x40, 0x82, 0x9b, 0x00, 0x28, 0x00, 0x00, // quoted UDP header
    ];

    /// An echo request without data: 0x0800 + 0x1c46 + 0x0001 = 0x2447, checksum 0xdbb8.
    const EMPTY_ECHO_REQUEST: [u8; 8] = [0x08, 0x00, 0xdb, 0xb8, 0x1c, 0x46, 0x00, 0x01];

    fn reply_bytes() -> [u8; 64] {
        let mut buf = ECHO_REQUEST;
        buf[..8].copy_from_slice(&ECHO_REPLY_HEADER);
        buf
    }

    /// An echo request's data, from a message the function was lent: the repr outlives the view.
    fn echo_data(bytes: &[u8]) -> Result<&[u8], WireError> {
        match Icmpv4Repr::parse(&Icmpv4Packet::new_checked(bytes)?)? {
            Icmpv4Repr::EchoRequest { data, .. } => Ok(data),
            Icmpv4Repr::EchoReply { .. } => Err(WireError::Unsupported),
        }
    }

    #[test]
    fn data_borrows_the_buffer_not_the_view() {
        assert_eq!(echo_data(&ECHO_REQUEST), Ok(&ECHO_REQUEST[8..]));
        assert_eq!(echo_data(&EMPTY_ECHO_REQUEST), Ok(&[][..]));
        assert_eq!(echo_data(&ECHO_REQUEST[..7]), Err(WireError::Truncated));
        let data = Icmpv4Packet::new_checked(&ECHO_REQUEST).unwrap().data();
        assert_eq!(data, &ECHO_REQUEST[8..]);
    }

    #[test]
    fn parse_real_request() {
        let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!(packet.checksum(), 0xd89e);
        assert_eq!(packet.echo_ident(), 0x1c46);
        assert_eq!(packet.echo_seq_no(), 1);
        assert_eq!(packet.data(), &ECHO_REQUEST[8..]);
        assert!(packet.verify_checksum());
        assert_eq!(
            Icmpv4Repr::parse(&packet),
            Ok(Icmpv4Repr::EchoRequest {
                ident: 0x1c46,
                seq_no: 1,
                data: &ECHO_REQUEST[8..],
            })
        );
    }

    #[test]
    fn emit_reply_to_real_request() {
        let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&packet)
        else {
            panic!("not an echo request");
        };
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let mut out = [0xffu8; 64];
        assert_eq!(reply.buffer_len(), out.len());
        reply.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, reply_bytes());
    }

    #[test]
    fn round_trips() {
        let reply = reply_bytes();
        for vector in [&ECHO_REQUEST[..], &reply[..], &EMPTY_ECHO_REQUEST[..]] {
            let packet = Icmpv4Packet::new_checked(vector).unwrap();
            let repr = Icmpv4Repr::parse(&packet).unwrap();
            let mut out = [0u8; 64];
            let out = &mut out[..repr.buffer_len()];
            let mut out_packet = Icmpv4Packet::new_checked(&mut out[..]).unwrap();
            repr.emit(&mut out_packet);
            assert_eq!(out_packet.into_inner(), vector);
        }
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(),
                WireError::Truncated
            );
            let unchecked = Icmpv4Packet::new_unchecked(&ECHO_REQUEST[..len]);
            assert_eq!(Icmpv4Repr::parse(&unchecked), Err(WireError::Truncated));
        }
        // Longer cuts keep a valid header but break the checksum over the data.
        for len in HEADER_LEN..ECHO_REQUEST.len() {
            let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..len]).unwrap();
            assert_eq!(packet.data().len(), len - HEADER_LEN);
            assert_eq!(
                Icmpv4Repr::parse(&packet),
                Err(WireError::Checksum),
                "{len}"
            );
        }
    }

    #[test]
    fn bad_checksum() {
        for at in [2, 3, 5, 20, 63] {
            let mut buf = ECHO_REQUEST;
            buf[at] ^= 0x04;
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            assert!(!packet.verify_checksum());
            assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Checksum));
        }
        // Checksum is checked before the type: a corrupted unsupported message is a checksum
        // error, and so is a corrupted echo with a bad code.
        let mut buf = PORT_UNREACHABLE;
        buf[30] ^= 1;
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Checksum));
        let mut buf = ECHO_REQUEST;
        buf[1] = 1;
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Checksum));
    }

    #[test]
    fn both_ones_complement_zeros_verify() {
        // 0x0800 + 0xf7ff + 0x0000 = 0xffff, so the checksum is "zero", and a sender may write
        // it as 0x0000 or 0xffff (RFC 1071 §1). Both verify; emit writes 0x0000.
        for checksum in [[0x00, 0x00], [0xff, 0xff]] {
            let buf = [0x08, 0x00, checksum[0], checksum[1], 0xf7, 0xff, 0x00, 0x00];
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            let repr = Icmpv4Repr::parse(&packet).unwrap();
            let mut out = [0u8; 8];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
            assert_eq!(out, [0x08, 0x00, 0x00, 0x00, 0xf7, 0xff, 0x00, 0x00]);
        }
    }

    #[test]
    fn echo_with_nonzero_code_is_malformed() {
        for header in [&ECHO_REQUEST[..], &ECHO_REPLY_HEADER[..]] {
            let mut buf = ECHO_REQUEST;
            buf[..8].copy_from_slice(&header[..8]);
            let mut packet = Icmpv4Packet::new_unchecked(&mut buf[..]);
            packet.set_msg_code(1);
            packet.fill_checksum();
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Malformed));
        }
    }

    #[test]
    fn other_types_unsupported() {
        let packet = Icmpv4Packet::new_checked(&PORT_UNREACHABLE[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(packet.msg_type(), Icmpv4Message::DstUnreachable);
        assert_eq!(packet.msg_code(), 3);
        assert_eq!(packet.data().len(), 28);
        assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Unsupported));
        for msg_type in [3u8, 4, 5, 11, 12, 13, 14, 255] {
            let mut buf = ECHO_REQUEST;
            let mut packet = Icmpv4Packet::new_unchecked(&mut buf[..]);
            packet.set_msg_type(Icmpv4Message::from(msg_type));
            packet.fill_checksum();
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Unsupported));
        }
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 12];
        let mut packet = Icmpv4Packet::new_unchecked(&mut buf[..]);
        packet.set_msg_type(Icmpv4Message::TimeExceeded);
        packet.set_msg_code(1);
        packet.set_echo_ident(0xabcd);
        packet.set_echo_seq_no(0x0102);
        packet.data_mut().copy_from_slice(&[1, 2, 3, 4]);
        packet.fill_checksum();
        assert_eq!(packet.msg_type(), Icmpv4Message::TimeExceeded);
        assert_eq!(packet.msg_code(), 1);
        assert_eq!(packet.echo_ident(), 0xabcd);
        assert_eq!(packet.echo_seq_no(), 0x0102);
        assert_eq!(packet.data_mut(), &[1, 2, 3, 4]);
        assert!(packet.verify_checksum());
        packet.set_checksum(0);
        assert_eq!(packet.checksum(), 0);
        assert_eq!(buf[..2], [11, 1]);
    }

    #[test]
    fn message_conversions() {
        for (value, msg) in [
            (0u8, Icmpv4Message::EchoReply),
            (3, Icmpv4Message::DstUnreachable),
            (8, Icmpv4Message::EchoRequest),
            (11, Icmpv4Message::TimeExceeded),
            (5, Icmpv4Message::Unknown(5)),
        ] {
            assert_eq!(Icmpv4Message::from(value), msg);
            assert_eq!(u8::from(msg), value);
        }
    }

    fn exercise(buf: &[u8]) {
        let unchecked = Icmpv4Packet::new_unchecked(buf);
        let _ = Icmpv4Repr::parse(&unchecked);
        let Ok(packet) = Icmpv4Packet::new_checked(buf) else {
            assert!(buf.len() < HEADER_LEN);
            return;
        };
        let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
        let _ = (
            packet.echo_ident(),
            packet.echo_seq_no(),
            packet.data().len(),
        );
        let _ = packet.verify_checksum();
        if let Ok(repr) = Icmpv4Repr::parse(&packet) {
            let mut out = [0u8; 128];
            let out = &mut out[..repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
            let reparsed = Icmpv4Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&reparsed), Ok(repr));
            // Byte-exact except the checksum, where 0x0000 and 0xffff can both verify.
            assert_eq!((&out[..2], &out[4..]), (&buf[..2], &buf[4..]));
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0x0792);
        let mut buf = [0u8; 100];
        for i in 0..100_000 {
            let len = if i % 2 == 0 {
                let len = rng.usize(0..=buf.len());
                rng.fill(&mut buf[..len]);
                len
            } else {
                // A real request, possibly cut short, with a few header bytes overwritten and,
                // half the time, a fixed-up checksum so that the type and code checks are reached.
                let len = if rng.bool() {
                    ECHO_REQUEST.len()
                } else {
                    rng.usize(0..=ECHO_REQUEST.len())
                };
                buf[..len].copy_from_slice(&ECHO_REQUEST[..len]);
                for _ in 0..rng.usize(1..4) {
                    if len > 0 {
                        buf[rng.usize(0..len.min(HEADER_LEN))] = rng.u8(..);
                    }
                }
                if len >= HEADER_LEN && rng.bool() {
                    Icmpv4Packet::new_unchecked(&mut buf[..len]).fill_checksum();
                }
                len
            };
            exercise(&buf[..len]);
        }
    }
}
