//! IPv4 (RFC 791, RFC 1122 §3.2.1) for a host: accepting datagrams addressed
//! to the stack, routing outgoing ones to a next hop, and writing headers.

use std::net::Ipv4Addr;

use crate::{
    counters::DropReason,
    wire::{IpProtocol, Ipv4Packet, Ipv4Repr, WireError},
};

/// TTL for datagrams we originate (RFC 1700's recommended default; Linux's).
pub const DEFAULT_TTL: u8 = 64;

/// The stack's address on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Config {
    pub addr: Ipv4Addr,
    /// Length of the on-link prefix, 0..=32.
    pub prefix_len: u8,
    /// Where off-link destinations go; None means on-link only.
    pub gateway: Option<Ipv4Addr>,
}

impl Ipv4Config {
    fn mask(&self) -> u32 {
        match self.prefix_len.min(32) {
            0 => 0,
            n => u32::MAX << (32 - n),
        }
    }

    /// Whether `dst` is on the stack's link.
    pub fn on_link(&self, dst: Ipv4Addr) -> bool {
        let m = self.mask();
        u32::from(dst) & m == u32::from(self.addr) & m
    }

    /// The address to resolve with ARP to reach `dst`, or None when there
    /// is no route (off-link and no gateway).
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.on_link(dst) {
            Some(dst)
        } else {
            self.gateway
        }
    }
}

/// Checks a received datagram and returns its header and payload (options
/// skipped, link padding trimmed), or why it is dropped.
pub fn accept(bytes: &[u8], local: Ipv4Addr) -> Result<(Ipv4Repr, &[u8]), DropReason> {
    let packet = Ipv4Packet::new_checked(bytes).map_err(|e| match e {
        WireError::Truncated => DropReason::Ipv4Truncated,
        _ => DropReason::Ipv4Malformed,
    })?;
    if packet.dst_addr() != local {
        return Err(DropReason::Ipv4NotForUs);
    }
    let repr = Ipv4Repr::parse(&packet).map_err(|e| match e {
        WireError::Checksum => DropReason::Ipv4Checksum,
        // Reassembly is not implemented; fragments are counted and dropped.
        WireError::Unsupported => DropReason::Ipv4Fragment,
        WireError::Malformed => DropReason::Ipv4BadSource,
        WireError::Truncated => DropReason::Ipv4Truncated,
    })?;
    if !acceptable_source(repr.src_addr, local) {
        return Err(DropReason::Ipv4BadSource);
    }
    let header_len = packet.header_len() as usize;
    let total_len = packet.total_len() as usize;
    Ok((repr, &bytes[header_len..total_len]))
}

/// RFC 1122 §3.2.1.3: a host silently discards a datagram whose source is
/// not a valid host address. Broadcast and multicast sources are refused by
/// the wire parser; here: "this network" 0/8, loopback 127/8, our own
/// address, and class E. (A directed broadcast of a prefix we do not know
/// cannot be told from a host address, so answers go only to the frame's
/// unicast source MAC anyway.)
fn acceptable_source(src: Ipv4Addr, local: Ipv4Addr) -> bool {
    let first = src.octets()[0];
    !(first == 0 || first == 127 || first >= 240 || src == local)
}

/// The header of a datagram we originate.
pub fn repr(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: DEFAULT_TTL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(gateway: Option<Ipv4Addr>) -> Ipv4Config {
        Ipv4Config {
            addr: Ipv4Addr::new(10, 99, 0, 1),
            prefix_len: 24,
            gateway,
        }
    }

    #[test]
    fn routes_on_link_and_through_the_gateway() {
        let gw = Ipv4Addr::new(10, 99, 0, 254);
        assert_eq!(
            cfg(None).next_hop(Ipv4Addr::new(10, 99, 0, 2)),
            Some(Ipv4Addr::new(10, 99, 0, 2))
        );
        assert_eq!(cfg(None).next_hop(Ipv4Addr::new(8, 8, 8, 8)), None);
        assert_eq!(cfg(Some(gw)).next_hop(Ipv4Addr::new(8, 8, 8, 8)), Some(gw));
        let host = Ipv4Config {
            prefix_len: 32,
            ..cfg(None)
        };
        assert!(!host.on_link(Ipv4Addr::new(10, 99, 0, 2)));
        let all = Ipv4Config {
            prefix_len: 0,
            ..cfg(None)
        };
        assert!(all.on_link(Ipv4Addr::new(1, 2, 3, 4)));
    }

    fn datagram(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let r = repr(
            Ipv4Addr::new(10, 99, 0, 2),
            dst,
            IpProtocol::Icmp,
            payload.len(),
        );
        let mut buf = vec![0u8; r.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p);
        p.payload_mut().copy_from_slice(payload);
        buf
    }

    #[test]
    fn accepts_ours_and_drops_the_rest_by_reason() {
        let local = Ipv4Addr::new(10, 99, 0, 1);
        let mut good = datagram(local, b"hello");
        good.extend_from_slice(&[0; 6]); // link padding
        let (r, payload) = accept(&good, local).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(r.next_header, IpProtocol::Icmp);

        assert_eq!(
            accept(&good[..10], local).unwrap_err(),
            DropReason::Ipv4Truncated
        );
        assert_eq!(
            accept(&datagram(Ipv4Addr::new(10, 99, 0, 3), b"x"), local).unwrap_err(),
            DropReason::Ipv4NotForUs
        );
        let mut bad_sum = datagram(local, b"x");
        bad_sum[10] ^= 0xff;
        assert_eq!(
            accept(&bad_sum, local).unwrap_err(),
            DropReason::Ipv4Checksum
        );
        let mut bad_version = datagram(local, b"x");
        bad_version[0] = 0x65;
        assert_eq!(
            accept(&bad_version, local).unwrap_err(),
            DropReason::Ipv4Malformed
        );
        let mut frag = datagram(local, b"x");
        {
            let mut p = Ipv4Packet::new_unchecked(&mut frag[..]);
            p.set_more_frags(true);
            p.fill_checksum();
        }
        assert_eq!(accept(&frag, local).unwrap_err(), DropReason::Ipv4Fragment);
        for bad_src in [
            Ipv4Addr::new(0, 1, 2, 3),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(240, 0, 0, 1),
            local,
        ] {
            let mut v = datagram(local, b"x");
            let mut p = Ipv4Packet::new_unchecked(&mut v[..]);
            p.set_src_addr(bad_src);
            p.fill_checksum();
            assert_eq!(
                accept(&v, local).unwrap_err(),
                DropReason::Ipv4BadSource,
                "{bad_src}"
            );
        }
    }
}
