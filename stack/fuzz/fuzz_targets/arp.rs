#![no_main]

use bypass_stack::wire::{ArpPacket, ArpRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = ArpPacket::new_checked(data) else {
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
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };

    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_checked(&mut out[..]).expect("sized by buffer_len"));

    let reparsed = ArpPacket::new_checked(&out[..]).expect("emitted packet is valid");
    assert_eq!(ArpRepr::parse(&reparsed), Ok(repr));
    // Every field is represented, so the bytes match up to any trailing padding.
    assert_eq!(out[..], data[..out.len()]);
});
