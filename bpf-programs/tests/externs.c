// Library fixture: externs the loader resolves — kernel configuration (__kconfig, one weak
// and missing; libbpf's virtual LINUX_HAS_* options), a kernel function's address (a typeless __ksym, from kallsyms, which lists
// functions even without CONFIG_KALLSYMS_ALL) and kernel functions (kfuncs).
#include "netstack_compat.h"

extern int LINUX_KERNEL_VERSION __kconfig;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern int CONFIG_NETSTACK_NEVER_SET __kconfig __weak;
extern _Bool LINUX_HAS_BPF_COOKIE __kconfig;
extern _Bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern const void bpf_prog_put __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

__u64 seen[6];

SEC("xdp")
int read_externs(struct xdp_md *ctx)
{
	seen[0] = LINUX_KERNEL_VERSION;
	seen[1] = CONFIG_BPF_SYSCALL;
	seen[2] = CONFIG_NETSTACK_NEVER_SET;
	seen[3] = (__u64)&bpf_prog_put;
	seen[4] = LINUX_HAS_BPF_COOKIE;
	seen[5] = LINUX_HAS_SYSCALL_WRAPPER;
	bpf_rcu_read_lock();
	bpf_rcu_read_unlock();
	return XDP_PASS;
}

NETSTACK_LICENSE;
