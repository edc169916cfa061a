//! A record of what an in-memory link did with each TCP segment (sent,
//! dropped, duplicated, corrupted, delivered), for finding why a test
//! with faults failed: both rare bugs behind the threaded echo test's
//! failures were found by reading such a trace. Off unless a test turns
//! it on; bounded, keeping the newest entries.

use std::collections::VecDeque;

use crate::{
    time::Instant,
    wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket},
};

/// Entries kept at most (the oldest go first).
const KEEP: usize = 500_000;

/// One thing the link did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Sent,
    Dropped,
    Duplicated,
    Corrupted,
    Delivered,
}

#[derive(Debug, Default)]
pub(super) struct LinkTrace {
    entries: VecDeque<(Instant, usize, LinkEvent, String, [u16; 2])>,
}

/// A TCP segment in one line: ports, flags, SEQ, ACK, window, length and
/// the first payload bytes; `None` for anything else.
pub fn describe(frame: &[u8]) -> Option<(String, [u16; 2])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flags: String = [
        (tcp.syn(), 'S'),
        (tcp.fin(), 'F'),
        (tcp.rst(), 'R'),
        (tcp.ack(), '.'),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|&(_, c)| c)
    .collect();
    let payload = tcp.payload();
    let head: String = payload.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let line = format!(
        "{}>{} [{flags}] seq={} ack={} win={} len={} {head}",
        tcp.src_port(),
        tcp.dst_port(),
        tcp.seq_number().0,
        tcp.ack_number().0,
        tcp.window_len(),
        payload.len(),
    );
    Some((line, [tcp.src_port(), tcp.dst_port()]))
}

impl LinkTrace {
    pub(super) fn record(&mut self, now: Instant, from: usize, event: LinkEvent, frame: &[u8]) {
        if let Some((line, ports)) = describe(frame) {
            if self.entries.len() == KEEP {
                self.entries.pop_front();
            }
            self.entries.push_back((now, from, event, line, ports));
        }
    }

    /// The entries for segments to or from `port`, oldest first.
    pub(super) fn for_port(&self, port: u16) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(.., ports)| ports.contains(&port))
            .map(|(at, from, event, line, _)| {
                format!(
                    "{:>12.6} {from}->{} {event:?} {line}",
                    at.saturating_duration_since(Instant::ZERO).as_secs_f64(),
                    1 - from
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::memlink::{Faults, MemLink};

    /// Ethernet + IPv4 + TCP (ports 40000 -> 80, SYN|ACK), then `payload`.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (40 + payload.len()) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        let t = 34;
        f[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&80u16.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&7u32.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&9u32.to_be_bytes());
        f[t + 12] = 5 << 4;
        f[t + 13] = 0x12;
        f[t + 14..t + 16].copy_from_slice(&1000u16.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn segments_are_described_in_one_line() {
        let (line, ports) = describe(&frame(b"\xde\xad\xbe\xef")).unwrap();
        assert_eq!(line, "40000>80 [S.] seq=7 ack=9 win=1000 len=4 deadbeef");
        assert_eq!(ports, [40000, 80]);
        assert_eq!(describe(&[0u8; 10]), None);
        let mut arp = frame(b"");
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(describe(&arp), None);
    }

    #[test]
    fn a_link_records_what_it_did_once_asked() {
        let faults = Faults {
            drop: 0.5,
            ..Faults::none()
        };
        let (link, mut a, mut b) = MemLink::new(faults, 3, 1514);
        for _ in 0..4 {
            a.send_frame(&frame(b"before"));
        }
        while b.recv().is_some() {}
        assert!(link.trace_for_port(80).is_empty(), "off by default");
        link.record();
        for _ in 0..20 {
            a.send_frame(&frame(b"x"));
        }
        while b.recv().is_some() {}
        let lines = link.trace_for_port(80);
        let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
        assert_eq!(count("Sent"), 20);
        assert_eq!(count("Dropped") + count("Delivered"), 20);
        assert!(count("Dropped") > 0 && count("Delivered") > 0, "{lines:?}");
        assert!(lines[0].contains("0->1 Sent 40000>80"), "{}", lines[0]);
        assert!(link.trace_for_port(81).is_empty());
    }
}
