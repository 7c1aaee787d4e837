// Library fixture: one program per attach point that has no link of its own or needs a
// special target — socket filter, raw tracepoint, perf-event tracepoint, post_bind4,
// sk_lookup, sk_msg redirect — each observable from user space.
#include "netstack_compat.h"
#include <bpf/bpf_endian.h>

/* The thread whose system calls the tracepoint programs count. */
TEMPLATE_CONST(__u32, TARGET_TID, 0);
/* post_bind4 refuses binds to this port. */
TEMPLATE_CONST(__u16, DENIED_PORT, 0);
/* sk_lookup steers connections to this port to the socket in `steer_to`. */
TEMPLATE_CONST(__u16, STEERED_PORT, 0);

#define SYS_GETPID 39 /* x86_64 */

__u64 raw_tp_hits;
__u64 tp_hits;
__u64 msgs_seen;
__u64 msg_bytes;

/* Keeps packets of 100 bytes or more, drops smaller ones. */
SEC("socket")
int keep_large(struct __sk_buff *skb)
{
	return skb->len < 100 ? 0 : skb->len;
}

SEC("raw_tracepoint/sys_enter")
int count_getpid_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if ((__u32)bpf_get_current_pid_tgid() == TARGET_TID && ctx->args[1] == SYS_GETPID)
		__sync_fetch_and_add(&raw_tp_hits, 1);
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int count_getpid_tp(void *ctx)
{
	if ((__u32)bpf_get_current_pid_tgid() == TARGET_TID)
		__sync_fetch_and_add(&tp_hits, 1);
	return 0;
}

SEC("cgroup/post_bind4")
int deny_port(struct bpf_sock *sk)
{
	return sk->src_port == DENIED_PORT ? 0 : 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} steer_to SEC(".maps");

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	__u32 zero = 0;
	struct bpf_sock *sk;
	long err;

	if (ctx->local_port != STEERED_PORT)
		return SK_PASS;
	sk = bpf_map_lookup_elem(&steer_to, &zero);
	if (!sk)
		return SK_PASS;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return err ? SK_DROP : SK_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} msg_socks SEC(".maps");

/* Counts what sockets in `msg_socks` send, and redirects it into the receive queue of the
 * socket at key 2. */
SEC("sk_msg")
int count_and_redirect(struct sk_msg_md *msg)
{
	__u32 target = 2;

	__sync_fetch_and_add(&msgs_seen, 1);
	__sync_fetch_and_add(&msg_bytes, msg->size);
	return bpf_msg_redirect_hash(msg, &msg_socks, &target, BPF_F_INGRESS);
}

NETSTACK_LICENSE;
