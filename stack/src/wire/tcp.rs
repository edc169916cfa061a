//! TCP segments (RFC 9293 §3.1) and the options this stack speaks: maximum segment size
//! (RFC 9293 §3.7.1), window scale and timestamps (RFC 7323), SACK (RFC 2018).
//!
//! [`TcpPacket`] is the zero-copy view; [`TcpRepr`] the validated meaning of a segment, which the
//! engine consumes and produces. The segment is always the whole buffer: the caller slices the
//! IPv4 payload exactly (see [`super::Ipv4Packet::payload`]), because the checksum covers it all.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};
use std::net::Ipv4Addr;

use super::ipv4::IpProtocol;
use super::{checksum, read_u16, read_u32, write_u16, write_u32, WireError};

/// Length of a TCP header without options (data offset 5).
pub const HEADER_LEN: usize = 20;

/// Longest TCP header: data offset 15, i.e. 60 bytes.
pub const MAX_HEADER_LEN: usize = 60;

/// Room for options in the longest header: `MAX_HEADER_LEN - HEADER_LEN` = 40 bytes.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

/// Largest window scale shift count (RFC 7323 §2.3); larger received values are clamped to it.
pub const MAX_WINDOW_SCALE: u8 = 14;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    /// Data offset (4 bits), reserved (4 bits), then the 8 control bits.
    pub const FLAGS: usize = 12;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = super::HEADER_LEN;

    pub const FLG_FIN: u16 = 0x001;
    pub const FLG_SYN: u16 = 0x002;
    pub const FLG_RST: u16 = 0x004;
    pub const FLG_PSH: u16 = 0x008;
    pub const FLG_ACK: u16 = 0x010;
    pub const FLG_URG: u16 = 0x020;
    pub const FLG_ECE: u16 = 0x040;
    pub const FLG_CWR: u16 = 0x080;
    /// Everything below the data offset: the four reserved bits and the eight control bits.
    pub const FLAGS_MASK: u16 = 0x0fff;
}

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers
// ---------------------------------------------------------------------------------------------

/// A TCP sequence (or acknowledgment) number: arithmetic is modulo 2^32 (RFC 9293 §3.4).
///
/// Comparisons use the signed 32-bit distance between two numbers (serial number arithmetic,
/// RFC 1982 §3.2): `a < b` iff `b - a`, taken modulo 2^32, lies in `1..2^31`. That is only
/// meaningful for numbers less than 2^31 apart (any two numbers inside one connection's windows
/// are: RFC 7323 §2.3 keeps a window below 2^30), and it is not transitive over larger spans,
/// which is why `SeqNumber` implements `PartialOrd` but not `Ord`. Two numbers exactly 2^31
/// apart are incomparable: `partial_cmp` is `None`, and `<`, `<=`, `>`, `>=` are all false.
///
/// ```
/// # use bypass_stack::wire::SeqNumber;
/// let near_wrap = SeqNumber(u32::MAX - 1);
/// let after = near_wrap + 10;
/// assert_eq!(after, SeqNumber(8));
/// assert!(near_wrap < after);
/// assert_eq!(after.distance_from(near_wrap), 10);
/// assert_eq!(near_wrap.distance_from(after), -10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// How far `self` is ahead of `earlier`: positive if `self` comes after it, negative if
    /// before, 0 if equal; `(b + n).distance_from(b) == n` for `n < 2^31`. Two numbers exactly
    /// 2^31 apart give `i32::MIN` in both directions.
    pub const fn distance_from(self, earlier: SeqNumber) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    /// The later of the two; `self` if they are equal or incomparable (2^31 apart).
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if other > self {
            other
        } else {
            self
        }
    }

    /// The earlier of the two; `self` if they are equal or incomparable (2^31 apart).
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if other < self {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialOrd for SeqNumber {
    /// Orders by the sign of [`SeqNumber::distance_from`]; `None` when exactly 2^31 apart.
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        match self.distance_from(*other) {
            i32::MIN => None,
            d => Some(d.cmp(&0)),
        }
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;

    /// Advances by `rhs` bytes, wrapping at 2^32. A step over `i32::MAX` cannot be told apart
    /// from going backwards, so it is a bug: a debug assertion catches it.
    fn add(self, rhs: usize) -> SeqNumber {
        debug_assert!(
            rhs <= i32::MAX as usize,
            "sequence number step {rhs} exceeds 2^31 - 1"
        );
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;

    /// Goes back by `rhs` bytes, wrapping at 2^32; steps over `i32::MAX` are a bug, as for `+`.
    fn sub(self, rhs: usize) -> SeqNumber {
        debug_assert!(
            rhs <= i32::MAX as usize,
            "sequence number step {rhs} exceeds 2^31 - 1"
        );
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl SubAssign<usize> for SeqNumber {
    fn sub_assign(&mut self, rhs: usize) {
        *self = *self - rhs;
    }
}

// ---------------------------------------------------------------------------------------------
// The packet view
// ---------------------------------------------------------------------------------------------

/// A zero-copy view of a TCP segment: the buffer is exactly the segment (the IPv4 payload).
///
/// After [`TcpPacket::new_checked`] the header and its options fit the buffer, so every accessor
/// is panic-free. With [`TcpPacket::new_unchecked`] accessors may panic on short or inconsistent
/// buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps a buffer without validating it.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`TcpPacket::check_len`].
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits the buffer:
    ///
    /// * at least [`HEADER_LEN`] bytes, else [`WireError::Truncated`];
    /// * data offset >= 5 (RFC 9293 §3.1), else [`WireError::Malformed`];
    /// * the header with its options fits, else [`WireError::Truncated`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives back the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number of the first byte of the segment (of the SYN, if set).
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(read_u32(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// Acknowledgment number field; meaningful only when [`TcpPacket::ack`] is set.
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(read_u32(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// Header length in bytes, options included (data offset × 4, at most 60).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS] >> 4) * 4
    }

    /// FIN: no more data from the sender.
    pub fn fin(&self) -> bool {
        self.flag(field::FLG_FIN)
    }

    /// SYN: synchronize sequence numbers.
    pub fn syn(&self) -> bool {
        self.flag(field::FLG_SYN)
    }

    /// RST: reset the connection.
    pub fn rst(&self) -> bool {
        self.flag(field::FLG_RST)
    }

    /// PSH: push function.
    pub fn psh(&self) -> bool {
        self.flag(field::FLG_PSH)
    }

    /// ACK: the acknowledgment number is significant.
    pub fn ack(&self) -> bool {
        self.flag(field::FLG_ACK)
    }

    /// URG: the urgent pointer is significant.
    pub fn urg(&self) -> bool {
        self.flag(field::FLG_URG)
    }

    /// ECE: ECN-Echo (RFC 3168 §6.1).
    pub fn ece(&self) -> bool {
        self.flag(field::FLG_ECE)
    }

    /// CWR: congestion window reduced (RFC 3168 §6.1).
    pub fn cwr(&self) -> bool {
        self.flag(field::FLG_CWR)
    }

    /// Window field, unscaled.
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer field; meaningful only when [`TcpPacket::urg`] is set.
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Sequence space the segment occupies: payload length, plus one for SYN and one for FIN
    /// (RFC 9293 §3.4, SEG.LEN).
    pub fn segment_len(&self) -> usize {
        let payload_len = self.buffer.as_ref().len() - usize::from(self.header_len());
        payload_len + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// True if the checksum over the IPv4 pseudo-header (`src`, `dst`, protocol 6, segment
    /// length) and the whole segment verifies (RFC 9293 §3.1 "Checksum").
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.sum(src, dst) == 0xffff
    }

    fn sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let segment = self.buffer.as_ref();
        let protocol = u8::from(IpProtocol::Tcp);
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, protocol, segment.len() as u32),
            checksum::data(segment),
        ])
    }

    fn raw_flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    fn flag(&self, flag: u16) -> bool {
        self.raw_flags() & flag != 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The options area, between the fixed header and [`TcpPacket::header_len`]; parse it with
    /// [`TcpOption::parse`].
    ///
    /// The slice borrows the underlying buffer (`'a`), not the view. Only views over a shared
    /// reference have this getter; for an owned or `&mut` buffer use
    /// [`TcpPacket::options_mut`], or wrap `packet.as_ref()` in a new view.
    pub fn options(&self) -> &'a [u8] {
        let range = field::OPTIONS..usize::from(self.header_len());
        let buffer: &'a T = self.buffer;
        &buffer.as_ref()[range]
    }

    /// Everything after the header and options.
    ///
    /// The slice borrows the underlying buffer (`'a`), not the view. Only views over a shared
    /// reference have this getter; for an owned or `&mut` buffer use
    /// [`TcpPacket::payload_mut`], or wrap `packet.as_ref()` in a new view.
    pub fn payload(&self) -> &'a [u8] {
        let start = usize::from(self.header_len());
        let buffer: &'a T = self.buffer;
        &buffer.as_ref()[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, value.0);
    }

    /// Sets the acknowledgment number field (the ACK flag is separate).
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, value.0);
    }

    /// Sets the header length in bytes; it is stored as data offset = `value / 4` (four bits).
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = (*b & 0x0f) | (((value / 4) & 0x0f) << 4);
    }

    /// Clears the eight control bits and the four reserved bits; keeps the data offset.
    pub fn clear_flags(&mut self) {
        let raw = self.raw_flags() & !field::FLAGS_MASK;
        write_u16(self.buffer.as_mut(), field::FLAGS, raw);
    }

    /// Sets or clears FIN.
    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(field::FLG_FIN, value);
    }

    /// Sets or clears SYN.
    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(field::FLG_SYN, value);
    }

    /// Sets or clears RST.
    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(field::FLG_RST, value);
    }

    /// Sets or clears PSH.
    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(field::FLG_PSH, value);
    }

    /// Sets or clears ACK.
    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(field::FLG_ACK, value);
    }

    /// Sets or clears URG.
    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(field::FLG_URG, value);
    }

    /// Sets or clears ECE.
    pub fn set_ece(&mut self, value: bool) {
        self.set_flag(field::FLG_ECE, value);
    }

    /// Sets or clears CWR.
    pub fn set_cwr(&mut self, value: bool) {
        self.set_flag(field::FLG_CWR, value);
    }

    /// Sets the (unscaled) window field.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    /// Sets the checksum field verbatim (see [`TcpPacket::fill_checksum`]).
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer field.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer; call it
    /// after every other byte of the segment, payload included, is final.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let sum = self.sum(src, dst);
        self.set_checksum(!sum);
    }

    /// Mutable options area, between the fixed header and [`TcpPacket::header_len`].
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = field::OPTIONS..usize::from(self.header_len());
        &mut self.buffer.as_mut()[range]
    }

    /// Mutable payload, after the header and options.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        &mut self.buffer.as_mut()[start..]
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let raw = self.raw_flags();
        let raw = if value { raw | flag } else { raw & !flag };
        write_u16(self.buffer.as_mut(), field::FLAGS, raw);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// The two values of a timestamps option (RFC 7323 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpTimestamp {
    /// TSval: the sender's timestamp clock.
    pub tsval: u32,
    /// TSecr: the TSval echoed back (meaningful when ACK is set).
    pub tsecr: u32,
}

/// One TCP option (RFC 9293 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// Kind 0: end of the option list; whatever follows is padding.
    EndOfList,
    /// Kind 1: padding between options.
    NoOperation,
    /// Kind 2, length 4: the largest segment the sender can receive (RFC 9293 §3.7.1).
    MaxSegmentSize(u16),
    /// Kind 3, length 3: the sender's window scale shift count, unclamped (RFC 7323 §2.2).
    WindowScale(u8),
    /// Kind 4, length 2: the sender can receive SACK options (RFC 2018 §2).
    SackPermitted,
    /// Kind 5, length 2 + 8n with n in 1..=4: (left edge, right edge) of received blocks
    /// (RFC 2018 §3). Parsing fills the first n slots; `emit` writes the `Some` slots in order.
    SackRange([Option<(u32, u32)>; 4]),
    /// Kind 8, length 10: TSval and TSecr (RFC 7323 §3.2).
    Timestamp(TcpTimestamp),
    /// Any other kind, with its data (the bytes after kind and length).
    Unknown { kind: u8, data: &'a [u8] },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `buffer` (an options area, or what is left of it) and
    /// returns the bytes after it with the option. Errors:
    ///
    /// * [`WireError::Truncated`] if `buffer` is empty;
    /// * [`WireError::Malformed`] if a kind other than 0 and 1 has no length byte, a length below
    ///   2 or beyond the buffer (RFC 9293 §3.1, MUST-7), or a length its kind forbids: MSS 4,
    ///   window scale 3, SACK-permitted 2, timestamps 10, SACK 10, 18, 26 or 34.
    ///
    /// The returned rest is always shorter than `buffer`, so a loop over it terminates. After
    /// [`TcpOption::EndOfList`] the rest is padding and should not be parsed.
    pub fn parse(buffer: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>), WireError> {
        let (&option_kind, after_kind) = buffer.split_first().ok_or(WireError::Truncated)?;
        match option_kind {
            kind::END_OF_LIST => return Ok((after_kind, TcpOption::EndOfList)),
            kind::NOP => return Ok((after_kind, TcpOption::NoOperation)),
            _ => {}
        }
        let length = usize::from(*after_kind.first().ok_or(WireError::Malformed)?);
        if length < 2 || length > buffer.len() {
            return Err(WireError::Malformed);
        }
        let data = &buffer[2..length];
        let option = match (option_kind, data.len()) {
            (kind::MSS, 2) => TcpOption::MaxSegmentSize(read_u16(data, 0)),
            (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (kind::SACK, 8 | 16 | 24 | 32) => {
                let mut ranges = [None; 4];
                for (slot, block) in ranges.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((read_u32(block, 0), read_u32(block, 4)));
                }
                TcpOption::SackRange(ranges)
            }
            (kind::TIMESTAMP, 8) => TcpOption::Timestamp(TcpTimestamp {
                tsval: read_u32(data, 0),
                tsecr: read_u32(data, 4),
            }),
            (
                kind::MSS
                | kind::WINDOW_SCALE
                | kind::SACK_PERMITTED
                | kind::SACK
                | kind::TIMESTAMP,
                _,
            ) => return Err(WireError::Malformed),
            (other, _) => TcpOption::Unknown { kind: other, data },
        };
        Ok((&buffer[length..], option))
    }

    /// Bytes the option takes: 1 for EOL and NOP, its length byte otherwise. A
    /// [`TcpOption::SackRange`] with no `Some` block takes 0 (it is not emitted at all).
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(ranges) => match ranges.iter().flatten().count() {
                0 => 0,
                n => 2 + 8 * n,
            },
            TcpOption::Timestamp(_) => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns the bytes after it. EOL writes a
    /// single zero byte; padding after it is the caller's business.
    ///
    /// # Panics
    ///
    /// Panics if `buffer` is shorter than [`Self::buffer_len`]. An `Unknown` option must have at
    /// most 253 data bytes (its length is one byte; a header has room for 38 anyway).
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let length = self.buffer_len();
        let (head, rest) = buffer.split_at_mut(length);
        match *self {
            TcpOption::EndOfList => head[0] = kind::END_OF_LIST,
            TcpOption::NoOperation => head[0] = kind::NOP,
            TcpOption::MaxSegmentSize(mss) => {
                head[0] = kind::MSS;
                write_u16(head, 2, mss);
            }
            TcpOption::WindowScale(shift) => {
                head[0] = kind::WINDOW_SCALE;
                head[2] = shift;
            }
            TcpOption::SackPermitted => head[0] = kind::SACK_PERMITTED,
            // With no block, `length` is 0 and nothing is written.
            TcpOption::SackRange(ranges) => {
                if let Some(first) = head.first_mut() {
                    *first = kind::SACK;
                }
                let blocks = head.get_mut(2..).unwrap_or_default().chunks_exact_mut(8);
                for ((left, right), block) in ranges.iter().flatten().zip(blocks) {
                    write_u32(block, 0, *left);
                    write_u32(block, 4, *right);
                }
            }
            TcpOption::Timestamp(ts) => {
                head[0] = kind::TIMESTAMP;
                write_u32(head, 2, ts.tsval);
                write_u32(head, 6, ts.tsecr);
            }
            TcpOption::Unknown { kind: value, data } => {
                debug_assert!(length <= 255, "TCP option data too long: {}", data.len());
                head[0] = value;
                head[2..].copy_from_slice(data);
            }
        }
        if length >= 2 {
            head[1] = length as u8;
        }
        rest
    }
}

// ---------------------------------------------------------------------------------------------
// The representation
// ---------------------------------------------------------------------------------------------

/// The control bits that change a segment's meaning (RFC 9293 §3.1, "Control bits").
///
/// SYN, FIN and RST are mutually exclusive: RFC 9293 gives SYN+FIN, SYN+RST and FIN+RST no
/// meaning, they are a classic scanner fingerprint, and stacks drop them, so
/// [`TcpRepr::parse`] rejects them as [`WireError::Malformed`]. PSH is represented only on its
/// own: beside SYN, FIN or RST it is accepted and forgotten (it is advisory, RFC 9293 §3.9.1.2).
/// When emitting, a FIN that carries data gets PSH too, as Linux does: that segment is the last
/// of the buffered data, which RFC 9293 §3.9.1.2 wants pushed. ACK and URG are represented by
/// [`TcpRepr::ack_number`] and [`TcpRepr::urgent_pointer`]; ECE, CWR and the reserved bits are not
/// represented (this stack does not negotiate ECN, so it neither sends nor acts on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TcpControl {
    /// None of SYN, FIN, RST, PSH.
    #[default]
    None,
    /// PSH alone.
    Psh,
    /// SYN (with or without PSH).
    Syn,
    /// FIN (with or without PSH).
    Fin,
    /// RST (with or without PSH).
    Rst,
}

impl TcpControl {
    /// Sequence space the flag itself occupies: 1 for SYN and FIN, 0 otherwise.
    pub const fn sequence_len(self) -> usize {
        match self {
            TcpControl::Syn | TcpControl::Fin => 1,
            TcpControl::None | TcpControl::Psh | TcpControl::Rst => 0,
        }
    }
}

/// The validated content of a TCP segment. `payload` borrows from the received buffer.
///
/// # Options on the wire
///
/// [`TcpRepr::emit`] lays options out as Linux's `tcp_options_write` does, in 32-bit words, so
/// no padding is ever needed:
///
/// | present | bytes |
/// |---|---|
/// | MSS | `02 04 mm mm` |
/// | timestamps (SACK-permitted folded in) | `04 02 08 0a` or `01 01 08 0a`, TSval, TSecr (12) |
/// | SACK-permitted without timestamps | `01 01 04 02` |
/// | window scale | `01 03 03 ws` |
/// | n SACK blocks | `01 01 05 len`, then 8 bytes per block (4 + 8n) |
///
/// A Linux SYN or SYN-ACK (MSS, SACK-permitted, timestamps, window scale) takes 20 bytes; a data
/// segment with timestamps and three SACK blocks takes 12 + 28 = 40 bytes, the whole option
/// space, which is why [`TcpRepr::sack_ranges`] has three slots (as Linux sends at most three
/// blocks beside timestamps). The only combinations that would exceed 40 bytes put SACK blocks
/// beside SYN options, which no peer sends (SACK blocks belong to established connections); there
/// `emit` keeps as many leading blocks as fit (at least two, as SYN options take at most 20
/// bytes), and [`TcpRepr::header_len`] counts only those, so `emit` can never fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub control: TcpControl,
    pub seq_number: SeqNumber,
    /// `Some` exactly when ACK is set; the field is ignored on receive when it is clear.
    pub ack_number: Option<SeqNumber>,
    /// The window field as sent, unscaled.
    pub window_len: u16,
    /// Window scale shift count, at most [`MAX_WINDOW_SCALE`] after parsing.
    pub window_scale: Option<u8>,
    /// MSS option; never `Some(0)` after parsing (see [`TcpRepr::parse`]).
    pub max_seg_size: Option<u16>,
    pub sack_permitted: bool,
    /// SACK blocks (left edge, right edge), most recent first (RFC 2018 §4); parsing fills the
    /// leading slots and `emit` writes the `Some` slots in order.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    pub timestamp: Option<TcpTimestamp>,
    /// `Some` exactly when URG is set: the urgent pointer, an offset from `seq_number` (RFC 6093:
    /// stacks disagree on what it points at, and new applications should not use urgent data).
    pub urgent_pointer: Option<u16>,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Validates and reads a segment received from `src_addr` for `dst_addr`. Errors, in order of
    /// checking:
    ///
    /// * any [`TcpPacket::check_len`] failure (so an unchecked packet is safe here too);
    /// * [`WireError::Checksum`] if the checksum over pseudo-header and segment fails;
    /// * [`WireError::Malformed`] for source or destination port 0;
    /// * [`WireError::Malformed`] for SYN+FIN, SYN+RST or FIN+RST (see [`TcpControl`]);
    /// * [`WireError::Malformed`] for any option [`TcpOption::parse`] rejects (bad length byte or
    ///   a wrong length for a known kind) before an End of Option List. Linux is more lenient
    ///   (it stops reading options, or skips the odd one); RFC 9293 MUST-7 allows either.
    ///
    /// Lenient where the RFCs say to be:
    ///
    /// * the acknowledgment field is ignored unless ACK is set, the urgent pointer unless URG is;
    /// * a window scale above 14 is taken as 14 (RFC 7323 §2.3);
    /// * an MSS of 0 is taken as absent, so the engine falls back to the default of 536
    ///   (RFC 9293 §3.7.1), as Linux does; smoltcp rejects it instead;
    /// * only the first occurrence of each option counts; unknown kinds are skipped; parsing stops
    ///   at End of Option List; SACK blocks after the third are dropped.
    ///
    /// MSS, window scale and SACK-permitted are reported whatever the SYN flag says: RFC 7323
    /// §2.2 and RFC 2018 §2 make the engine ignore them on other segments.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) -> Result<TcpRepr<'a>, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(WireError::Checksum);
        }
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(WireError::Malformed);
        }
        let control = match (packet.syn(), packet.fin(), packet.rst(), packet.psh()) {
            (false, false, false, false) => TcpControl::None,
            (false, false, false, true) => TcpControl::Psh,
            (true, false, false, _) => TcpControl::Syn,
            (false, true, false, _) => TcpControl::Fin,
            (false, false, true, _) => TcpControl::Rst,
            _ => return Err(WireError::Malformed),
        };

        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            control,
            seq_number: packet.seq_number(),
            ack_number: packet.ack().then(|| packet.ack_number()),
            window_len: packet.window_len(),
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            urgent_pointer: packet.urg().then(|| packet.urgent_at()),
            payload: packet.payload(),
        };

        let (mut seen_mss, mut seen_ws, mut seen_sack) = (false, false, false);
        let mut options = packet.options();
        while !options.is_empty() {
            let (rest, option) = TcpOption::parse(options).map_err(|_| WireError::Malformed)?;
            match option {
                TcpOption::EndOfList => break,
                TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
                TcpOption::MaxSegmentSize(mss) if !seen_mss => {
                    seen_mss = true;
                    repr.max_seg_size = (mss != 0).then_some(mss);
                }
                TcpOption::WindowScale(shift) if !seen_ws => {
                    seen_ws = true;
                    repr.window_scale = Some(shift.min(MAX_WINDOW_SCALE));
                }
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(ranges) if !seen_sack => {
                    seen_sack = true;
                    repr.sack_ranges = [ranges[0], ranges[1], ranges[2]];
                }
                TcpOption::Timestamp(ts) if repr.timestamp.is_none() => {
                    repr.timestamp = Some(ts);
                }
                // Repeats of an option already seen.
                TcpOption::MaxSegmentSize(_)
                | TcpOption::WindowScale(_)
                | TcpOption::SackRange(_)
                | TcpOption::Timestamp(_) => {}
            }
            options = rest;
        }
        Ok(repr)
    }

    /// Option bytes without SACK blocks (each piece a multiple of 4, at most 20 in all).
    fn fixed_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks `emit` writes: all the `Some` slots, or as many as fit.
    fn sack_blocks_emitted(&self) -> usize {
        let wanted = self.sack_ranges.iter().flatten().count();
        let room = (MAX_OPTIONS_LEN - self.fixed_options_len()).saturating_sub(4) / 8;
        wanted.min(room)
    }

    /// Bytes of options `emit` writes; a multiple of 4, at most [`MAX_OPTIONS_LEN`].
    fn options_len(&self) -> usize {
        let sack = match self.sack_blocks_emitted() {
            0 => 0,
            n => 4 + 8 * n,
        };
        self.fixed_options_len() + sack
    }

    /// Header bytes `emit` writes: [`HEADER_LEN`] plus the options, a multiple of 4, at most
    /// [`MAX_HEADER_LEN`].
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Bytes for the whole segment: header, options and payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space the segment occupies: payload, plus one for SYN or FIN (SEG.LEN).
    pub fn segment_len(&self) -> usize {
        self.payload.len() + self.control.sequence_len()
    }

    /// True for a segment that carries nothing but its header: no payload and no SYN, FIN or RST
    /// (a pure ACK or window update, which is not itself acknowledged or retransmitted).
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty() && matches!(self.control, TcpControl::None | TcpControl::Psh)
    }

    /// Writes the segment (header, options in Linux's layout, payload) and fills the checksum
    /// for the pseudo-header `src_addr` → `dst_addr`.
    ///
    /// Sets ACK iff `ack_number` is `Some` (else the field is 0), URG iff `urgent_pointer` is
    /// `Some` (else the field is 0), and PSH for [`TcpControl::Psh`] and for a FIN that carries
    /// data. ECE, CWR and the reserved bits are cleared. A window scale above 14 is written as 14.
    ///
    /// # Panics
    ///
    /// Panics unless the buffer is exactly [`Self::buffer_len`] bytes: the checksum covers the
    /// whole buffer, so any extra byte would become part of the segment.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        assert_eq!(
            packet.as_ref().len(),
            self.buffer_len(),
            "TCP buffer is not buffer_len() bytes"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number.unwrap_or_default());
        packet.set_header_len(self.header_len() as u8);
        packet.clear_flags();
        match self.control {
            TcpControl::None => {}
            TcpControl::Psh => packet.set_psh(true),
            TcpControl::Syn => packet.set_syn(true),
            TcpControl::Fin => {
                packet.set_fin(true);
                packet.set_psh(!self.payload.is_empty());
            }
            TcpControl::Rst => packet.set_rst(true),
        }
        packet.set_ack(self.ack_number.is_some());
        packet.set_urg(self.urgent_pointer.is_some());
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_pointer.unwrap_or(0));
        self.emit_options(packet.options_mut());
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src_addr, dst_addr);
    }

    /// Writes exactly `options_len()` bytes; see the table on [`TcpRepr`].
    fn emit_options(&self, options: &mut [u8]) {
        let mut buf = options;
        if let Some(mss) = self.max_seg_size {
            buf = TcpOption::MaxSegmentSize(mss).emit(buf);
        }
        if let Some(ts) = self.timestamp {
            buf = if self.sack_permitted {
                TcpOption::SackPermitted.emit(buf)
            } else {
                nops(buf, 2)
            };
            buf = TcpOption::Timestamp(ts).emit(buf);
        } else if self.sack_permitted {
            buf = TcpOption::SackPermitted.emit(nops(buf, 2));
        }
        if let Some(shift) = self.window_scale {
            buf = TcpOption::WindowScale(shift.min(MAX_WINDOW_SCALE)).emit(nops(buf, 1));
        }
        let blocks = self.sack_blocks_emitted();
        if blocks > 0 {
            let mut ranges = [None; 4];
            for (slot, range) in ranges.iter_mut().zip(self.sack_ranges.iter().flatten()) {
                *slot = Some(*range);
            }
            ranges[blocks..].fill(None);
            buf = TcpOption::SackRange(ranges).emit(nops(buf, 2));
        }
        debug_assert!(buf.is_empty(), "options_len() and emit_options disagree");
    }
}

/// Writes `count` NOPs and returns the rest.
fn nops(buf: &mut [u8], count: usize) -> &mut [u8] {
    let (head, rest) = buf.split_at_mut(count);
    head.fill(kind::NOP);
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client and server of the lab (DESIGN.md).
    const CLI: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
    const SRV: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

    // Checksums below were computed with an independent RFC 1071 implementation (Python) over
    // pseudo-header and segment, and are checked again here by `verify_checksum` and `emit`.

    /// A Linux 6.x SYN, 10.99.0.2:45678 -> 10.99.0.1:80: window 64240, options `mss 1460,
    /// sackOK, TS val 0x0019a2b3 ecr 0, nop, wscale 7`. Checksum 0x8c43.
    const SYN: [u8; 40] = [
        0xb2, 0x6e, 0x00, 0x50, // ports 45678 -> 80
        0x1a, 0x2b, 0x3c, 0x4d, // seq
        0x00, 0x00, 0x00, 0x00, // ack (ACK clear)
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10, SYN, window 64240
        0x8c, 0x43, 0x00, 0x00, // checksum, urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK permitted, timestamps ...
        0x00, 0x19, 0xa2, 0xb3, 0x00, 0x00, 0x00, 0x00, // ... TSval, TSecr
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
    ];

    /// Linux's SYN-ACK to it, 10.99.0.1:80 -> 10.99.0.2:45678: window 65160, same option layout,
    /// echoing the client's TSval. Checksum 0x9e70.
    const SYN_ACK: [u8; 40] = [
        0x00, 0x50, 0xb2, 0x6e, // ports 80 -> 45678
        0x5e, 0x6f, 0x70, 0x81, // seq
        0x1a, 0x2b, 0x3c, 0x4e, // ack = client ISN + 1
        0xa0, 0x12, 0xfe, 0x88, // data offset 10, SYN ACK, window 65160
        0x9e, 0x70, 0x00, 0x00, // checksum, urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK permitted, timestamps ...
        0x7e, 0x8d, 0x9c, 0xab, 0x00, 0x19, 0xa2, 0xb3, // ... TSval, TSecr
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
    ];

    /// Header of a data segment 10.99.0.1:80 -> 10.99.0.2:45678, PSH ACK, with timestamps and
    /// one SACK block in Linux's layout; [`DATA_PAYLOAD`] follows. Checksum 0xb81c.
    const DATA_HEADER: [u8; 44] = [
        0x00, 0x50, 0xb2, 0x6e, // ports 80 -> 45678
        0x5e, 0x6f, 0x70, 0x82, // seq
        0x1a, 0x2b, 0x3c, 0x9b, // ack
        0xb0, 0x18, 0x01, 0xfd, // data offset 11, PSH ACK, window 509
        0xb8, 0x1c, 0x00, 0x00, // checksum, urgent pointer
        0x01, 0x01, 0x08, 0x0a, // NOP, NOP, timestamps ...
        0x7e, 0x8d, 0x9d, 0x10, 0x00, 0x19, 0xa3, 0x10, // ... TSval, TSecr
        0x01, 0x01, 0x05, 0x0a, // NOP, NOP, SACK with one block ...
        0x1a, 0x2b, 0x3f, 0x00, 0x1a, 0x2b, 0x40, 0x00, // ... left edge, right edge
    ];

    /// 39 bytes: an odd length, so the checksum pads the last byte.
    const DATA_PAYLOAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";

    /// A pure ACK 10.99.0.2:45678 -> 10.99.0.1:80 with timestamps and three SACK blocks: the
    /// full 40 bytes of options, and blocks that straddle 2^32. Checksum 0xd75e.
    const ACK_3_SACK: [u8; 60] = [
        0xb2, 0x6e, 0x00, 0x50, // ports 45678 -> 80
        0x1a, 0x2b, 0x3c, 0x9b, // seq
        0xff, 0xff, 0xec, 0x18, // ack
        0xf0, 0x10, 0x01, 0xf5, // data offset 15, ACK, window 501
        0xd7, 0x5e, 0x00, 0x00, // checksum, urgent pointer
        0x01, 0x01, 0x08, 0x0a, // NOP, NOP, timestamps ...
        0x00, 0x19, 0xa4, 0x00, 0x7e, 0x8d, 0x9d, 0x20, // ... TSval, TSecr
        0x01, 0x01, 0x05, 0x1a, // NOP, NOP, SACK with three blocks ...
        0xff, 0xff, 0xf0, 0x00, 0x00, 0x00, 0x01, 0x00, // ... across the wrap
        0xff, 0xff, 0xe0, 0x00, 0xff, 0xff, 0xe8, 0x00, //
        0xff, 0xff, 0xd0, 0x00, 0xff, 0xff, 0xd4, 0x00, //
    ];

    /// The server's last data and FIN together, as Linux sends them: FIN PSH ACK with
    /// timestamps and 4 bytes of data. Checksum 0xff21.
    const FIN_PSH: [u8; 36] = [
        0x00, 0x50, 0xb2, 0x6e, // ports 80 -> 45678
        0x5e, 0x6f, 0x70, 0xa9, // seq
        0x1a, 0x2b, 0x3c, 0x9b, // ack
        0x80, 0x19, 0x01, 0xfd, // data offset 8, FIN PSH ACK, window 509
        0xff, 0x21, 0x00, 0x00, // checksum, urgent pointer
        0x01, 0x01, 0x08, 0x0a, // NOP, NOP, timestamps ...
        0x7e, 0x8d, 0x9e, 0x00, 0x00, 0x19, 0xa4, 0x00, // ... TSval, TSecr
        b'b', b'y', b'e', b'\n', // data
    ];

    /// Linux's answer to a SYN for a closed port: RST ACK, seq 0, no options. Checksum 0x91d0.
    const RST_ACK: [u8; 20] = [
        0x00, 0x50, 0xb2, 0x6e, // ports 80 -> 45678
        0x00, 0x00, 0x00, 0x00, // seq
        0x1a, 0x2b, 0x3c, 0x4e, // ack
        0x50, 0x14, 0x00, 0x00, // data offset 5, RST ACK, window 0
        0x91, 0xd0, 0x00, 0x00, // checksum, urgent pointer
    ];

    fn data_segment() -> Vec<u8> {
        [&DATA_HEADER[..], DATA_PAYLOAD].concat()
    }

    /// Every vector with its (source, destination) addresses.
    fn vectors() -> Vec<(Vec<u8>, Ipv4Addr, Ipv4Addr)> {
        vec![
            (SYN.to_vec(), CLI, SRV),
            (SYN_ACK.to_vec(), SRV, CLI),
            (data_segment(), SRV, CLI),
            (ACK_3_SACK.to_vec(), CLI, SRV),
            (FIN_PSH.to_vec(), SRV, CLI),
            (RST_ACK.to_vec(), SRV, CLI),
        ]
    }

    fn syn_repr() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 45678,
            dst_port: 80,
            control: TcpControl::Syn,
            seq_number: SeqNumber(0x1a2b3c4d),
            ack_number: None,
            window_len: 64240,
            window_scale: Some(7),
            max_seg_size: Some(1460),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamp: Some(TcpTimestamp {
                tsval: 0x0019a2b3,
                tsecr: 0,
            }),
            urgent_pointer: None,
            payload: &[],
        }
    }

    fn emit_vec(repr: &TcpRepr<'_>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut out = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), src, dst);
        out
    }

    fn parse(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<TcpRepr<'_>, WireError> {
        TcpRepr::parse(&TcpPacket::new_checked(bytes)?, src, dst)
    }

    /// `bytes` (a CLI -> SRV segment) changed by `edit`, with the checksum fixed up.
    fn edited(bytes: &[u8], edit: impl FnOnce(&mut TcpPacket<&mut [u8]>)) -> Vec<u8> {
        let mut v = bytes.to_vec();
        let mut packet = TcpPacket::new_unchecked(&mut v[..]);
        edit(&mut packet);
        packet.fill_checksum(CLI, SRV);
        v
    }

    /// The SYN's fixed header with `options` (a multiple of 4 bytes) instead of its own, and a
    /// valid checksum for CLI -> SRV.
    fn syn_with_options(options: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let v = [&SYN[..HEADER_LEN], options].concat();
        edited(&v, |p| p.set_header_len((HEADER_LEN + options.len()) as u8))
    }

    // --- sequence numbers ----------------------------------------------------------------------

    #[test]
    fn seq_arithmetic_wraps() {
        let top = SeqNumber(u32::MAX - 9);
        assert_eq!(top + 10, SeqNumber(0));
        assert_eq!(top + 20, SeqNumber(10));
        assert_eq!(SeqNumber(5) - 10, SeqNumber(u32::MAX - 4));
        let mut s = top;
        s += 15;
        assert_eq!(s, SeqNumber(5));
        s -= 6;
        assert_eq!(s, SeqNumber(u32::MAX));
        assert_eq!(SeqNumber(7) + (i32::MAX as usize), SeqNumber(0x8000_0006));
        assert_eq!(SeqNumber(7) + 0, SeqNumber(7));
    }

    #[test]
    fn seq_distance_and_order_across_the_wrap() {
        let before = SeqNumber(u32::MAX - 99);
        let after = SeqNumber(100);
        assert_eq!(after.distance_from(before), 200);
        assert_eq!(before.distance_from(after), -200);
        assert!(before < after);
        assert!(after > before);
        assert!(before <= after);
        assert!(after >= before);
        assert!(before != after);
        assert_eq!(before.partial_cmp(&after), Some(Ordering::Less));
        assert_eq!(after.partial_cmp(&before), Some(Ordering::Greater));
        assert_eq!(after.partial_cmp(&after), Some(Ordering::Equal));
        assert_eq!(after.distance_from(after), 0);
        assert_eq!(before.max(after), after);
        assert_eq!(after.max(before), after);
        assert_eq!(before.min(after), before);
        assert_eq!(after.min(before), before);
        // Plain u32 order says the opposite: this is what modular comparison is for.
        assert!(before.0 > after.0);
        // Largest comparable distance.
        let far = before + (i32::MAX as usize);
        assert!(before < far);
        assert_eq!(far.distance_from(before), i32::MAX);
        assert_eq!(before.distance_from(far), -i32::MAX);
        // One more is exactly 2^31 apart: incomparable either way.
        let half = far + 1;
        assert_eq!(half.distance_from(before), i32::MIN);
        assert_eq!(before.distance_from(half), i32::MIN);
        assert_eq!(before.partial_cmp(&half), None);
        assert_eq!(half.partial_cmp(&before), None);
        let comparisons = [before < half, before > half, before <= half, before >= half];
        assert_eq!(comparisons, [false; 4]);
        assert_eq!(before.max(half), before);
        assert_eq!(half.max(before), half);
        // Beyond 2^31 the order flips: numbers far "ahead" are really behind.
        assert!(half + 1 < before);
    }

    #[test]
    fn seq_order_every_offset_near_the_wrap() {
        for base in [0u32, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX] {
            let base = SeqNumber(base);
            for step in [1usize, 2, 1000, 1 << 30, (1 << 31) - 1] {
                let later = base + step;
                assert!(base < later, "{base} + {step}");
                assert!(later > base);
                assert_eq!(later - step, base);
                assert_eq!(later.distance_from(base), step as i32);
            }
        }
    }

    #[test]
    fn seq_display_and_debug() {
        assert_eq!(SeqNumber(4_294_967_295).to_string(), "4294967295");
        assert_eq!(format!("{:>5}", SeqNumber(7)), "    7");
        assert_eq!(format!("{:?}", SeqNumber(7)), "SeqNumber(7)");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "exceeds 2^31 - 1")]
    fn seq_add_over_i32_max_is_a_bug() {
        let _ = SeqNumber(0) + (1usize << 31);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "exceeds 2^31 - 1")]
    fn seq_sub_over_i32_max_is_a_bug() {
        let _ = SeqNumber(0) - (1usize << 31);
    }

    // --- real segments ---------------------------------------------------------------------

    #[test]
    fn parse_linux_syn() {
        let packet = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(packet.src_port(), 45678);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), SeqNumber(0x1a2b3c4d));
        assert_eq!(packet.ack_number(), SeqNumber(0));
        assert_eq!(packet.header_len(), 40);
        assert!(packet.syn());
        assert!(!(packet.fin() || packet.rst() || packet.psh() || packet.ack()));
        assert!(!(packet.urg() || packet.ece() || packet.cwr()));
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0x8c43);
        assert_eq!(packet.urgent_at(), 0);
        assert_eq!(packet.options(), &SYN[20..]);
        assert!(packet.payload().is_empty());
        assert_eq!(packet.segment_len(), 1);
        assert!(packet.verify_checksum(CLI, SRV));
        // The pseudo-header matters: another address fails. (Swapping source and destination
        // does not: the sum is commutative.)
        assert!(!packet.verify_checksum(CLI, Ipv4Addr::new(10, 99, 0, 3)));
        assert_eq!(
            TcpRepr::parse(&packet, CLI, Ipv4Addr::new(10, 99, 0, 3)),
            Err(WireError::Checksum)
        );

        let repr = TcpRepr::parse(&packet, CLI, SRV).unwrap();
        assert_eq!(repr, syn_repr());
        assert_eq!(repr.header_len(), 40);
        assert_eq!(repr.buffer_len(), 40);
        assert_eq!(repr.segment_len(), 1);
        assert!(!repr.is_empty());
    }

    #[test]
    fn emit_linux_syn_from_scratch() {
        assert_eq!(emit_vec(&syn_repr(), CLI, SRV), SYN);
    }

    #[test]
    fn parse_linux_syn_ack() {
        let repr = parse(&SYN_ACK, SRV, CLI).unwrap();
        assert_eq!(
            repr,
            TcpRepr {
                src_port: 80,
                dst_port: 45678,
                control: TcpControl::Syn,
                seq_number: SeqNumber(0x5e6f7081),
                ack_number: Some(SeqNumber(0x1a2b3c4e)),
                window_len: 65160,
                window_scale: Some(7),
                max_seg_size: Some(1460),
                sack_permitted: true,
                sack_ranges: [None; 3],
                timestamp: Some(TcpTimestamp {
                    tsval: 0x7e8d9cab,
                    tsecr: 0x0019a2b3,
                }),
                urgent_pointer: None,
                payload: &[],
            }
        );
        // It acknowledges the SYN: ISN + SEG.LEN.
        let syn = parse(&SYN, CLI, SRV).unwrap();
        assert_eq!(repr.ack_number, Some(syn.seq_number + syn.segment_len()));
        assert_eq!(emit_vec(&repr, SRV, CLI), SYN_ACK);
    }

    #[test]
    fn parse_data_with_timestamps_and_sack() {
        let segment = data_segment();
        let packet = TcpPacket::new_checked(&segment[..]).unwrap();
        assert_eq!(packet.header_len(), 44);
        assert!(packet.psh() && packet.ack());
        assert_eq!(packet.checksum(), 0xb81c);
        assert_eq!(packet.payload(), DATA_PAYLOAD);
        assert_eq!(packet.segment_len(), 39);
        let repr = TcpRepr::parse(&packet, SRV, CLI).unwrap();
        assert_eq!(
            repr,
            TcpRepr {
                src_port: 80,
                dst_port: 45678,
                control: TcpControl::Psh,
                seq_number: SeqNumber(0x5e6f7082),
                ack_number: Some(SeqNumber(0x1a2b3c9b)),
                window_len: 509,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [Some((0x1a2b3f00, 0x1a2b4000)), None, None],
                timestamp: Some(TcpTimestamp {
                    tsval: 0x7e8d9d10,
                    tsecr: 0x0019a310,
                }),
                urgent_pointer: None,
                payload: DATA_PAYLOAD,
            }
        );
        assert_eq!(repr.segment_len(), 39);
        assert!(!repr.is_empty());
        assert_eq!(emit_vec(&repr, SRV, CLI), segment);
    }

    #[test]
    fn parse_ack_with_three_sack_blocks() {
        let repr = parse(&ACK_3_SACK, CLI, SRV).unwrap();
        assert_eq!(repr.control, TcpControl::None);
        assert_eq!(repr.ack_number, Some(SeqNumber(0xffffec18)));
        assert_eq!(
            repr.sack_ranges,
            [
                Some((0xfffff000, 0x00000100)),
                Some((0xffffe000, 0xffffe800)),
                Some((0xffffd000, 0xffffd400)),
            ]
        );
        assert!(repr.timestamp.is_some());
        assert!(repr.is_empty());
        assert_eq!(repr.segment_len(), 0);
        assert_eq!(repr.header_len(), MAX_HEADER_LEN);
        assert_eq!(emit_vec(&repr, CLI, SRV), ACK_3_SACK);
    }

    #[test]
    fn fin_with_data_keeps_linux_psh() {
        let repr = parse(&FIN_PSH, SRV, CLI).unwrap();
        assert_eq!(repr.control, TcpControl::Fin);
        assert_eq!(repr.payload, b"bye\n");
        assert_eq!(repr.segment_len(), 5);
        assert_eq!(emit_vec(&repr, SRV, CLI), FIN_PSH);
        // A FIN alone gets no PSH.
        let bare = TcpRepr {
            payload: &[],
            ..repr
        };
        let out = emit_vec(&bare, SRV, CLI);
        let packet = TcpPacket::new_checked(&out[..]).unwrap();
        assert!(packet.fin() && packet.ack() && !packet.psh());
        assert_eq!(bare.segment_len(), 1);
        assert!(!bare.is_empty());
    }

    #[test]
    fn parse_rst_ack() {
        let repr = parse(&RST_ACK, SRV, CLI).unwrap();
        assert_eq!(repr.control, TcpControl::Rst);
        assert_eq!(repr.seq_number, SeqNumber(0));
        assert_eq!(repr.ack_number, Some(SeqNumber(0x1a2b3c4e)));
        assert_eq!(repr.window_len, 0);
        assert_eq!(repr.header_len(), HEADER_LEN);
        assert_eq!(repr.segment_len(), 0);
        assert!(!repr.is_empty());
        assert_eq!(emit_vec(&repr, SRV, CLI), RST_ACK);
    }

    #[test]
    fn round_trips_are_byte_exact() {
        for (bytes, src, dst) in vectors() {
            let repr = parse(&bytes, src, dst).unwrap();
            assert_eq!(repr.buffer_len(), bytes.len());
            assert_eq!(emit_vec(&repr, src, dst), bytes, "{repr:?}");
        }
    }

    /// Header fields and payload of a segment the function was lent: they outlive the view.
    fn payload_and_options(bytes: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
        let packet = TcpPacket::new_checked(bytes)?;
        Ok((packet.options(), packet.payload()))
    }

    fn parse_owned_view(bytes: &[u8]) -> Result<TcpRepr<'_>, WireError> {
        TcpRepr::parse(&TcpPacket::new_checked(bytes)?, SRV, CLI)
    }

    #[test]
    fn slices_borrow_the_buffer_not_the_view() {
        let segment = data_segment();
        let (options, payload) = payload_and_options(&segment).unwrap();
        assert_eq!(options, &DATA_HEADER[20..]);
        assert_eq!(payload, DATA_PAYLOAD);
        assert_eq!(parse_owned_view(&segment).unwrap().payload, DATA_PAYLOAD);
        assert_eq!(payload_and_options(&SYN[..19]), Err(WireError::Truncated));
        // Over `&Vec<u8>` too.
        assert_eq!(
            TcpPacket::new_checked(&segment).unwrap().payload().len(),
            39
        );
    }

    // --- malformed input -----------------------------------------------------------------------

    #[test]
    fn truncated_at_every_length() {
        for len in 0..SYN.len() {
            let err = TcpPacket::new_checked(&SYN[..len]).unwrap_err();
            assert_eq!(err, WireError::Truncated, "{len}");
            let unchecked = TcpPacket::new_unchecked(&SYN[..len]);
            assert_eq!(
                TcpRepr::parse(&unchecked, CLI, SRV),
                Err(WireError::Truncated)
            );
        }
        // Cutting the payload keeps a valid header but breaks the checksum.
        let segment = data_segment();
        for len in DATA_HEADER.len()..segment.len() {
            assert_eq!(
                parse(&segment[..len], SRV, CLI),
                Err(WireError::Checksum),
                "{len}"
            );
        }
    }

    #[test]
    fn data_offset_below_five_is_malformed() {
        for offset in 0..5u8 {
            let bytes = edited(&RST_ACK, |p| p.set_header_len(offset * 4));
            let err = TcpPacket::new_checked(&bytes[..]).unwrap_err();
            assert_eq!(err, WireError::Malformed, "{offset}");
            let unchecked = TcpPacket::new_unchecked(&bytes[..]);
            assert_eq!(
                TcpRepr::parse(&unchecked, CLI, SRV),
                Err(WireError::Malformed)
            );
        }
        // Data offset 15 on a 20-byte segment: the header does not fit.
        let bytes = edited(&RST_ACK, |p| p.set_header_len(60));
        let err = TcpPacket::new_checked(&bytes[..]).unwrap_err();
        assert_eq!(err, WireError::Truncated);
    }

    #[test]
    fn bad_checksum() {
        for at in [0, 5, 13, 16, 17, 21, 39] {
            let mut buf = SYN;
            buf[at] ^= 0x10;
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            assert!(!packet.verify_checksum(CLI, SRV));
            assert_eq!(TcpRepr::parse(&packet, CLI, SRV), Err(WireError::Checksum));
        }
        // The checksum is checked before the ports and flags.
        let mut buf = SYN;
        buf[0] = 0;
        buf[1] = 0;
        buf[13] = 0x03;
        assert_eq!(parse(&buf, CLI, SRV), Err(WireError::Checksum));
    }

    #[test]
    fn zero_ports_are_malformed() {
        let src_zero = edited(&SYN, |p| p.set_src_port(0));
        assert_eq!(parse(&src_zero, CLI, SRV), Err(WireError::Malformed));
        let dst_zero = edited(&SYN, |p| p.set_dst_port(0));
        assert_eq!(parse(&dst_zero, CLI, SRV), Err(WireError::Malformed));
    }

    #[test]
    fn contradictory_control_bits_are_malformed() {
        type Set = fn(&mut TcpPacket<&mut [u8]>);
        let combos: [(Set, Set); 3] = [
            (|p| p.set_syn(true), |p| p.set_fin(true)),
            (|p| p.set_syn(true), |p| p.set_rst(true)),
            (|p| p.set_fin(true), |p| p.set_rst(true)),
        ];
        for (first, second) in combos {
            for psh in [false, true] {
                let bytes = edited(&RST_ACK, |p| {
                    p.clear_flags();
                    first(p);
                    second(p);
                    p.set_psh(psh);
                    p.set_ack(true);
                });
                assert_eq!(parse(&bytes, CLI, SRV), Err(WireError::Malformed));
            }
        }
        let all = edited(&RST_ACK, |p| {
            p.set_syn(true);
            p.set_fin(true);
        });
        assert_eq!(parse(&all, CLI, SRV), Err(WireError::Malformed));
    }

    #[test]
    fn control_bits_map_to_tcp_control() {
        type Set = fn(&mut TcpPacket<&mut [u8]>);
        let cases: [(Set, TcpControl); 5] = [
            (|_| {}, TcpControl::None),
            (|p| p.set_psh(true), TcpControl::Psh),
            (|p| p.set_syn(true), TcpControl::Syn),
            (|p| p.set_fin(true), TcpControl::Fin),
            (|p| p.set_rst(true), TcpControl::Rst),
        ];
        for (set, control) in cases {
            for psh in [false, true] {
                let bytes = edited(&RST_ACK, |p| {
                    p.clear_flags();
                    set(p);
                    if psh {
                        p.set_psh(true);
                    }
                });
                let repr = parse(&bytes, CLI, SRV).unwrap();
                let expected = match (control, psh) {
                    (TcpControl::None, true) => TcpControl::Psh,
                    _ => control,
                };
                assert_eq!(repr.control, expected);
                assert_eq!(repr.ack_number, None);
            }
        }
        // ECE, CWR and the reserved bits are accepted and not represented.
        let bytes = edited(&RST_ACK, |p| {
            p.set_ece(true);
            p.set_cwr(true);
        });
        let mut bytes = bytes;
        bytes[12] |= 0x0f;
        TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(CLI, SRV);
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.control, TcpControl::Rst);
        assert_eq!(emit_vec(&repr, CLI, SRV)[12..14], [0x50, 0x14]);
    }

    #[test]
    fn ack_and_urgent_fields_ignored_without_their_flags() {
        let bytes = edited(&SYN, |p| {
            p.set_ack_number(SeqNumber(0xdead_beef));
            p.set_urgent_at(0x1234);
        });
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.ack_number, None);
        assert_eq!(repr.urgent_pointer, None);
        // Emitting writes zeros there.
        assert_eq!(emit_vec(&repr, CLI, SRV), SYN);

        let urgent = edited(&RST_ACK, |p| {
            p.set_rst(false);
            p.set_urg(true);
            p.set_urgent_at(0);
        });
        let repr = parse(&urgent, CLI, SRV).unwrap();
        assert_eq!(repr.urgent_pointer, Some(0));
        let urgent = edited(&RST_ACK, |p| {
            p.set_rst(false);
            p.set_urg(true);
            p.set_urgent_at(0x1234);
        });
        let repr = parse(&urgent, CLI, SRV).unwrap();
        assert_eq!(repr.urgent_pointer, Some(0x1234));
        assert_eq!(emit_vec(&repr, CLI, SRV), urgent);
    }

    #[test]
    fn malformed_options() {
        let cases: [&[u8]; 22] = [
            &[0x02, 0x00, 0x00, 0x00],                         // length 0
            &[0x02, 0x01, 0x00, 0x00],                         // length 1
            &[0x1e, 0x00, 0x00, 0x00],                         // unknown kind, length 0
            &[0xfe, 0x01, 0x01, 0x01],                         // unknown kind, length 1
            &[0x01, 0x01, 0x01, 0x02],                         // kind without a length byte
            &[0x01, 0x01, 0x01, 0xfd],                         // unknown kind without a length byte
            &[0x02, 0x08, 0x05, 0xb4],                         // length beyond the options
            &[0x1e, 0x05, 0x00, 0x00], // unknown kind, length beyond the options
            &[0x02, 0x03, 0x05, 0x01], // MSS, length 3
            &[0x02, 0x05, 0x05, 0xb4, 0x00, 0x01, 0x01, 0x01], // MSS, length 5
            &[0x03, 0x02, 0x01, 0x01], // window scale, length 2
            &[0x03, 0x04, 0x07, 0x00], // window scale, length 4
            &[0x04, 0x03, 0x00, 0x01], // SACK permitted, length 3
            &[0x04, 0x04, 0x00, 0x00], // SACK permitted, length 4
            &[0x08, 0x08, 0, 0, 0, 1, 0, 0], // timestamps, length 8
            &[0x08, 0x0c, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0], // timestamps, length 12
            &[0x05, 0x02, 0x01, 0x01], // SACK, no block
            &[0x05, 0x09, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1], // SACK, 7 bytes
            &[0x05, 0x0b, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0], // SACK, 9 bytes
            &[0x05, 0x0c, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0], // SACK, 10 bytes
            // A good MSS, then a bad option: the whole segment is rejected.
            &[0x02, 0x04, 0x05, 0xb4, 0x03, 0x02, 0x01, 0x01],
            // A repeated option that is malformed is rejected too.
            &[0x03, 0x03, 0x07, 0x03, 0x01, 0x07, 0x01, 0x01],
        ];
        for options in cases {
            let bytes = syn_with_options(options);
            assert!(TcpPacket::new_checked(&bytes[..]).is_ok());
            assert_eq!(
                parse(&bytes, CLI, SRV),
                Err(WireError::Malformed),
                "{options:02x?}"
            );
            // The first bad option is what TcpOption::parse rejects.
            let mut rest = options;
            let err = loop {
                match TcpOption::parse(rest) {
                    Ok((next, _)) => rest = next,
                    Err(err) => break err,
                }
            };
            assert_eq!(err, WireError::Malformed, "{options:02x?}");
        }
    }

    #[test]
    fn option_parse_errors() {
        assert_eq!(TcpOption::parse(&[]), Err(WireError::Truncated));
        assert_eq!(TcpOption::parse(&[0x02]), Err(WireError::Malformed));
        // Five SACK blocks (length 42) never fit a header and are malformed anyway.
        let mut five = [0u8; 42];
        five[0] = 0x05;
        five[1] = 42;
        assert_eq!(TcpOption::parse(&five), Err(WireError::Malformed));
        // Lengths beyond the buffer by one.
        assert_eq!(
            TcpOption::parse(&[0x02, 0x04, 0x05]),
            Err(WireError::Malformed)
        );
        assert_eq!(
            TcpOption::parse(&[0x08, 0x0a, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn options_parse_and_emit_one_by_one() {
        let cases: [(&[u8], TcpOption<'_>); 10] = [
            (&[0x00], TcpOption::EndOfList),
            (&[0x01], TcpOption::NoOperation),
            (&[0x02, 0x04, 0x05, 0xb4], TcpOption::MaxSegmentSize(1460)),
            (&[0x03, 0x03, 0x0e], TcpOption::WindowScale(14)),
            (&[0x03, 0x03, 0xff], TcpOption::WindowScale(255)),
            (&[0x04, 0x02], TcpOption::SackPermitted),
            (
                &[0x08, 0x0a, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
                TcpOption::Timestamp(TcpTimestamp {
                    tsval: 1,
                    tsecr: u32::MAX,
                }),
            ),
            (
                &[0x05, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2],
                TcpOption::SackRange([Some((1, 2)), None, None, None]),
            ),
            (
                &[
                    0x05, 0x22, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0,
                    0, 6, 0, 0, 0, 7, 0, 0, 0, 8,
                ],
                TcpOption::SackRange([Some((1, 2)), Some((3, 4)), Some((5, 6)), Some((7, 8))]),
            ),
            (
                &[0x22, 0x04, 0xab, 0xcd],
                TcpOption::Unknown {
                    kind: 34,
                    data: &[0xab, 0xcd],
                },
            ),
        ];
        for (bytes, option) in cases {
            let mut with_tail = bytes.to_vec();
            with_tail.extend_from_slice(&[0x99, 0x98]);
            let (rest, parsed) = TcpOption::parse(&with_tail).unwrap();
            assert_eq!(parsed, option);
            assert_eq!(rest, &[0x99, 0x98]);
            assert_eq!(option.buffer_len(), bytes.len());
            let mut out = [0x77u8; 40];
            let rest_len = option.emit(&mut out).len();
            assert_eq!(rest_len, 40 - bytes.len());
            assert_eq!(&out[..bytes.len()], bytes);
            assert_eq!(out[bytes.len()], 0x77, "{option:?} wrote past its length");
        }
        // Unknown with no data.
        let (rest, option) = TcpOption::parse(&[0xfd, 0x02]).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            option,
            TcpOption::Unknown {
                kind: 253,
                data: &[]
            }
        );
        // SACK slots: `None`s are skipped when emitting, and no block at all emits nothing.
        let gappy = TcpOption::SackRange([None, Some((1, 2)), None, Some((3, 4))]);
        assert_eq!(gappy.buffer_len(), 18);
        let mut out = [0u8; 18];
        assert!(gappy.emit(&mut out).is_empty());
        assert_eq!(
            TcpOption::parse(&out).unwrap().1,
            TcpOption::SackRange([Some((1, 2)), Some((3, 4)), None, None])
        );
        let empty = TcpOption::SackRange([None; 4]);
        assert_eq!(empty.buffer_len(), 0);
        let mut out = [0x77u8; 4];
        assert_eq!(empty.emit(&mut out).len(), 4);
        assert_eq!(out, [0x77; 4]);
    }

    #[test]
    #[should_panic]
    fn option_emit_into_short_buffer_panics() {
        TcpOption::Timestamp(TcpTimestamp::default()).emit(&mut [0u8; 9]);
    }

    #[test]
    fn lenient_options() {
        // Window scale above 14 is clamped (RFC 7323 §2.3).
        for (shift, expected) in [(0u8, 0u8), (14, 14), (15, 14), (255, 14)] {
            let bytes = syn_with_options(&[0x01, 0x03, 0x03, shift]);
            let repr = parse(&bytes, CLI, SRV).unwrap();
            assert_eq!(repr.window_scale, Some(expected));
        }
        // MSS 0 is taken as absent.
        let bytes = syn_with_options(&[0x02, 0x04, 0x00, 0x00]);
        assert_eq!(parse(&bytes, CLI, SRV).unwrap().max_seg_size, None);
        // ... and still counts as the first MSS.
        let bytes = syn_with_options(&[0x02, 0x04, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(parse(&bytes, CLI, SRV).unwrap().max_seg_size, None);
        // Only the first occurrence of each option counts.
        let bytes = syn_with_options(&[
            0x02, 0x04, 0x05, 0xb4, 0x02, 0x04, 0x02, 0x18, // MSS 1460, MSS 536
            0x01, 0x03, 0x03, 0x07, 0x01, 0x03, 0x03, 0x02, // WS 7, WS 2
            0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2, // TS 1/2
            0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 3, 0, 0, 0, 4, // TS 3/4
        ]);
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.max_seg_size, Some(1460));
        assert_eq!(repr.window_scale, Some(7));
        assert_eq!(repr.timestamp, Some(TcpTimestamp { tsval: 1, tsecr: 2 }));
        let bytes = syn_with_options(&[
            0x01, 0x01, 0x05, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2, // SACK (1, 2)
            0x01, 0x01, 0x05, 0x0a, 0, 0, 0, 3, 0, 0, 0, 4, // SACK (3, 4)
        ]);
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.sack_ranges, [Some((1, 2)), None, None]);
        // Unknown options are skipped: MPTCP (30), TFO (34), experimental (253, 254).
        let bytes = syn_with_options(&[
            0x1e, 0x04, 0x00, 0x81, // MP_CAPABLE-ish
            0x22, 0x02, 0xfd, 0x02, // TFO cookie request, experimental
            0xfe, 0x06, 0xf9, 0x89, 0x00, 0x00, // experimental with data
            0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, // MSS, NOP NOP
        ]);
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.max_seg_size, Some(1460));
        assert_eq!(repr.window_scale, None);
        // End of Option List ends parsing: what follows is padding, even if it looks bad.
        let bytes = syn_with_options(&[0x02, 0x04, 0x05, 0xb4, 0x00, 0x02, 0x00, 0xff]);
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.max_seg_size, Some(1460));
        let bytes = syn_with_options(&[0x00, 0x02, 0x04, 0x05, 0xb4, 0x00, 0x00, 0x00]);
        assert_eq!(parse(&bytes, CLI, SRV).unwrap().max_seg_size, None);
        // Four SACK blocks: the first three are kept.
        let mut options = vec![0x01, 0x01, 0x05, 0x22];
        for v in 1..=8u32 {
            options.extend_from_slice(&v.to_be_bytes());
        }
        let bytes = syn_with_options(&options);
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.sack_ranges, [Some((1, 2)), Some((3, 4)), Some((5, 6))]);
        // SYN options on a non-SYN segment are reported; ignoring them is the engine's job.
        let bytes = edited(&SYN, |p| {
            p.set_syn(false);
            p.set_ack(true);
        });
        let repr = parse(&bytes, CLI, SRV).unwrap();
        assert_eq!(repr.control, TcpControl::None);
        assert_eq!(repr.max_seg_size, Some(1460));
        assert_eq!(repr.window_scale, Some(7));
        assert!(repr.sack_permitted);
    }

    // --- emitting --------------------------------------------------------------------------

    fn bare(control: TcpControl) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 1,
            dst_port: 2,
            control,
            seq_number: SeqNumber(3),
            ack_number: None,
            window_len: 4,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            urgent_pointer: None,
            payload: &[],
        }
    }

    #[test]
    fn option_layouts_match_linux() {
        let ts = Some(TcpTimestamp {
            tsval: 0x01020304,
            tsecr: 0x05060708,
        });
        let ts_bytes = [1, 2, 3, 4, 5, 6, 7, 8];
        let cases: Vec<(TcpRepr<'static>, Vec<u8>)> = vec![
            (bare(TcpControl::Syn), vec![]),
            // SYN with only MSS and window scale (timestamps and SACK off).
            (
                TcpRepr {
                    max_seg_size: Some(1460),
                    window_scale: Some(7),
                    ..bare(TcpControl::Syn)
                },
                vec![0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07],
            ),
            // SYN with SACK but no timestamps.
            (
                TcpRepr {
                    max_seg_size: Some(1460),
                    sack_permitted: true,
                    window_scale: Some(7),
                    ..bare(TcpControl::Syn)
                },
                vec![
                    0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02, 0x01, 0x03, 0x03, 0x07,
                ],
            ),
            // SYN with timestamps but no SACK.
            (
                TcpRepr {
                    max_seg_size: Some(1460),
                    timestamp: ts,
                    window_scale: Some(7),
                    ..bare(TcpControl::Syn)
                },
                [
                    &[0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x08, 0x0a][..],
                    &ts_bytes,
                    &[0x01, 0x03, 0x03, 0x07],
                ]
                .concat(),
            ),
            // Data with SACK blocks and no timestamps.
            (
                TcpRepr {
                    sack_ranges: [Some((1, 2)), Some((3, 4)), None],
                    ..bare(TcpControl::None)
                },
                vec![
                    0x01, 0x01, 0x05, 0x12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4,
                ],
            ),
            // `None` slots are skipped.
            (
                TcpRepr {
                    timestamp: ts,
                    sack_ranges: [None, Some((1, 2)), None],
                    ..bare(TcpControl::None)
                },
                [
                    &[0x01, 0x01, 0x08, 0x0a][..],
                    &ts_bytes,
                    &[0x01, 0x01, 0x05, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2],
                ]
                .concat(),
            ),
            // Window scale above 14 is written as 14.
            (
                TcpRepr {
                    window_scale: Some(200),
                    ..bare(TcpControl::Syn)
                },
                vec![0x01, 0x03, 0x03, 0x0e],
            ),
        ];
        for (repr, options) in cases {
            assert_eq!(repr.header_len(), HEADER_LEN + options.len(), "{repr:?}");
            let out = emit_vec(&repr, CLI, SRV);
            let packet = TcpPacket::new_checked(&out[..]).unwrap();
            assert_eq!(packet.options(), &options[..], "{repr:?}");
            assert!(packet.verify_checksum(CLI, SRV));
            let again = TcpRepr::parse(&packet, CLI, SRV).unwrap();
            assert_eq!(again.max_seg_size, repr.max_seg_size);
            assert_eq!(again.timestamp, repr.timestamp);
            assert_eq!(again.sack_permitted, repr.sack_permitted);
            assert_eq!(
                again.window_scale,
                repr.window_scale.map(|s| s.min(MAX_WINDOW_SCALE))
            );
        }
    }

    #[test]
    fn everything_at_once_keeps_the_sack_blocks_that_fit() {
        // 20 bytes of SYN options leave room for two SACK blocks (4 + 16).
        let repr = TcpRepr {
            sack_ranges: [Some((1, 2)), Some((3, 4)), Some((5, 6))],
            ..syn_repr()
        };
        assert_eq!(repr.header_len(), MAX_HEADER_LEN);
        let out = emit_vec(&repr, CLI, SRV);
        let again = parse(&out, CLI, SRV).unwrap();
        assert_eq!(again.sack_ranges, [Some((1, 2)), Some((3, 4)), None]);
        assert_eq!(
            TcpRepr {
                sack_ranges: repr.sack_ranges,
                ..again
            },
            repr
        );
        // Without the timestamps all three fit (MSS 4 + SACK-permitted 4 + WS 4 + 28 = 40).
        let repr = TcpRepr {
            timestamp: None,
            ..repr
        };
        assert_eq!(repr.header_len(), MAX_HEADER_LEN);
        let out = emit_vec(&repr, CLI, SRV);
        assert_eq!(parse(&out, CLI, SRV).unwrap(), repr);
    }

    #[test]
    fn emit_sets_only_the_flags_asked_for() {
        let payload = b"abc";
        for control in [
            TcpControl::None,
            TcpControl::Psh,
            TcpControl::Syn,
            TcpControl::Fin,
            TcpControl::Rst,
        ] {
            for ack in [None, Some(SeqNumber(9))] {
                for data in [&payload[..], &[]] {
                    let repr = TcpRepr {
                        ack_number: ack,
                        payload: data,
                        urgent_pointer: None,
                        ..bare(control)
                    };
                    // Start from a buffer with every bit set.
                    let mut out = vec![0xff; repr.buffer_len()];
                    repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), CLI, SRV);
                    let p = TcpPacket::new_checked(&out[..]).unwrap();
                    assert_eq!(p.syn(), control == TcpControl::Syn);
                    assert_eq!(p.fin(), control == TcpControl::Fin);
                    assert_eq!(p.rst(), control == TcpControl::Rst);
                    let psh = control == TcpControl::Psh
                        || (control == TcpControl::Fin && !data.is_empty());
                    assert_eq!(p.psh(), psh);
                    assert_eq!(p.ack(), ack.is_some());
                    assert_eq!(p.ack_number(), ack.unwrap_or(SeqNumber(0)));
                    assert!(!p.urg() && !p.ece() && !p.cwr());
                    assert_eq!(out[12] & 0x0f, 0, "reserved bits");
                    assert_eq!(p.urgent_at(), 0);
                    assert_eq!(p.payload(), data);
                    let again = TcpRepr::parse(&p, CLI, SRV).unwrap();
                    assert_eq!(again, repr);
                    assert_eq!(again.segment_len(), data.len() + control.sequence_len());
                }
            }
        }
    }

    #[test]
    fn is_empty_and_segment_len() {
        assert!(bare(TcpControl::None).is_empty());
        assert!(bare(TcpControl::Psh).is_empty());
        for control in [TcpControl::Syn, TcpControl::Fin, TcpControl::Rst] {
            assert!(!bare(control).is_empty());
        }
        let data = TcpRepr {
            payload: b"x",
            ..bare(TcpControl::None)
        };
        assert!(!data.is_empty());
        assert_eq!(data.segment_len(), 1);
        assert_eq!(bare(TcpControl::Syn).segment_len(), 1);
        assert_eq!(bare(TcpControl::Fin).segment_len(), 1);
        assert_eq!(bare(TcpControl::Rst).segment_len(), 0);
        assert_eq!(TcpControl::default(), TcpControl::None);
    }

    #[test]
    #[should_panic(expected = "not buffer_len() bytes")]
    fn emit_into_a_longer_buffer_panics() {
        let repr = bare(TcpControl::Syn);
        let mut out = [0u8; 21];
        repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), CLI, SRV);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 28];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_header_len(24);
        p.set_src_port(0xabcd);
        p.set_dst_port(0x1234);
        p.set_seq_number(SeqNumber(0xdead_beef));
        p.set_ack_number(SeqNumber(0x0102_0304));
        p.set_window_len(0xfffe);
        p.set_urgent_at(0x0bad);
        p.options_mut().copy_from_slice(&[0x01, 0x03, 0x03, 0x09]);
        p.payload_mut().copy_from_slice(b"abcd");
        type Setter = fn(&mut TcpPacket<&mut [u8]>, bool);
        type Getter = fn(&TcpPacket<&mut [u8]>) -> bool;
        let setters: [Setter; 8] = [
            |p, v| p.set_fin(v),
            |p, v| p.set_syn(v),
            |p, v| p.set_rst(v),
            |p, v| p.set_psh(v),
            |p, v| p.set_ack(v),
            |p, v| p.set_urg(v),
            |p, v| p.set_ece(v),
            |p, v| p.set_cwr(v),
        ];
        let getters: [Getter; 8] = [
            |p| p.fin(),
            |p| p.syn(),
            |p| p.rst(),
            |p| p.psh(),
            |p| p.ack(),
            |p| p.urg(),
            |p| p.ece(),
            |p| p.cwr(),
        ];
        for (i, set) in setters.iter().enumerate() {
            set(&mut p, true);
            for (j, get) in getters.iter().enumerate() {
                assert_eq!(get(&p), i == j, "set {i}, get {j}");
            }
            assert_eq!(p.header_len(), 24);
            set(&mut p, false);
            assert!(getters.iter().all(|get| !get(&p)));
        }
        for set in &setters {
            set(&mut p, true);
        }
        p.fill_checksum(CLI, SRV);
        assert_eq!(p.src_port(), 0xabcd);
        assert_eq!(p.dst_port(), 0x1234);
        assert_eq!(p.seq_number(), SeqNumber(0xdead_beef));
        assert_eq!(p.ack_number(), SeqNumber(0x0102_0304));
        assert_eq!(p.window_len(), 0xfffe);
        assert_eq!(p.urgent_at(), 0x0bad);
        assert_eq!(p.options_mut(), &[0x01, 0x03, 0x03, 0x09]);
        assert_eq!(p.payload_mut(), b"abcd");
        assert!(p.verify_checksum(CLI, SRV));
        assert_eq!(p.segment_len(), 6);
        p.set_checksum(0x1234);
        assert_eq!(p.checksum(), 0x1234);
        assert_eq!(buf[12..14], [0x60, 0xff]);
        buf[12] |= 0x0f;
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.clear_flags();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.into_inner()[12..14], [0x60, 0x00]);
        assert_eq!(TcpPacket::<&[u8]>::HEADER_LEN, 20);
    }

    // --- random input ----------------------------------------------------------------------

    /// Everything a received buffer can drive, for one (src, dst) pair. Panics only on a bug.
    fn exercise(buf: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
        let _ = TcpRepr::parse(&TcpPacket::new_unchecked(buf), src, dst);
        // Raw option parsing always makes progress and never panics.
        let mut rest = buf;
        while let Ok((next, option)) = TcpOption::parse(rest) {
            assert!(next.len() < rest.len());
            let _ = option.buffer_len();
            rest = next;
        }
        let Ok(packet) = TcpPacket::new_checked(buf) else {
            return;
        };
        let _ = (packet.src_port(), packet.dst_port(), packet.seq_number());
        let _ = (
            packet.ack_number(),
            packet.fin(),
            packet.syn(),
            packet.rst(),
        );
        let _ = (packet.psh(), packet.ack(), packet.urg(), packet.ece());
        let _ = (packet.cwr(), packet.window_len(), packet.checksum());
        let _ = (packet.urgent_at(), packet.verify_checksum(src, dst));
        let header_len = usize::from(packet.header_len());
        assert_eq!(packet.options().len(), header_len - HEADER_LEN);
        assert_eq!(packet.payload().len(), buf.len() - header_len);
        assert!(packet.segment_len() >= packet.payload().len());
        let Ok(repr) = TcpRepr::parse(&packet, src, dst) else {
            return;
        };
        assert!(repr.header_len() <= MAX_HEADER_LEN && repr.header_len() % 4 == 0);
        assert!(repr.window_scale.is_none_or(|s| s <= MAX_WINDOW_SCALE));
        assert_ne!(repr.max_seg_size, Some(0));
        assert_eq!(repr.payload, packet.payload());
        let out = emit_vec(&repr, src, dst);
        let again = parse(&out, src, dst).expect("emitted segment parses");
        // Identical, except that SACK blocks beside SYN options may not all fit.
        assert_eq!(
            TcpRepr {
                sack_ranges: repr.sack_ranges,
                ..again
            },
            repr
        );
        for (kept, original) in again.sack_ranges.iter().zip(&repr.sack_ranges) {
            assert!(kept.is_none() || kept == original);
        }
        if again.sack_ranges != repr.sack_ranges {
            // Only when another block would not have fitted.
            assert!(again.header_len() + 8 > MAX_HEADER_LEN);
        }
        // Emitting what was parsed back is a fixed point.
        assert_eq!(emit_vec(&again, src, dst), out);
    }

    /// Appends random options, mostly well-formed, up to `room` bytes.
    fn random_options(rng: &mut fastrand::Rng, out: &mut Vec<u8>, room: usize) {
        let start = out.len();
        while out.len() - start < room {
            let left = room - (out.len() - start);
            let (kind, len) = match rng.u8(0..10) {
                0 => (0, 1),
                1 | 2 => (1, 1),
                3 => (2, 4),
                4 => (3, 3),
                5 => (4, 2),
                6 => (5, 2 + 8 * rng.usize(1..=4)),
                7 => (8, 10),
                8 => (rng.u8(..), rng.usize(0..12)),
                _ => (rng.u8(0..10), rng.usize(0..12)),
            };
            // Now and then a wrong length.
            let len = if rng.u8(0..16) == 0 {
                rng.usize(0..12)
            } else {
                len
            };
            if len > left {
                out.resize(start + room, if rng.bool() { 0 } else { 1 });
                break;
            }
            out.push(kind);
            if len >= 2 {
                out.push(len as u8);
                for _ in 2..len {
                    out.push(if rng.bool() {
                        rng.u8(..)
                    } else {
                        rng.u8(0..16)
                    });
                }
            }
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0x9293);
        let vectors = vectors();
        let mut buf = Vec::with_capacity(200);
        let mut accepted = 0;
        for i in 0..100_000 {
            buf.clear();
            let (src, dst) = if rng.bool() { (CLI, SRV) } else { (SRV, CLI) };
            match i % 3 {
                0 => {
                    // Pure noise.
                    buf.resize(rng.usize(0..=100), 0);
                    rng.fill(&mut buf);
                    if buf.len() >= HEADER_LEN && rng.bool() {
                        TcpPacket::new_unchecked(&mut buf[..]).fill_checksum(src, dst);
                    }
                }
                1 => {
                    // A real segment, cut or extended, with a few bytes overwritten and, most of
                    // the time, a fixed-up checksum so the checks after it are reached.
                    let (vector, vsrc, vdst) = &vectors[rng.usize(..vectors.len())];
                    buf.extend_from_slice(vector);
                    if rng.bool() {
                        buf.truncate(rng.usize(0..=vector.len()));
                    } else if rng.bool() {
                        let extra = rng.usize(0..40);
                        buf.extend((0..extra).map(|_| rng.u8(..)));
                    }
                    for _ in 0..rng.usize(0..4) {
                        if !buf.is_empty() {
                            let at = rng.usize(..buf.len().min(MAX_HEADER_LEN));
                            buf[at] = rng.u8(..);
                        }
                    }
                    if buf.len() >= HEADER_LEN && rng.u8(0..4) != 0 {
                        TcpPacket::new_unchecked(&mut buf[..]).fill_checksum(*vsrc, *vdst);
                    }
                    exercise(&buf, *vsrc, *vdst);
                    continue;
                }
                _ => {
                    // A random header with random, mostly well-formed options and payload.
                    buf.resize(HEADER_LEN, 0);
                    rng.fill(&mut buf);
                    let room = 4 * rng.usize(0..=10);
                    random_options(&mut rng, &mut buf, room);
                    let payload = rng.usize(0..20);
                    buf.extend((0..payload).map(|_| rng.u8(..)));
                    TcpPacket::new_unchecked(&mut buf[..])
                        .set_header_len((HEADER_LEN + room) as u8);
                    if rng.u8(0..4) != 0 {
                        // Mostly no SYN/FIN/RST/PSH or exactly one of them.
                        let control = [0x00, 0x01, 0x02, 0x04, 0x08][rng.usize(0..5)];
                        buf[13] = (buf[13] & 0xf0) | control;
                    }
                    if rng.u8(0..8) != 0 {
                        TcpPacket::new_unchecked(&mut buf[..]).fill_checksum(src, dst);
                    }
                }
            }
            if parse(&buf, src, dst).is_ok() {
                accepted += 1;
            }
            exercise(&buf, src, dst);
        }
        // The generator reaches the deep end often enough to mean something.
        assert!(accepted > 10_000, "only {accepted} segments parsed");
    }
}
