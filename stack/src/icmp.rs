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
    /// A valid message we have no use for (yet): echo replies, errors.
    Ignored,
}

/// Checks an ICMP message (the IPv4 payload).
pub fn accept(payload: &[u8]) -> Result<IcmpInput<'_>, DropReason> {
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
