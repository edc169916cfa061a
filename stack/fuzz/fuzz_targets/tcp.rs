#![no_main]

//! TCP segments. The first input byte picks the direction of the pseudo-header and whether the
//! checksum is fixed up before parsing (so most inputs get past it to the flag and option
//! checks); the rest is the segment. Whatever parses is emitted into a buffer of `buffer_len()`
//! and must parse back to the same representation.

use std::net::Ipv4Addr;

use bypass_stack::wire::tcp::{HEADER_LEN, MAX_HEADER_LEN, MAX_WINDOW_SCALE};
use bypass_stack::wire::{TcpOption, TcpPacket, TcpRepr};
use libfuzzer_sys::fuzz_target;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let (src, dst) = if mode & 2 == 0 {
        (CLIENT, SERVER)
    } else {
        (SERVER, CLIENT)
    };
    let mut segment = data.to_vec();
    if mode & 1 == 1 && segment.len() >= HEADER_LEN {
        TcpPacket::new_unchecked(&mut segment[..]).fill_checksum(src, dst);
    }
    let data = &segment[..];

    // Neither an unchecked view nor raw option bytes can make the parsers panic or loop.
    let _ = TcpRepr::parse(&TcpPacket::new_unchecked(data), src, dst);
    let mut rest = data;
    while let Ok((next, option)) = TcpOption::parse(rest) {
        assert!(next.len() < rest.len());
        let _ = option.buffer_len();
        rest = next;
    }

    let Ok(packet) = TcpPacket::new_checked(data) else {
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
    assert_eq!(packet.payload().len(), data.len() - header_len);
    let _ = packet.segment_len();
    let Ok(repr) = TcpRepr::parse(&packet, src, dst) else {
        return;
    };
    assert!(repr.header_len() <= MAX_HEADER_LEN && repr.header_len() % 4 == 0);
    assert!(repr.window_scale.is_none_or(|s| s <= MAX_WINDOW_SCALE));
    assert_ne!(repr.max_seg_size, Some(0));
    assert_eq!(repr.payload, packet.payload());

    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), src, dst);
    let reparsed = TcpPacket::new_checked(&out[..]).expect("emitted segment is valid");
    let again = TcpRepr::parse(&reparsed, src, dst).expect("emitted segment parses");
    // The same, except that SACK blocks beside SYN options may not all fit in 40 bytes.
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
        assert!(again.header_len() + 8 > MAX_HEADER_LEN);
    }
    // Emitting what was parsed back gives the same bytes.
    let mut twice = vec![0u8; again.buffer_len()];
    again.emit(&mut TcpPacket::new_unchecked(&mut twice[..]), src, dst);
    assert_eq!(twice, out);
});
