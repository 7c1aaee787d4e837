/* Seconds since boot: what session affinity and the load balancers' connection tracking age
 * by (coarse on purpose: entries are refreshed at most once a second). */
#ifndef NETSTACK_LIB_CLOCK_H
#define NETSTACK_LIB_CLOCK_H

static __always_inline __u64 lb_now(void)
{
	return bpf_ktime_get_boot_ns() / 1000000000;
}

#endif
