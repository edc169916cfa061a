//! Per-core counters: frames and bytes each way, protocol events, and drops
//! by reason. Plain integers owned by one core (no atomics on the data path);
//! the runtime hands a copy back when the core stops.

use std::fmt;

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why a frame was dropped. Every drop is counted under one reason.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's name, as printed and exported.
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    EthernetTruncated => "eth_truncated",
    NotOurMac => "eth_not_our_mac",
    EtherType => "eth_unknown_ethertype",
    ArpMalformed => "arp_malformed",
    ArpUnsupported => "arp_unsupported",
    ArpNotForUs => "arp_not_for_us",
    ArpConflict => "arp_address_conflict",
    Ipv4Truncated => "ipv4_truncated",
    Ipv4Malformed => "ipv4_malformed",
    Ipv4Checksum => "ipv4_bad_checksum",
    Ipv4NotForUs => "ipv4_not_for_us",
    Ipv4Fragment => "ipv4_fragment",
    Ipv4BadSource => "ipv4_bad_source",
    Ipv4Protocol => "ipv4_unknown_protocol",
    IcmpTruncated => "icmp_truncated",
    IcmpChecksum => "icmp_bad_checksum",
    IcmpMalformed => "icmp_malformed",
    IcmpUnsupported => "icmp_unsupported_type",
    IcmpNotOwned => "icmp_in_shared_ip_mode",
    TcpUnhandled => "tcp_unhandled",
    TxNoBuffer => "tx_no_buffer",
    TxTooLong => "tx_frame_too_long",
}

/// Counters for one core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub arp_requests_in: u64,
    pub arp_replies_in: u64,
    pub arp_requests_out: u64,
    pub arp_replies_out: u64,
    pub arp_resolve_failed: u64,
    pub icmp_echo_in: u64,
    pub icmp_echo_out: u64,
    drops: [u64; DropReason::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx_frames: 0,
            rx_bytes: 0,
            tx_frames: 0,
            tx_bytes: 0,
            arp_requests_in: 0,
            arp_replies_in: 0,
            arp_requests_out: 0,
            arp_replies_out: 0,
            arp_resolve_failed: 0,
            icmp_echo_in: 0,
            icmp_echo_out: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds `other` into `self` (for totals over cores).
    pub fn accumulate(&mut self, other: &Counters) {
        self.rx_frames += other.rx_frames;
        self.rx_bytes += other.rx_bytes;
        self.tx_frames += other.tx_frames;
        self.tx_bytes += other.tx_bytes;
        self.arp_requests_in += other.arp_requests_in;
        self.arp_replies_in += other.arp_replies_in;
        self.arp_requests_out += other.arp_requests_out;
        self.arp_replies_out += other.arp_replies_out;
        self.arp_resolve_failed += other.arp_resolve_failed;
        self.icmp_echo_in += other.icmp_echo_in;
        self.icmp_echo_out += other.icmp_echo_out;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
    }
}

impl fmt::Display for Counters {
    /// One line: `rx=F/B tx=F/B arp_in=... drops=N (reason=n ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx_frames={} rx_bytes={} tx_frames={} tx_bytes={} arp_requests_in={} arp_replies_out={} \
             arp_replies_in={} arp_requests_out={} arp_resolve_failed={} icmp_echo_in={} icmp_echo_out={} drops={}",
            self.rx_frames,
            self.rx_bytes,
            self.tx_frames,
            self.tx_bytes,
            self.arp_requests_in,
            self.arp_replies_out,
            self.arp_replies_in,
            self.arp_requests_out,
            self.arp_resolve_failed,
            self.icmp_echo_in,
            self.icmp_echo_out,
            self.total_drops()
        )?;
        for &reason in DropReason::ALL {
            let n = self.drops(reason);
            if n > 0 {
                write!(f, " {}={}", reason.as_str(), n)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_and_printed_by_reason() {
        let mut c = Counters::default();
        c.drop(DropReason::Ipv4Checksum);
        c.drop(DropReason::Ipv4Checksum);
        c.drop(DropReason::TxNoBuffer);
        assert_eq!(c.drops(DropReason::Ipv4Checksum), 2);
        assert_eq!(c.total_drops(), 3);
        let line = c.to_string();
        assert!(
            line.contains("drops=3 ipv4_bad_checksum=2 tx_no_buffer=1"),
            "{line}"
        );
        let mut total = Counters::default();
        total.accumulate(&c);
        total.accumulate(&c);
        assert_eq!(total.drops(DropReason::Ipv4Checksum), 4);
    }

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
