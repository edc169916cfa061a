//! ICMPv4 (RFC 792) for a host: answering echo requests (RFC 1122
//! §3.2.2.6: "Every host MUST implement an ICMP Echo server").

use std::net::Ipv4Addr;

use crate::{
    counters::DropReason,
    driver::{TxError, TxSink},
    ipv4,
    wire::{
        ethernet, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Icmpv4Packet,
        Icmpv4Repr, IpProtocol, Ipv4Packet, WireError,
    },
};

/// What the caller should do with a received ICMP message.
#[derive(Debug, PartialEq, Eq)]
pub enum IcmpInput<'a> {
    /// An echo request: answer it with the same identifier, sequence number
    /// and data.
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Destination unreachable, fragmentation needed and DF set (RFC 792,
    /// RFC 1191 §4): the next hop's MTU and the start of the datagram that
    /// did not fit (its IPv4 header and at least 8 bytes after it).
    FragmentationNeeded { next_hop_mtu: u16, quoted: &'a [u8] },
    /// A valid message we have no use for (yet): echo replies, errors.
    Ignored,
}

/// ICMP type 3 code 4 (RFC 792; RFC 1191 §4 puts the next hop's MTU in
/// bytes 6-7, where RFC 792 had unused zeros).
fn fragmentation_needed(payload: &[u8]) -> Option<IcmpInput<'_>> {
    let packet = Icmpv4Packet::new_checked(payload).ok()?;
    if packet.msg_type() != crate::wire::Icmpv4Message::DstUnreachable
        || packet.msg_code() != 4
        || !packet.verify_checksum()
    {
        return None;
    }
    let next_hop_mtu = u16::from_be_bytes([payload[6], payload[7]]);
    Some(IcmpInput::FragmentationNeeded {
        next_hop_mtu,
        quoted: packet.data(),
    })
}

/// What a quoted TCP segment (in an ICMP error) says: (our address, the
/// peer's, our port, the peer's, the sequence number we sent), when the
/// quote holds the IPv4 header and the first 8 bytes of TCP.
pub fn quoted_tcp(quoted: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, u16, u32)> {
    let ihl = usize::from(*quoted.first()? & 0x0f) * 4;
    if quoted[0] >> 4 != 4 || ihl < 20 || quoted.len() < ihl + 8 || quoted[9] != 6 {
        return None;
    }
    let addr =
        |at: usize| Ipv4Addr::new(quoted[at], quoted[at + 1], quoted[at + 2], quoted[at + 3]);
    let tcp = &quoted[ihl..];
    Some((
        addr(12),
        addr(16),
        u16::from_be_bytes([tcp[0], tcp[1]]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
        u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
    ))
}

/// Checks an ICMP message (the IPv4 payload).
pub fn accept(payload: &[u8]) -> Result<IcmpInput<'_>, DropReason> {
    if let Some(input) = fragmentation_needed(payload) {
        return Ok(input);
    }
    let packet = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::IcmpTruncated)?;
    match Icmpv4Repr::parse(&packet) {
        Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) => Ok(IcmpInput::EchoRequest {
            ident,
            seq_no,
            data,
        }),
        Ok(Icmpv4Repr::EchoReply { .. }) => Ok(IcmpInput::Ignored),
        Err(WireError::Checksum) => Err(DropReason::IcmpChecksum),
        Err(WireError::Unsupported) => Err(DropReason::IcmpUnsupported),
        Err(WireError::Truncated) => Err(DropReason::IcmpTruncated),
        Err(WireError::Malformed) => Err(DropReason::IcmpMalformed),
    }
}

/// Writes the echo reply frame: Ethernet to `peer_mac`, IPv4 from `local_ip`
/// to `peer_ip`, ICMP echo reply carrying `data` back.
#[allow(clippy::too_many_arguments)]
pub fn send_echo_reply(
    tx: &mut impl TxSink,
    local_mac: EthernetAddress,
    peer_mac: EthernetAddress,
    local_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Result<usize, TxError> {
    let icmp = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let ip = ipv4::repr(local_ip, peer_ip, IpProtocol::Icmp, icmp.buffer_len());
    let len = ethernet::HEADER_LEN + ip.buffer_len();
    tx.send(len, |buf| {
        let mut frame = EthernetFrame::new_unchecked(&mut *buf);
        EthernetRepr {
            src_addr: local_mac,
            dst_addr: peer_mac,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
    })?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_tcp_segment_is_read_and_anything_else_refused() {
        let mut q = vec![0u8; 28];
        q[0] = 0x45;
        q[9] = 6;
        q[12..16].copy_from_slice(&[10, 99, 0, 1]);
        q[16..20].copy_from_slice(&[10, 99, 0, 2]);
        q[20..22].copy_from_slice(&80u16.to_be_bytes());
        q[22..24].copy_from_slice(&40000u16.to_be_bytes());
        q[24..28].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(
            quoted_tcp(&q),
            Some((
                Ipv4Addr::new(10, 99, 0, 1),
                Ipv4Addr::new(10, 99, 0, 2),
                80,
                40000,
                0xdead_beef
            ))
        );
        assert_eq!(quoted_tcp(&q[..27]), None, "fewer than 8 bytes of TCP");
        let mut udp = q.clone();
        udp[9] = 17;
        assert_eq!(quoted_tcp(&udp), None);
        let mut v6 = q.clone();
        v6[0] = 0x65;
        assert_eq!(quoted_tcp(&v6), None);
        assert_eq!(quoted_tcp(&[]), None);
    }

    #[test]
    fn fragmentation_needed_is_recognised_with_its_mtu() {
        let mut msg = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0xdc];
        msg.extend_from_slice(&[0x45; 28]);
        let mut packet = Icmpv4Packet::new_unchecked(&mut msg[..]);
        packet.fill_checksum();
        match accept(&msg) {
            Ok(IcmpInput::FragmentationNeeded {
                next_hop_mtu,
                quoted,
            }) => {
                assert_eq!(next_hop_mtu, 1500);
                assert_eq!(quoted.len(), 28);
            }
            other => panic!("{other:?}"),
        }
        msg[2] ^= 1; // bad checksum: not taken
        assert!(!matches!(
            accept(&msg),
            Ok(IcmpInput::FragmentationNeeded { .. })
        ));
    }
}
