/* What a load balancer reads of a packet (IPv4 TCP or UDP, and the DSR option), and the
 * reply translation of pods reached through a frontend: shared by the north-south LB, which
 * records it for local backends and DSR flows arriving on the external device, and the overlay,
 * which records it for DSR flows arriving through the tunnel. */
#ifndef NETSTACK_LIB_LB_REPLY_H
#define NETSTACK_LIB_LB_REPLY_H

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_reply_key);
	__type(value, struct lb4_reply_entry);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_reply SEC(".maps");

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + __builtin_offsetof(struct iphdr, check))
#define IP_SRC_OFF (IP_OFF + __builtin_offsetof(struct iphdr, saddr))
#define IP_DST_OFF (IP_OFF + __builtin_offsetof(struct iphdr, daddr))
#define IP_BASE_LEN 20
#define AF_INET 2

/* What the LB reads of an IPv4 TCP or UDP packet. */
struct packet {
	__u32 l4_off;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 ihl;
	/* The DSR option's frontend, when the packet carries one. */
	__u8 has_dsr;
	struct lb_dsr_option dsr;
};

/* 1: an unfragmented IPv4 TCP or UDP packet, read into *p; 0: anything else (left alone). */
static __always_inline int read_packet(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__be16 *ports;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl < 5)
		return 0;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return 0;
	if (ip->frag_off & bpf_htons(0x3fff)) /* a fragment, or more to come */
		return 0;
	p->ihl = ip->ihl;
	p->l4_off = IP_OFF + ip->ihl * 4;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->protocol = ip->protocol;
	p->has_dsr = 0;
	if (ip->ihl == 7) {
		struct lb_dsr_option *opt = (void *)(ip + 1);

		if ((void *)(opt + 1) <= end && opt->type == LB_DSR_OPTION_TYPE && opt->length == LB_DSR_OPTION_LENGTH) {
			p->dsr = *opt;
			p->has_dsr = 1;
		}
	}
	ports = data + p->l4_off;
	if ((void *)(ports + 2) > end)
		return 0;
	p->sport = ports[0];
	p->dport = ports[1];
	p->tcp_flags = 0;
	if (p->protocol == IPPROTO_TCP && (void *)ports + TCP_FLAGS_OFFSET + 1 <= end)
		p->tcp_flags = *((__u8 *)ports + TCP_FLAGS_OFFSET);
	return 1;
}

/* Records the way back for replies of `p`'s flow, which reaches a pod of this node at
 * backend:backend_port: their source becomes frontend:frontend_port. */
static __always_inline void expect_reply(const struct packet *p, __be32 backend, __be16 backend_port,
					 __be32 frontend, __be16 frontend_port, __u64 now)
{
	struct lb4_reply_key key = {
		.backend = backend, .client = p->saddr, .backend_port = backend_port, .client_port = p->sport,
		.protocol = p->protocol
	};
	struct lb4_reply_entry *held = bpf_map_lookup_elem(&lb4_reply, &key);
	struct lb4_reply_entry entry = { .frontend = frontend, .frontend_port = frontend_port, .last_seen = now };

	if (held && held->frontend == frontend && held->frontend_port == frontend_port) {
		if (held->last_seen != now)
			held->last_seen = now;
		return;
	}
	bpf_map_update_elem(&lb4_reply, &key, &entry, BPF_ANY);
}

/* Takes the DSR option out again on the backend's node once its frontend is recorded: it only
 * had to get here, and the pod's link need not have room for 8 more bytes than the client sent
 * (a full-sized segment with it would not fit a 1500-byte pod, and the client, which never sees
 * the rewritten packet, could not learn a smaller path MTU from the error). */
static __always_inline int strip_dsr_option(struct __sk_buff *skb)
{
	__be32 old_word, new_word;
	__u8 *bytes = (__u8 *)&new_word;
	struct lb_dsr_option opt;
	__s64 diff;

	if (bpf_skb_load_bytes(skb, IP_OFF, &old_word, sizeof(old_word)) ||
	    bpf_skb_load_bytes(skb, IP_OFF + IP_BASE_LEN, &opt, sizeof(opt)))
		return -1;
	new_word = old_word;
	bytes[0] -= sizeof(opt) / 4; /* ihl */
	*(__be16 *)(bytes + 2) = bpf_htons(bpf_ntohs(*(__be16 *)(bytes + 2)) - sizeof(opt));
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(opt), BPF_ADJ_ROOM_NET, 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF, &new_word, sizeof(new_word), 0))
		return -1;
	diff = bpf_csum_diff((__be32 *)&opt, sizeof(opt), 0, 0, 0);
	diff = bpf_csum_diff(&old_word, sizeof(old_word), &new_word, sizeof(new_word), diff);
	if (diff < 0)
		return -1;
	return bpf_l3_csum_replace(skb, IP_OFF + __builtin_offsetof(struct iphdr, check), 0, diff, 0);
}

#endif
