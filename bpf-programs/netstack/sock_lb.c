// Socket-level load balancing (east-west services): cgroup hooks on the node's sockets that give
// a connection to a service frontend its backend before any packet exists. connect4/sendmsg4
// rewrite the destination to a backend chosen at random among the service's (or the one the
// client's session affinity holds); recvmsg4/getpeername4 show the frontend again, so the
// application only ever sees the address it asked for. The v6 hooks do the same for IPv4
// services reached through IPv4-mapped addresses (::ffff:a.b.c.d). A frontend with no backend
// refuses at once with ECONNREFUSED, as kube-proxy's reject rule does.
//
// The hooks sit on the root cgroup, where several nodes on one machine share them: each node's
// program acts only on sockets of the network namespaces it lists in lb_netns (its own and its
// pods'), and lets every other socket be.
#include <linux/in.h>
#include "netstack_compat.h"
#include "abi.h"
#include "lib/clock.h"
#include "lib/lb.h"
#include "lib/events.h"

#define ECONNREFUSED 111

ABI_EXPORT(enum, lb_slots);
ABI_EXPORT(enum, lb_scope);
ABI_EXPORT(enum, lb_flags);
ABI_EXPORT(enum, lb_backend_state);
ABI_EXPORT(enum, lb_sock_outcome);
ABI_EXPORT(enum, lb_netns_kind);
ABI_EXPORT(enum, lb_maglev);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_sock_key);
	__type(value, struct lb4_sock_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_sock_revnat SEC(".maps");

/* Network namespace cookies of the sockets this node balances: its pods' (LB_NETNS_POD) and
 * its own (LB_NETNS_HOST). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LB_SOCK_OUTCOMES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_stats SEC(".maps");

static __always_inline void count(__u32 outcome)
{
	__u64 *n = bpf_map_lookup_elem(&lb_sock_stats, &outcome);

	if (n)
		*n += 1;
}

static __always_inline int ours(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);

	return bpf_map_lookup_elem(&lb_netns, &netns) != NULL;
}

/* The frontend's master entry: the internal scope's (internalTrafficPolicy: Local keeps one
 * with only this node's backends) when there is one, else the service's. */
static __always_inline struct lb4_service *frontend(struct lb4_key *key)
{
	struct lb4_service *master = lb_master(key, LB_SCOPE_INTERNAL);

	return master ? master : lb_master(key, LB_SCOPE_EXTERNAL);
}

/* 1: translated (*address, *port rewritten); 0: not a frontend; -1: a frontend without a
 * backend. */
static __always_inline int translate(void *ctx, __u64 cookie, __be32 *address, __be16 *port, __u8 protocol)
{
	struct lb4_key key = { .address = *address, .port = *port, .protocol = protocol };
	struct lb4_service *master = frontend(&key);
	struct lb4_backend *backend = NULL;
	struct lb_affinity_key affinity_key = {};
	__u64 now = 0;
	__u32 id = 0;

	if (!master)
		return 0;
	if (master->count == 0 || master->count > LB_MAX_BACKENDS)
		return -1;
	if (master->flags & LB_FLAG_AFFINITY) {
		affinity_key.client = bpf_get_netns_cookie(ctx);
		affinity_key.kind = LB_AFFINITY_NETNS;
		affinity_key.rev_nat_id = master->rev_nat_id;
		now = lb_now();
		backend = lb_affinity_held(&affinity_key, master, now, &id);
	}
	if (!backend)
		backend = lb_backend_in_slot(&key, master, bpf_get_prandom_u32() % master->count + 1, &id);
	if (!backend)
		return -1;
	if (master->flags & LB_FLAG_AFFINITY)
		lb_affinity_hold(&affinity_key, id, now);
	struct lb4_sock_key sock = { .cookie = cookie, .address = backend->address, .port = backend->port };
	struct lb4_sock_value was = { .address = *address, .port = *port, .rev_nat_id = master->rev_nat_id };

	bpf_map_update_elem(&lb4_sock_revnat, &sock, &was, BPF_ANY);
	*address = backend->address;
	*port = backend->port;
	return 1;
}

/* The frontend a socket's peer was translated from, if any. */
static __always_inline int reverse(__u64 cookie, __be32 *address, __be16 *port)
{
	struct lb4_sock_key sock = { .cookie = cookie, .address = *address, .port = *port };
	struct lb4_sock_value *was = bpf_map_lookup_elem(&lb4_sock_revnat, &sock);

	if (!was)
		return 0;
	*address = was->address;
	*port = was->port;
	return 1;
}

/* Reports a translation between `frontend` and `backend` of the socket behind `ctx`. */
static __always_inline void report(struct bpf_sock_addr *ctx, __u8 point, __u64 cookie, __be32 frontend_address,
				   __be16 frontend_port, __be32 backend_address, __be16 backend_port)
{
	struct sock_trace trace = {
		.socket_cookie = cookie,
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.frontend_address = frontend_address,
		.backend_address = backend_address,
		.frontend_port = frontend_port,
		.backend_port = backend_port,
		.protocol = ctx->protocol,
	};

	emit_sock(point, &trace);
}

static __always_inline int forward4(struct bpf_sock_addr *ctx)
{
	__be32 address = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u64 cookie;
	int translated;

	if (!ours(ctx))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	translated = translate(ctx, cookie, &address, &port, ctx->protocol);
	if (translated < 0) {
		count(LB_SOCK_NO_BACKEND);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	if (translated) {
		report(ctx, SOCK_XLATE_POST_DIRECTION_FWD, cookie, ctx->user_ip4, (__be16)ctx->user_port, address, port);
		ctx->user_ip4 = address;
		ctx->user_port = port;
		count(LB_SOCK_TRANSLATED);
	}
	return 1;
}

/* Reverse translations happen on every datagram received: reported only when every packet is
 * (no aggregation). */
static __always_inline int reverse4(struct bpf_sock_addr *ctx)
{
	__be32 address = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u64 cookie;

	if (!ours(ctx))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	if (reverse(cookie, &address, &port)) {
		if (every_packet_reported())
			report(ctx, SOCK_XLATE_POST_DIRECTION_REV, cookie, address, port, ctx->user_ip4,
			       (__be16)ctx->user_port);
		ctx->user_ip4 = address;
		ctx->user_port = port;
		count(LB_SOCK_REVERSED);
	}
	return 1;
}

/* ::ffff:a.b.c.d */
static __always_inline int v4_mapped(struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == __builtin_bswap32(0xffff);
}

static __always_inline int forward6(struct bpf_sock_addr *ctx)
{
	__be32 address;
	__be16 port;
	__u64 cookie;
	int translated;

	if (!v4_mapped(ctx) || !ours(ctx))
		return 1;
	address = ctx->user_ip6[3];
	port = (__be16)ctx->user_port;
	cookie = bpf_get_socket_cookie(ctx);
	translated = translate(ctx, cookie, &address, &port, ctx->protocol);
	if (translated < 0) {
		count(LB_SOCK_NO_BACKEND);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	if (translated) {
		report(ctx, SOCK_XLATE_POST_DIRECTION_FWD, cookie, ctx->user_ip6[3], (__be16)ctx->user_port, address,
		       port);
		ctx->user_ip6[3] = address;
		ctx->user_port = port;
		count(LB_SOCK_TRANSLATED);
	}
	return 1;
}

static __always_inline int reverse6(struct bpf_sock_addr *ctx)
{
	__be32 address;
	__be16 port;
	__u64 cookie;

	if (!v4_mapped(ctx) || !ours(ctx))
		return 1;
	address = ctx->user_ip6[3];
	port = (__be16)ctx->user_port;
	cookie = bpf_get_socket_cookie(ctx);
	if (reverse(cookie, &address, &port)) {
		if (every_packet_reported())
			report(ctx, SOCK_XLATE_POST_DIRECTION_REV, cookie, address, port, ctx->user_ip6[3],
			       (__be16)ctx->user_port);
		ctx->user_ip6[3] = address;
		ctx->user_port = port;
		count(LB_SOCK_REVERSED);
	}
	return 1;
}

/* A host process may not take a port the node's external frontends answer on (a NodePort on
 * any address, an ExternalIP or LoadBalancer address): the bind fails with EPERM, so traffic for
 * the service never lands on the process. Pods bind what they like in their own namespaces. */
SEC("cgroup/post_bind4")
int sock_post_bind4(struct bpf_sock *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u8 *kind = bpf_map_lookup_elem(&lb_netns, &netns);
	struct lb4_key key = { .port = __builtin_bswap16((__u16)ctx->src_port), .protocol = ctx->protocol };
	struct lb4_service *master;

	if (!kind || *kind != LB_NETNS_HOST)
		return 1;
	/* Node ports are written for 127.0.0.1 too: a wildcard bind is checked there. */
	key.address = ctx->src_ip4 ? ctx->src_ip4 : __builtin_bswap32(0x7f000001);
	master = bpf_map_lookup_elem(&lb4_services, &key);
	if (master && (master->flags & (LB_FLAG_NODE_PORT | LB_FLAG_EXTERNAL_IP | LB_FLAG_LOAD_BALANCER))) {
		count(LB_SOCK_BIND_REFUSED);
		return 0;
	}
	return 1;
}

/* Each hook is its own program (one attach type each) over the shared logic above. */
#define SOCK_ADDR_HOOK(section, name, body)                 \
	SEC(section) int name(struct bpf_sock_addr *ctx)    \
	{                                                   \
		return body(ctx);                           \
	}

SOCK_ADDR_HOOK("cgroup/connect4", sock_connect4, forward4)
SOCK_ADDR_HOOK("cgroup/sendmsg4", sock_sendmsg4, forward4)
SOCK_ADDR_HOOK("cgroup/recvmsg4", sock_recvmsg4, reverse4)
SOCK_ADDR_HOOK("cgroup/getpeername4", sock_getpeername4, reverse4)
SOCK_ADDR_HOOK("cgroup/connect6", sock_connect6, forward6)
SOCK_ADDR_HOOK("cgroup/sendmsg6", sock_sendmsg6, forward6)
SOCK_ADDR_HOOK("cgroup/recvmsg6", sock_recvmsg6, reverse6)
SOCK_ADDR_HOOK("cgroup/getpeername6", sock_getpeername6, reverse6)

NETSTACK_LICENSE;
