// Example (ebpf-core/examples/cgroup_connect.rs): a cgroup connect4 hook that refuses TCP and
// UDP connections to one port (DENIED_PORT, set at load) for every process in the cgroup, and
// counts what it refused.
#include "netstack_compat.h"

TEMPLATE_CONST(__u16, DENIED_PORT, 9);

__u64 refused;

SEC("cgroup/connect4")
int cgroup_connect(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == __builtin_bswap16(DENIED_PORT)) {
		__sync_fetch_and_add(&refused, 1);
		return 0; /* the connect fails with EPERM */
	}
	return 1;
}

NETSTACK_LICENSE;
