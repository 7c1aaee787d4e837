// Library fixture: a USDT probe's arguments read through include/usdt.h. The test attaches
// `read_args` to the netstack:tick probe of a small C program built with <sys/sdt.h>.
#include "netstack_compat.h"
#include "usdt.h"

__u64 hits;
__s64 args[4];
__s64 arg_count;
__u64 cookie;

SEC("usdt")
int read_args(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	arg_count = usdt_arg_count(ctx);
	usdt_arg(ctx, 0, (long *)&args[0]);
	usdt_arg(ctx, 1, (long *)&args[1]);
	usdt_arg(ctx, 2, (long *)&args[2]);
	usdt_arg(ctx, 3, (long *)&args[3]);
	cookie = usdt_cookie(ctx);
	return 0;
}

NETSTACK_LICENSE;
