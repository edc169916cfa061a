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
    IcmpFragNeededIgnored => "icmp_frag_needed_ignored",
    TcpUnhandled => "tcp_unhandled",
    TcpChecksum => "tcp_bad_checksum",
    TcpMalformed => "tcp_malformed",
    TcpNoConnection => "tcp_no_connection",
    TcpBacklogFull => "tcp_backlog_full",
    TcpNoRoute => "tcp_no_route",
    TcpOutOfWindow => "tcp_out_of_window",
    TcpPaws => "tcp_paws",
    TcpBadAck => "tcp_bad_ack",
    TcpChallengeAck => "tcp_challenge_ack",
    TcpChallengeAckLimited => "tcp_challenge_ack_rate_limited",
    TcpListenNoAck => "tcp_listen_without_ack",
    TcpUnexpected => "tcp_unexpected_segment",
    TcpReassemblyFull => "tcp_reassembly_full",
    TcpMemoryPressure => "tcp_memory_pressure",
    ForwardQueueFull => "forward_queue_full",
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
    pub tcp_segments_in: u64,
    pub tcp_segments_out: u64,
    pub tcp_resets_out: u64,
    pub tcp_syn_in: u64,
    pub tcp_syncookies_sent: u64,
    pub tcp_syncookies_ok: u64,
    pub tcp_syncookies_failed: u64,
    pub tcp_refused: u64,
    /// Segments TCP sent again (RFC 6298 timeouts, fast retransmit, SACK
    /// recovery): loss on the path, or a peer too slow to acknowledge.
    pub tcp_retransmits: u64,
    /// Retransmission timeouts (RFC 6298 §5.4): stalls of at least one RTO
    /// that fast recovery did not prevent.
    pub tcp_timeouts: u64,
    /// Connections whose segment size an ICMP "fragmentation needed"
    /// lowered (RFC 1191, validated as RFC 5927 says).
    pub tcp_pmtu_lowered: u64,
    /// Connections whose segment size fell back after repeated timeouts of
    /// full-sized segments: a path MTU black hole (RFC 4821 §7.4).
    pub tcp_pmtu_black_holes: u64,
    /// Path MTU probes acknowledged: each raised a connection's segment
    /// size after a black hole or an ICMP message lowered it (RFC 8899).
    pub tcp_pmtu_probes_acked: u64,
    /// Path MTU probes lost (sent again in smaller segments; a size fails
    /// after three in a row).
    pub tcp_pmtu_probes_lost: u64,
    /// Tail loss probes sent (RFC 8985 §7): a lost tail or a lost ACK
    /// repaired without waiting for the RTO.
    pub tcp_loss_probes: u64,
    /// D-SACKs received (RFC 2883): segments the peer got twice, a
    /// retransmission that was not needed (reordering, a delayed ACK).
    pub tcp_dsacks: u64,
    /// Congestion responses undone because D-SACKs showed every
    /// retransmission they made to be needless (RFC 3708).
    pub tcp_spurious_undos: u64,
    /// Losses a tail loss probe repaired: the original was lost, so cwnd
    /// was cut as for any loss (RFC 8985 §7.4.2).
    pub tcp_loss_probe_recoveries: u64,
    /// Frames handed to the core that owns them (a reply to another core's
    /// active open, or ARP shared with every core).
    pub forwarded_out: u64,
    /// Frames another core handed to this one.
    pub forwarded_in: u64,
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
            tcp_segments_in: 0,
            tcp_segments_out: 0,
            tcp_resets_out: 0,
            tcp_syn_in: 0,
            tcp_syncookies_sent: 0,
            tcp_syncookies_ok: 0,
            tcp_syncookies_failed: 0,
            tcp_refused: 0,
            tcp_retransmits: 0,
            tcp_timeouts: 0,
            tcp_pmtu_lowered: 0,
            tcp_pmtu_black_holes: 0,
            tcp_pmtu_probes_acked: 0,
            tcp_pmtu_probes_lost: 0,
            tcp_loss_probes: 0,
            tcp_dsacks: 0,
            tcp_spurious_undos: 0,
            tcp_loss_probe_recoveries: 0,
            forwarded_out: 0,
            forwarded_in: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Counts `n` drops for one reason at once.
    #[inline]
    pub fn drop_n(&mut self, reason: DropReason, n: u64) {
        self.drops[reason as usize] += n;
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
        self.tcp_segments_in += other.tcp_segments_in;
        self.tcp_segments_out += other.tcp_segments_out;
        self.tcp_resets_out += other.tcp_resets_out;
        self.tcp_syn_in += other.tcp_syn_in;
        self.tcp_syncookies_sent += other.tcp_syncookies_sent;
        self.tcp_syncookies_ok += other.tcp_syncookies_ok;
        self.tcp_syncookies_failed += other.tcp_syncookies_failed;
        self.tcp_refused += other.tcp_refused;
        self.tcp_retransmits += other.tcp_retransmits;
        self.tcp_timeouts += other.tcp_timeouts;
        self.tcp_pmtu_lowered += other.tcp_pmtu_lowered;
        self.tcp_pmtu_black_holes += other.tcp_pmtu_black_holes;
        self.tcp_pmtu_probes_acked += other.tcp_pmtu_probes_acked;
        self.tcp_pmtu_probes_lost += other.tcp_pmtu_probes_lost;
        self.tcp_loss_probes += other.tcp_loss_probes;
        self.tcp_dsacks += other.tcp_dsacks;
        self.tcp_spurious_undos += other.tcp_spurious_undos;
        self.tcp_loss_probe_recoveries += other.tcp_loss_probe_recoveries;
        self.forwarded_out += other.forwarded_out;
        self.forwarded_in += other.forwarded_in;
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
             arp_replies_in={} arp_requests_out={} arp_resolve_failed={} icmp_echo_in={} icmp_echo_out={} \
             tcp_segments_in={} tcp_segments_out={} tcp_resets_out={} tcp_syn_in={} tcp_syncookies_sent={} \
             tcp_syncookies_ok={} tcp_syncookies_failed={} tcp_refused={} tcp_retransmits={} tcp_timeouts={} tcp_pmtu_lowered={} tcp_pmtu_black_holes={} tcp_pmtu_probes_acked={} tcp_pmtu_probes_lost={} tcp_loss_probes={} tcp_dsacks={} tcp_spurious_undos={} tcp_loss_probe_recoveries={} forwarded_out={} forwarded_in={} drops={}",
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
            self.tcp_segments_in,
            self.tcp_segments_out,
            self.tcp_resets_out,
            self.tcp_syn_in,
            self.tcp_syncookies_sent,
            self.tcp_syncookies_ok,
            self.tcp_syncookies_failed,
            self.tcp_refused,
            self.tcp_retransmits,
            self.tcp_timeouts,
            self.tcp_pmtu_lowered,
            self.tcp_pmtu_black_holes,
            self.tcp_pmtu_probes_acked,
            self.tcp_pmtu_probes_lost,
            self.tcp_loss_probes,
            self.tcp_dsacks,
            self.tcp_spurious_undos,
            self.tcp_loss_probe_recoveries,
            self.forwarded_out,
            self.forwarded_in,
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
