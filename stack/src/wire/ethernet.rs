//! Ethernet II framing (IEEE 802.3 §3.2, RFC 894 for IPv4 over Ethernet).
//!
//! The FCS is stripped by the NIC and never seen here. 802.1Q tags are not interpreted: a tagged
//! frame simply reports [`EtherType::Unknown`]`(0x8100)`.

use core::fmt;
use core::str::FromStr;

use super::{read_u16, write_u16, WireError};

/// Length of the Ethernet II header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: RangeFrom<usize> = super::HEADER_LEN..;
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// `ff:ff:ff:ff:ff:ff`, the destination of ARP requests.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Builds an address from a six-byte slice.
    ///
    /// # Panics
    ///
    /// Panics if `data.len() != 6`; it is meant for slices whose length is fixed by construction
    /// (e.g. a field range of a checked packet), never for raw input.
    pub fn from_bytes(data: &[u8]) -> EthernetAddress {
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(data);
        EthernetAddress(bytes)
    }

    /// The six octets, in transmission order.
    pub const fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the I/G bit (least significant bit of the first octet) is set; the broadcast
    /// address is a multicast address (IEEE 802 §8.2).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for individual (non-group) addresses, i.e. ones that may appear as a source.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for EthernetAddress {
    type Err = WireError;

    /// Parses `aa:bb:cc:dd:ee:ff` (six colon-separated groups of one or two hex digits, any
    /// case). Anything else is [`WireError::Malformed`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut groups = s.split(':');
        for byte in &mut bytes {
            let group = groups.next().ok_or(WireError::Malformed)?;
            // from_str_radix alone would also accept a leading '+'.
            if group.is_empty() || group.len() > 2 || !group.bytes().all(|c| c.is_ascii_hexdigit())
            {
                return Err(WireError::Malformed);
            }
            *byte = u8::from_str_radix(group, 16).map_err(|_| WireError::Malformed)?;
        }
        if groups.next().is_some() {
            return Err(WireError::Malformed);
        }
        Ok(EthernetAddress(bytes))
    }
}

/// The EtherType field: which protocol the payload carries (IEEE 802.3 §3.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800 (RFC 894).
    Ipv4,
    /// 0x0806 (RFC 826).
    Arp,
    /// 0x86dd (RFC 2464).
    Ipv6,
    /// Anything else, including 802.1Q tags (0x8100) and 802.3 length values.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

/// A zero-copy view of an Ethernet II frame.
///
/// After [`EthernetFrame::new_checked`] every accessor is panic-free. With
/// [`EthernetFrame::new_unchecked`] accessors panic if the buffer is shorter than [`HEADER_LEN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without validating it.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds a full header.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
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

    /// Destination MAC address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// EtherType of the payload.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Everything after the header, including any padding up to the 60-byte minimum frame; the
    /// upper layer trims it using its own length field.
    ///
    /// The slice borrows the underlying buffer (`'a`), not the view, so a function can parse a
    /// frame it was lent and return parts of it. Only views over a shared reference have this
    /// getter; for an owned or `&mut` buffer use [`EthernetFrame::payload_mut`], or wrap
    /// `frame.as_ref()` in a new view.
    pub fn payload(&self) -> &'a [u8] {
        let buffer: &'a T = self.buffer;
        &buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, value.into());
    }

    /// Mutable access to everything after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The high-level content of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header. Only a short buffer ([`WireError::Truncated`]) is rejected; filtering by
    /// destination address is the interface's job, not the parser's.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, WireError> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes needed for the header ([`HEADER_LEN`]); add the payload length for the frame.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`; the payload is untouched.
    ///
    /// # Panics
    ///
    /// Panics if the buffer is shorter than [`Self::buffer_len`], which the caller guarantees.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast ARP request as seen on the wire, including the 18 bytes of padding the sender
    /// added to reach the 60-byte minimum frame.
    const ARP_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst: broadcast
        0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
        0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54, 0x18, 0xa6, 0xac, 0x01, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0xa6, 0xad, 0x9f, // target
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, // padding
    ];

    #[test]
    fn parse_real_frame() {
        let frame = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(
            frame.src_addr(),
            EthernetAddress([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54])
        );
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.payload().len(), 46);
        assert_eq!(frame.payload()[..4], [0x00, 0x01, 0x08, 0x00]);
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: EthernetAddress([0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54]),
                dst_addr: EthernetAddress::BROADCAST,
                ethertype: EtherType::Arp,
            }
        );
    }

    /// The payload outlives the view: it borrows the caller's buffer.
    fn payload_of(frame: &[u8]) -> Option<&[u8]> {
        Some(EthernetFrame::new_checked(frame).ok()?.payload())
    }

    #[test]
    fn payload_borrows_the_buffer_not_the_view() {
        let buf = ARP_FRAME.to_vec();
        assert_eq!(payload_of(&buf), Some(&ARP_FRAME[HEADER_LEN..]));
        assert_eq!(payload_of(&buf[..HEADER_LEN - 1]), None);
        // Also over `&Vec<u8>` and `&[u8; N]`, through `AsRef<[u8]>`.
        let payload = EthernetFrame::new_checked(&buf).unwrap().payload();
        assert_eq!(payload.len(), 46);
        let payload = EthernetFrame::new_checked(&ARP_FRAME).unwrap().payload();
        assert_eq!(payload.len(), 46);
    }

    #[test]
    fn round_trip() {
        let frame = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        let mut out = [0u8; 60];
        out[HEADER_LEN..].copy_from_slice(frame.payload());
        let mut out_frame = EthernetFrame::new_checked(&mut out[..]).unwrap();
        repr.emit(&mut out_frame);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert_eq!(out_frame.into_inner().len(), 60);
        assert_eq!(out, ARP_FRAME);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; HEADER_LEN + 4];
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        frame.set_dst_addr(EthernetAddress([1, 2, 3, 4, 5, 6]));
        frame.set_src_addr(EthernetAddress([7, 8, 9, 10, 11, 12]));
        frame.set_ethertype(EtherType::Ipv6);
        frame
            .payload_mut()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            buf,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xdd, 0xde, 0xad, 0xbe, 0xef]
        );
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_FRAME[..len]).unwrap_err(),
                WireError::Truncated
            );
            let unchecked = EthernetFrame::new_unchecked(&ARP_FRAME[..len]);
            assert_eq!(EthernetRepr::parse(&unchecked), Err(WireError::Truncated));
        }
        let frame = EthernetFrame::new_checked(&ARP_FRAME[..HEADER_LEN]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn vlan_tag_is_unknown() {
        let mut buf = ARP_FRAME;
        buf[12..14].copy_from_slice(&[0x81, 0x00]);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x8100));
    }

    #[test]
    fn ethertype_conversions() {
        for (value, ty) in [
            (0x0800, EtherType::Ipv4),
            (0x0806, EtherType::Arp),
            (0x86dd, EtherType::Ipv6),
            (0x8100, EtherType::Unknown(0x8100)),
        ] {
            assert_eq!(EtherType::from(value), ty);
            assert_eq!(u16::from(ty), value);
        }
        assert_eq!(EtherType::Unknown(0x88cc).to_string(), "0x88cc");
    }

    #[test]
    fn address_classes() {
        let bcast = EthernetAddress::BROADCAST;
        assert!(bcast.is_broadcast() && bcast.is_multicast() && !bcast.is_unicast());
        let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert!(!mcast.is_broadcast() && mcast.is_multicast() && !mcast.is_unicast());
        let ucast = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
        assert!(!ucast.is_broadcast() && !ucast.is_multicast() && ucast.is_unicast());
        assert_eq!(EthernetAddress::default(), EthernetAddress([0; 6]));
        assert_eq!(ucast.as_bytes(), &[0x02, 0, 0, 0, 0, 1]);
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5, 6]).0,
            [1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    #[should_panic]
    fn from_bytes_wrong_length_panics() {
        let _ = EthernetAddress::from_bytes(&[1, 2, 3]);
    }

    #[test]
    fn address_display_and_parse() {
        let addr = EthernetAddress([0x00, 0x1b, 0x21, 0xab, 0xcd, 0xef]);
        assert_eq!(addr.to_string(), "00:1b:21:ab:cd:ef");
        assert_eq!("00:1b:21:ab:cd:ef".parse::<EthernetAddress>(), Ok(addr));
        assert_eq!("00:1B:21:AB:CD:EF".parse::<EthernetAddress>(), Ok(addr));
        assert_eq!("0:1b:21:ab:cd:ef".parse::<EthernetAddress>(), Ok(addr));
        assert_eq!(
            "ff:ff:ff:ff:ff:ff".parse::<EthernetAddress>(),
            Ok(EthernetAddress::BROADCAST)
        );
        for bad in [
            "",
            "00:1b:21:ab:cd",
            "00:1b:21:ab:cd:ef:01",
            "00:1b:21:ab:cd:",
            "00:1b:21:ab:cd:efa",
            "00-1b-21-ab-cd-ef",
            "00:1b:21:ab:cd:+f",
            "00:1b:21:ab:cd:eg",
            "00::21:ab:cd:ef",
            "00:1b:21:ab:cd:ef:",
            "🦀:1b:21:ab:cd:ef",
        ] {
            assert_eq!(
                bad.parse::<EthernetAddress>(),
                Err(WireError::Malformed),
                "{bad:?}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(48);
        for _ in 0..1000 {
            let mut b = [0u8; 6];
            rng.fill(&mut b);
            let addr = EthernetAddress(b);
            assert_eq!(addr.to_string().parse::<EthernetAddress>(), Ok(addr));
        }
    }

    fn exercise(buf: &[u8]) {
        let unchecked = EthernetFrame::new_unchecked(buf);
        let _ = EthernetRepr::parse(&unchecked);
        if let Ok(frame) = EthernetFrame::new_checked(buf) {
            let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype());
            let _ = frame.payload().len();
            let repr = EthernetRepr::parse(&frame).unwrap();
            let mut out = [0u8; HEADER_LEN];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
            assert_eq!(out, buf[..HEADER_LEN]);
        } else {
            assert!(buf.len() < HEADER_LEN);
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0xe7e7);
        let mut buf = [0u8; 80];
        for i in 0..100_000 {
            let len = if i % 2 == 0 {
                let len = rng.usize(0..=buf.len());
                rng.fill(&mut buf[..len]);
                len
            } else {
                // A real frame, possibly cut short, with a few bytes overwritten.
                let len = if rng.bool() {
                    ARP_FRAME.len()
                } else {
                    rng.usize(0..=ARP_FRAME.len())
                };
                buf[..len].copy_from_slice(&ARP_FRAME[..len]);
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
