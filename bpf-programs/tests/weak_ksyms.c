// Library fixture: weak kernel symbols (libbpf's rule): a weak kfunc or ksym the kernel lacks
// resolves to 0, so bpf_ksym_exists() tells and the guarded call is never reached; weak ones
// the kernel has resolve as strong ones do.
#include "netstack_compat.h"

/* Debian's libbpf-dev predates ksym_exists(); the test is the same: the symbol's address. */
#define ksym_exists(sym) (!!(sym))

extern void bpf_netstack_no_such_kfunc(void) __ksym __weak;
extern const void netstack_no_such_symbol __ksym __weak;
extern void bpf_rcu_read_lock(void) __ksym __weak;
extern void bpf_rcu_read_unlock(void) __ksym __weak;
extern const void bpf_prog_put __ksym __weak;

__u64 exists[4];

SEC("xdp")
int probe_weak_ksyms(struct xdp_md *ctx)
{
	exists[0] = ksym_exists(bpf_netstack_no_such_kfunc);
	exists[1] = ksym_exists(&netstack_no_such_symbol);
	exists[2] = ksym_exists(bpf_rcu_read_lock);
	exists[3] = ksym_exists(&bpf_prog_put);
	if (ksym_exists(bpf_netstack_no_such_kfunc))
		bpf_netstack_no_such_kfunc();
	if (ksym_exists(bpf_rcu_read_lock)) {
		bpf_rcu_read_lock();
		bpf_rcu_read_unlock();
	}
	return XDP_PASS;
}

NETSTACK_LICENSE;
