// North-south load balancing (NodePort, ExternalIPs, LoadBalancer) at the node's external
// device, per packet, as Cilium's nodeport path does it. TCX ingress (from_external): a packet
// from outside to a frontend gets a backend (session affinity by client address, else the
// frontend's Maglev table at a hash of the client's address and port, so every node picks the
// same backend for the same client), kept by conntrack for the rest of its flow:
//   - a pod of this node: the destination is rewritten and the packet goes up the stack to the
//     pod; its reply's source is restored on the way out (to_external);
//   - another node's pod, SNAT: the source becomes this node's address and a port of its own,
//     the packet leaves for the backend at once; the reply comes back here and is translated
//     back to the client;
//   - another node's pod, DSR: the client's address stays, the frontend rides along in an IPv4
//     option; the backend's node records it (from_external there) and its reply leaves that
//     node with the frontend as source, straight to the client.
// TCX egress (to_external): replies of pods reached through a frontend get the frontend back as
// their source. loadBalancerSourceRanges and externalTrafficPolicy: Local (no backend here)
// drop with their own reasons.
#include "netstack_compat.h"
#include "abi.h"
#include "lib/proto.h"
#include "lib/ipcache.h"
#include "lib/counters.h"
#include "lib/tunnel.h"
#include "lib/clock.h"
#include "lib/lb.h"
#include "lib/lb_reply.h"

/* This node's external address and pod CIDR, network order; the VXLAN device in tunnel mode. */
TEMPLATE_CONST(__u32, NODE_IPV4, 0);
TEMPLATE_CONST(__u32, POD_CIDR_IPV4, 0);
TEMPLATE_CONST(__u32, POD_CIDR_MASK, 0);
TEMPLATE_CONST(__u32, TUNNEL_IFINDEX, 0);

ABI_EXPORT(enum, lb_ct_mode);
ABI_EXPORT(enum, lb_dsr);
ABI_EXPORT(enum, lb_nat_ports);
ABI_EXPORT(enum, lb_ct_timeouts);
ABI_EXPORT(enum, lb_affinity_kind);
ABI_EXPORT(enum, lb_maglev);
ABI_EXPORT(enum, drop_reason);
ABI_EXPORT(enum, direction);
ABI_EXPORT(enum, verdict_index);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_ct_key);
	__type(value, struct lb4_ct_entry);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_snat_key);
	__type(value, struct lb4_snat_entry);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_snat SEC(".maps");

static __always_inline __u32 l4_csum_off(const struct packet *p)
{
	return p->l4_off + (p->protocol == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(const struct packet *p)
{
	return p->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrites the address at `off` (source or destination) and both checksums. */
static __always_inline int set_address(struct __sk_buff *skb, const struct packet *p, __u32 off, __be32 old,
				       __be32 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), old, new, BPF_F_PSEUDO_HDR | sizeof(new) | l4_csum_flags(p)))
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0);
}

static __always_inline int set_port(struct __sk_buff *skb, const struct packet *p, __u32 off, __be16 old, __be16 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), old, new, sizeof(new) | l4_csum_flags(p)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0);
}

static __always_inline int set_destination(struct __sk_buff *skb, struct packet *p, __be32 address, __be16 port)
{
	if (set_address(skb, p, IP_DST_OFF, p->daddr, address) || set_port(skb, p, p->l4_off + 2, p->dport, port))
		return -1;
	p->daddr = address;
	p->dport = port;
	return 0;
}

static __always_inline int set_source(struct __sk_buff *skb, struct packet *p, __be32 address, __be16 port)
{
	if (set_address(skb, p, IP_SRC_OFF, p->saddr, address) || set_port(skb, p, p->l4_off, p->sport, port))
		return -1;
	p->saddr = address;
	p->sport = port;
	return 0;
}

/* Inserts the DSR option (the frontend) after the 20-byte header of an option-less packet. */
static __always_inline int add_dsr_option(struct __sk_buff *skb, __be32 frontend, __be16 port)
{
	struct lb_dsr_option opt = {
		.type = LB_DSR_OPTION_TYPE, .length = LB_DSR_OPTION_LENGTH, .port = port, .address = frontend
	};
	__be32 old_word, new_word;
	__u8 *bytes = (__u8 *)&new_word;
	__s64 diff;

	if (bpf_skb_load_bytes(skb, IP_OFF, &old_word, sizeof(old_word)))
		return -1;
	new_word = old_word;
	bytes[0] += sizeof(opt) / 4; /* ihl */
	*(__be16 *)(bytes + 2) = bpf_htons(bpf_ntohs(*(__be16 *)(bytes + 2)) + sizeof(opt));
	if (bpf_skb_adjust_room(skb, sizeof(opt), BPF_ADJ_ROOM_NET, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, IP_OFF + IP_BASE_LEN, &opt, sizeof(opt), 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF, &new_word, sizeof(new_word), 0))
		return -1;
	diff = bpf_csum_diff(&old_word, sizeof(old_word), &new_word, sizeof(new_word), 0);
	diff = bpf_csum_diff(0, 0, (__be32 *)&opt, sizeof(opt), diff);
	if (diff < 0)
		return -1;
	return bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, diff, 0);
}

static __always_inline int is_local_pod(__be32 address)
{
	return POD_CIDR_MASK && (address & POD_CIDR_MASK) == POD_CIDR_IPV4;
}

/* Sends the packet on towards its destination: through the tunnel when the ipcache puts it
 * behind another node there (the VNI saying `identity`), else out of the device the routing
 * table says, neighbour resolved. */
static __always_inline int send_on(struct __sk_buff *skb, const struct packet *p, __u32 identity)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (TUNNEL_IFINDEX) {
		struct ipcache_value *v = ipcache_lookup_v4(p->daddr);

		if (v && v->tunnel_endpoint)
			return encapsulate(skb, DIR_INGRESS, v->tunnel_endpoint, identity, TUNNEL_IFINDEX);
	}
	fib.family = AF_INET;
	fib.ifindex = skb->ifindex;
	fib.l4_protocol = p->protocol;
	fib.sport = p->sport;
	fib.dport = p->dport;
	fib.ipv4_src = p->saddr;
	fib.ipv4_dst = p->daddr;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		count(skb, DIR_INGRESS, REASON_FORWARDED);
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(skb, DIR_INGRESS, REASON_FORWARDED);
		return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
	}
	return count(skb, DIR_INGRESS, REASON_NO_FIB);
}

/* A hash of the client's address and port: the same flow gets the same slot on every node. */
static __always_inline __u32 flow_hash(const struct packet *p)
{
	__u32 h = p->saddr ^ ((__u32)p->sport << 16) ^ p->protocol;

	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

static __always_inline __u64 lifetime(const struct lb4_ct_entry *e, __u8 protocol)
{
	if (e->closing)
		return LB_CT_CLOSING_LIFETIME;
	return protocol == IPPROTO_TCP ? LB_CT_TCP_LIFETIME : LB_CT_OTHER_LIFETIME;
}

/* A new flow's backend and how it is reached; 0, or a drop reason. */
static __always_inline int new_flow(struct lb4_key *key, struct lb4_service *master, const struct packet *p,
				    struct lb4_ct_entry *e, __u64 now)
{
	struct lb_affinity_key client = {
		.client = p->saddr, .kind = LB_AFFINITY_ADDRESS, .rev_nat_id = master->rev_nat_id
	};
	struct lb4_backend *backend = NULL;
	__u32 id = 0;

	if (master->count == 0 || master->count > LB_MAX_BACKENDS)
		return REASON_NO_SERVICE;
	if (master->flags & LB_FLAG_AFFINITY)
		backend = lb_affinity_held(&client, master, now, &id);
	if (!backend)
		backend = lb_maglev_backend(master, flow_hash(p), &id);
	if (!backend)
		backend = lb_backend_in_slot(key, master, flow_hash(p) % master->count + 1, &id);
	if (!backend)
		return REASON_NO_SERVICE;
	if (master->flags & LB_FLAG_AFFINITY)
		lb_affinity_hold(&client, id, now);
	e->backend = backend->address;
	e->backend_port = backend->port;
	e->backend_id = id;
	e->rev_nat_id = master->rev_nat_id;
	e->last_seen = now;
	if (is_local_pod(backend->address))
		e->mode = LB_CT_LOCAL;
	else if ((master->flags & LB_FLAG_DSR) && p->ihl == 5)
		e->mode = LB_CT_DSR;
	else
		e->mode = LB_CT_SNAT;
	return 0;
}

/* Takes a port of this node for a SNAT flow to e's backend; 0, or a drop reason. */
static __always_inline int take_nat_port(const struct packet *p, struct lb4_ct_entry *e, __u64 now)
{
	struct lb4_snat_key key = { .backend = e->backend, .backend_port = e->backend_port, .protocol = p->protocol };
	struct lb4_snat_entry back = {
		.client = p->saddr, .frontend = p->daddr, .client_port = p->sport, .frontend_port = p->dport,
		.last_seen = now
	};

	for (int i = 0; i < LB_NAT_PORT_TRIES; i++) {
		__u16 port = LB_NAT_PORT_MIN + bpf_get_prandom_u32() % (LB_NAT_PORT_MAX - LB_NAT_PORT_MIN + 1);

		key.nat_port = bpf_htons(port);
		if (bpf_map_update_elem(&lb4_snat, &key, &back, BPF_NOEXIST) == 0) {
			e->nat_port = key.nat_port;
			return 0;
		}
	}
	return REASON_NAT_NO_MAPPING;
}

/* A reply of a SNAT flow (to this node's address and one of its NAT ports): back to the client. */
static __always_inline int snat_reply(struct __sk_buff *skb, struct packet *p)
{
	struct lb4_snat_key key = {
		.backend = p->saddr, .backend_port = p->sport, .nat_port = p->dport, .protocol = p->protocol
	};
	struct lb4_snat_entry *back = bpf_map_lookup_elem(&lb4_snat, &key);
	__u64 now;

	if (!back)
		return -1;
	now = lb_now();
	if (back->last_seen != now)
		back->last_seen = now;
	if (set_source(skb, p, back->frontend, back->frontend_port) ||
	    set_destination(skb, p, back->client, back->client_port))
		return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
	return send_on(skb, p, IDENTITY_WORLD_IPV4);
}

/* The frontend's master entry for traffic from outside: only NodePort, ExternalIP and
 * LoadBalancer frontends are served (a ClusterIP is not reachable from outside). */
static __always_inline struct lb4_service *external_frontend(struct lb4_key *key)
{
	struct lb4_service *master = lb_master(key, LB_SCOPE_EXTERNAL);

	if (!master || !(master->flags & (LB_FLAG_NODE_PORT | LB_FLAG_EXTERNAL_IP | LB_FLAG_LOAD_BALANCER)))
		return NULL;
	return master;
}

static __always_inline int source_allowed(const struct lb4_service *master, __be32 client)
{
	struct lb4_source_range_key key = {
		.prefixlen = 32 + 32, .rev_nat_id = master->rev_nat_id, .address = client
	};

	if (!(master->flags & LB_FLAG_SOURCE_RANGES) || !(master->flags & LB_FLAG_LOAD_BALANCER))
		return 1;
	return bpf_map_lookup_elem(&lb4_source_ranges, &key) != NULL;
}

SEC("tc")
int from_external(struct __sk_buff *skb)
{
	struct packet p;
	struct lb4_key key = {};
	struct lb4_ct_key ct_key = {};
	struct lb4_ct_entry *held, fresh = {};
	struct lb4_service *master;
	__be32 frontend;
	__be16 frontend_port;
	__u64 now;
	int reason;

	if (!read_packet(skb, &p))
		return TC_ACT_OK;
	/* A DSR flow another node forwarded to a pod of ours: remember the frontend for the reply. */
	if (p.has_dsr) {
		if (is_local_pod(p.daddr))
			expect_reply(&p, p.dsr.address, p.dsr.port, lb_now());
		return TC_ACT_OK;
	}
	if (p.daddr == NODE_IPV4) {
		reason = snat_reply(skb, &p);
		if (reason >= 0)
			return reason;
	}
	key.address = p.daddr;
	key.port = p.dport;
	key.protocol = p.protocol;
	master = external_frontend(&key);
	if (!master)
		return TC_ACT_OK;
	if (!source_allowed(master, p.saddr))
		return count(skb, DIR_INGRESS, REASON_NOT_IN_SRC_RANGE);
	frontend = p.daddr;
	frontend_port = p.dport;
	ct_key.client = p.saddr;
	ct_key.frontend = p.daddr;
	ct_key.client_port = p.sport;
	ct_key.frontend_port = p.dport;
	ct_key.protocol = p.protocol;
	now = lb_now();
	held = bpf_map_lookup_elem(&lb4_ct, &ct_key);
	/* A new SYN on a closing flow's tuple is a new connection. */
	if (held && (now - held->last_seen > lifetime(held, p.protocol) ||
		     (held->closing && (p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)))
		held = NULL;
	if (!held) {
		reason = new_flow(&key, master, &p, &fresh, now);
		if (!reason && fresh.mode == LB_CT_SNAT)
			reason = take_nat_port(&p, &fresh, now);
		if (reason)
			return count(skb, DIR_INGRESS, reason);
		if (bpf_map_update_elem(&lb4_ct, &ct_key, &fresh, BPF_ANY))
			return count(skb, DIR_INGRESS, REASON_CT_CREATE_FAILED);
		held = bpf_map_lookup_elem(&lb4_ct, &ct_key);
		if (!held)
			return count(skb, DIR_INGRESS, REASON_CT_CREATE_FAILED);
	}
	if (held->last_seen != now)
		held->last_seen = now;
	held->packets++;
	if (p.tcp_flags & (TCP_FIN | TCP_RST))
		held->closing = 1;
	switch (held->mode) {
	case LB_CT_LOCAL:
		if (set_destination(skb, &p, held->backend, held->backend_port))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		expect_reply(&p, frontend, frontend_port, now);
		return count(skb, DIR_INGRESS, REASON_FORWARDED);
	case LB_CT_DSR:
		if (set_destination(skb, &p, held->backend, held->backend_port) ||
		    add_dsr_option(skb, frontend, frontend_port))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		/* The client's own packet: world to the backend's policy. */
		return send_on(skb, &p, IDENTITY_WORLD_IPV4);
	default:
		if (set_destination(skb, &p, held->backend, held->backend_port) ||
		    set_source(skb, &p, NODE_IPV4, held->nat_port))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		/* From this node now: remote-node, as the native underlay address says too. */
		return send_on(skb, &p, IDENTITY_REMOTE_NODE);
	}
}

SEC("tc")
int to_external(struct __sk_buff *skb)
{
	struct packet p;
	struct lb4_reply_key key = {};
	struct lb4_reply_entry *reply;

	if (!read_packet(skb, &p))
		return TC_ACT_OK;
	key.backend = p.saddr;
	key.client = p.daddr;
	key.backend_port = p.sport;
	key.client_port = p.dport;
	key.protocol = p.protocol;
	reply = bpf_map_lookup_elem(&lb4_reply, &key);
	if (!reply)
		return TC_ACT_OK;
	if (set_source(skb, &p, reply->frontend, reply->frontend_port))
		return count(skb, DIR_EGRESS, REASON_WRITE_ERROR);
	return count(skb, DIR_EGRESS, REASON_FORWARDED);
}

NETSTACK_LICENSE;
