// Library fixture: a kfunc declared the way vmlinux.h-generated headers declare it, parameters
// without names. Such a FUNC is refused by the kernel's BTF check ("Invalid arg#1") unless the
// loader names its parameters, as libbpf does.
#include "netstack_compat.h"

extern void *bpf_cast_to_kern_ctx(void *) __ksym;

__u64 cast_ok;

SEC("xdp")
int cast_context(struct xdp_md *ctx)
{
	cast_ok = bpf_cast_to_kern_ctx(ctx) != 0;
	return XDP_PASS;
}

NETSTACK_LICENSE;
