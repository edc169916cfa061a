#![no_main]

use bypass_stack::wire::{Icmpv4Packet, Icmpv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
    let _ = (packet.echo_ident(), packet.echo_seq_no(), packet.data());
    let _ = packet.verify_checksum();
    let Ok(repr) = Icmpv4Repr::parse(&packet) else {
        return;
    };

    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_checked(&mut out[..]).expect("sized by buffer_len"));

    let reparsed = Icmpv4Packet::new_checked(&out[..]).expect("emitted packet is valid");
    assert_eq!(Icmpv4Repr::parse(&reparsed), Ok(repr));
    // Byte-exact except the checksum, where 0x0000 and 0xffff can both be valid.
    assert_eq!(out.len(), data.len());
    assert_eq!(out[..2], data[..2]);
    assert_eq!(out[4..], data[4..]);
});
