// SPDX-License-Identifier: (MIT OR Apache-2.0)
//
// steer: the XDP program of bypass. It decides, per frame, whether a frame
// belongs to the userspace stack (redirect into the AF_XDP socket of the
// receive queue it arrived on) or to the kernel (XDP_PASS, untouched).
//
// What belongs to the stack:
//   - shared-IP mode: IPv4 TCP to one of the stack's addresses and a
//     steered port (the kernel keeps everything else);
//   - owned-IP mode: all TCP to the stack's addresses (listeners, and the
//     replies to its own active opens, whatever their port), ARP whose
//     target protocol address is one of them, ICMP to them, and IPv4
//     fragments to them (the stack counts and drops fragments; the kernel
//     has no use for them since it does not own the address).
//
// Userspace configures it through maps; see xdp-prog/src/lib.rs for the
// Rust side, which mirrors the layouts below.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64
#define MAX_ADDRS 16

/* config.flags */
#define CONFIG_OWNED_IP 1u

struct config {
	__u32 flags;
	__u32 n_addrs;
	__u32 addrs[MAX_ADDRS]; /* network byte order */
};

/* Per-queue counters, per CPU; userspace sums the CPUs. */
struct queue_counters {
	__u64 steered;
	__u64 passed;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

/* One byte per TCP port: nonzero means steer to the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct queue_counters);
} counters SEC(".maps");

/* ARP body for Ethernet/IPv4 (RFC 826), after the 8-byte fixed header. */
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline int is_stack_addr(const struct config *cfg, __u32 addr)
{
	__u32 n = cfg->n_addrs;
	for (int i = 0; i < MAX_ADDRS; i++) {
		if (i >= n)
			break;
		if (cfg->addrs[i] == addr)
			return 1;
	}
	return 0;
}

static __always_inline int verdict(struct xdp_md *ctx, int to_stack)
{
	__u32 queue = ctx->rx_queue_index;
	struct queue_counters *c = bpf_map_lookup_elem(&counters, &queue);

	if (to_stack) {
		/* Falls back to XDP_PASS when no socket is registered for the queue. */
		int action = bpf_redirect_map(&xsks, queue, XDP_PASS);
		if (c) {
			if (action == XDP_REDIRECT)
				c->steered++;
			else
				c->passed++;
		}
		return action;
	}
	if (c)
		c->passed++;
	return XDP_PASS;
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;

	if ((void *)(eth + 1) > data_end)
		return verdict(ctx, 0);

	const struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return verdict(ctx, 0);
	int owned = cfg->flags & CONFIG_OWNED_IP;

	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		if (!owned)
			return verdict(ctx, 0);
		struct arp_eth_ipv4 *arp = (void *)(eth + 1);
		if ((void *)(arp + 1) > data_end)
			return verdict(ctx, 0);
		if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
		    arp->hlen != ETH_ALEN || arp->plen != 4)
			return verdict(ctx, 0);
		__u32 tpa;
		__builtin_memcpy(&tpa, arp->tpa, 4);
		return verdict(ctx, is_stack_addr(cfg, tpa));
	}

	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return verdict(ctx, 0);

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return verdict(ctx, 0);
	if (!is_stack_addr(cfg, ip->daddr))
		return verdict(ctx, 0);

	/* Fragments: MF set or a nonzero offset. Only the first carries ports. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return verdict(ctx, owned);

	if (ip->protocol == IPPROTO_ICMP)
		return verdict(ctx, owned);
	if (ip->protocol != IPPROTO_TCP)
		return verdict(ctx, 0);
	if (owned)
		return verdict(ctx, 1);

	__u32 ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return verdict(ctx, 0);
	struct tcphdr *tcp = (void *)ip + ihl;
	if ((void *)(tcp + 1) > data_end)
		return verdict(ctx, 0);
	__u32 port = bpf_ntohs(tcp->dest);
	__u8 *steered = bpf_map_lookup_elem(&ports, &port);
	return verdict(ctx, steered && *steered);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
