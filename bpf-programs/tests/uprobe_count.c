// Library fixture: user-space probes. `count_entry` (uprobe) counts calls and keeps the first
// argument and the attach cookie; `count_return` (uretprobe) keeps the return value;
// `count_multi` (uprobe.multi) counts calls at every place one link attaches it to.
// x86-64 register names: the committed object is built for this architecture.
#define __TARGET_ARCH_x86
#include "netstack_compat.h"
#include <asm/ptrace.h>
#include <bpf/bpf_tracing.h>

__u64 calls;
__u64 last_arg;
__u64 last_cookie;
__u64 last_return;
__u64 multi_calls;

SEC("uprobe")
int BPF_KPROBE(count_entry, __u64 arg)
{
	__sync_fetch_and_add(&calls, 1);
	last_arg = arg;
	last_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(count_return, __u64 ret)
{
	last_return = ret;
	return 0;
}

SEC("uprobe.multi")
int count_multi(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&multi_calls, 1);
	return 0;
}

NETSTACK_LICENSE;
