// Library fixture: libbpf's user-space probe section names — "usdt" (a USDT probe, attached at
// the note's address as a uprobe) and the sleepable "uprobe.s" — which load as kprobe programs.
#include "netstack_compat.h"

__u64 fired;

SEC("usdt")
int on_any_usdt(void *ctx)
{
	__sync_fetch_and_add(&fired, 1);
	return 0;
}

SEC("uprobe.s")
int on_uprobe_sleepable(void *ctx)
{
	__sync_fetch_and_add(&fired, 1);
	return 0;
}

NETSTACK_LICENSE;
