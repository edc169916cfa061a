#![no_main]

use bypass_stack::wire::{Ipv4Packet, Ipv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
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
    let payload = packet.payload();
    let Ok(repr) = Ipv4Repr::parse(&packet) else {
        return;
    };
    assert_eq!(repr.payload_len, payload.len());

    let mut out = vec![0u8; repr.buffer_len()];
    let mut out_packet = Ipv4Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut out_packet);
    out_packet.payload_mut().copy_from_slice(payload);

    let reparsed = Ipv4Packet::new_checked(&out[..]).expect("emitted packet is valid");
    assert_eq!(Ipv4Repr::parse(&reparsed), Ok(repr));
    assert_eq!(reparsed.payload(), payload);
});
