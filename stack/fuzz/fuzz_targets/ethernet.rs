#![no_main]

use bypass_stack::wire::{EthernetFrame, EthernetRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype());
    let payload = frame.payload();
    let Ok(repr) = EthernetRepr::parse(&frame) else {
        return;
    };

    let mut out = vec![0u8; repr.buffer_len() + payload.len()];
    let mut out_frame = EthernetFrame::new_checked(&mut out[..]).expect("sized by buffer_len");
    repr.emit(&mut out_frame);
    out_frame.payload_mut().copy_from_slice(payload);

    let reparsed = EthernetFrame::new_checked(&out[..]).expect("emitted frame is valid");
    assert_eq!(EthernetRepr::parse(&reparsed), Ok(repr));
    assert_eq!(reparsed.payload(), payload);
    assert_eq!(out, data);
});
