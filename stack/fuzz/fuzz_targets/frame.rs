#![no_main]

//! A whole received frame, layer by layer, as the interface walks it: Ethernet, then ARP, or
//! IPv4 and (for protocol 1) ICMP echo. Whatever parses is emitted again into a buffer of the
//! summed `buffer_len`s and must parse back to the same representations.

use bypass_stack::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let Ok(eth) = EthernetRepr::parse(&frame) else {
        return;
    };
    match eth.ethertype {
        EtherType::Arp => arp(eth, frame.payload()),
        EtherType::Ipv4 => ipv4(eth, frame.payload()),
        _ => {}
    }
});

fn arp(eth: EthernetRepr, payload: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(payload) else {
        return;
    };
    let Ok(arp) = ArpRepr::parse(&packet) else {
        return;
    };

    let mut out = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut out_frame = EthernetFrame::new_checked(&mut out[..]).expect("sized by buffer_len");
    eth.emit(&mut out_frame);
    arp.emit(&mut ArpPacket::new_checked(out_frame.payload_mut()).expect("sized by buffer_len"));

    let frame = EthernetFrame::new_checked(&out[..]).expect("emitted frame is valid");
    assert_eq!(EthernetRepr::parse(&frame), Ok(eth));
    let packet = ArpPacket::new_checked(frame.payload()).expect("emitted ARP is valid");
    assert_eq!(ArpRepr::parse(&packet), Ok(arp));
}

fn ipv4(eth: EthernetRepr, payload: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(payload) else {
        return;
    };
    let Ok(ip) = Ipv4Repr::parse(&packet) else {
        return;
    };
    let icmp_packet = match ip.next_header {
        IpProtocol::Icmp => Icmpv4Packet::new_checked(packet.payload()).ok(),
        _ => None,
    };
    let icmp = icmp_packet.as_ref().and_then(|p| Icmpv4Repr::parse(p).ok());

    let mut out = vec![0u8; eth.buffer_len() + ip.buffer_len()];
    let mut out_frame = EthernetFrame::new_checked(&mut out[..]).expect("sized by buffer_len");
    eth.emit(&mut out_frame);
    let mut out_packet = Ipv4Packet::new_unchecked(out_frame.payload_mut());
    ip.emit(&mut out_packet);
    match icmp {
        Some(icmp) => {
            assert_eq!(icmp.buffer_len(), ip.payload_len);
            icmp.emit(&mut Icmpv4Packet::new_checked(out_packet.payload_mut()).expect("sized"));
        }
        None => out_packet.payload_mut().copy_from_slice(packet.payload()),
    }

    let frame = EthernetFrame::new_checked(&out[..]).expect("emitted frame is valid");
    assert_eq!(EthernetRepr::parse(&frame), Ok(eth));
    let packet = Ipv4Packet::new_checked(frame.payload()).expect("emitted IPv4 is valid");
    assert_eq!(Ipv4Repr::parse(&packet), Ok(ip));
    if let Some(icmp) = icmp {
        let icmp_packet = Icmpv4Packet::new_checked(packet.payload()).expect("emitted ICMP");
        assert_eq!(Icmpv4Repr::parse(&icmp_packet), Ok(icmp));
    }
}
