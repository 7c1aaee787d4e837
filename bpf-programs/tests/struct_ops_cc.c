// Library fixture: a TCP congestion control written in BPF (struct_ops). The same programs
// back two struct_ops maps: `ebpf_cc` (.struct_ops: registered by a map update, unregistered
// by deleting it) and `ebpf_cc_link` (.struct_ops.link: registered through a bpf_link whose
// implementation can be swapped). The work is Reno's, through the kernel's tcp_reno_* kfuncs;
// `calls` counts each callback so a test sees they ran. The local struct names only the
// members it sets: the loader matches members with the kernel's by name.
#include "netstack_compat.h"
#include <bpf/bpf_tracing.h>

/* Defined, not only declared: libbpf checks kfunc prototypes against the kernel's and takes
 * a forward declaration for a different kind of type. Programs never read it. */
struct sock {
	int unused;
};

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
	void (*init)(struct sock *sk);
};

extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

/* init, ssthresh, cong_avoid, undo_cwnd */
__u64 calls[4];

SEC("struct_ops/ebpf_cc_init")
void BPF_PROG(ebpf_cc_init, struct sock *sk)
{
	__sync_fetch_and_add(&calls[0], 1);
}

SEC("struct_ops/ebpf_cc_ssthresh")
__u32 BPF_PROG(ebpf_cc_ssthresh, struct sock *sk)
{
	__sync_fetch_and_add(&calls[1], 1);
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops/ebpf_cc_cong_avoid")
void BPF_PROG(ebpf_cc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&calls[2], 1);
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC("struct_ops/ebpf_cc_undo_cwnd")
__u32 BPF_PROG(ebpf_cc_undo_cwnd, struct sock *sk)
{
	__sync_fetch_and_add(&calls[3], 1);
	return tcp_reno_undo_cwnd(sk);
}

/* No map refers to it: a loader leaves it out, as libbpf does. */
SEC("struct_ops/ebpf_cc_unused")
void BPF_PROG(ebpf_cc_unused, struct sock *sk)
{
}

SEC(".struct_ops")
struct tcp_congestion_ops ebpf_cc = {
	.init = (void *)ebpf_cc_init,
	.ssthresh = (void *)ebpf_cc_ssthresh,
	.cong_avoid = (void *)ebpf_cc_cong_avoid,
	.undo_cwnd = (void *)ebpf_cc_undo_cwnd,
	.name = "ebpf_cc",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops ebpf_cc_link = {
	.init = (void *)ebpf_cc_init,
	.ssthresh = (void *)ebpf_cc_ssthresh,
	.cong_avoid = (void *)ebpf_cc_cong_avoid,
	.undo_cwnd = (void *)ebpf_cc_undo_cwnd,
	.name = "ebpf_cc_link",
};

NETSTACK_LICENSE;
