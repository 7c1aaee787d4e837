// Library fixture: functions other programs call, kept in sections whose names say no program
// type and that hold only static functions — what cilium/ebpf accepts as subprogram sections
// (libbpf refuses them). They are linked into their callers and become no program of their own.
#include "netstack_compat.h"

static __attribute__((noinline, section("static"))) int double_it(int x)
{
	return x * 2;
}

static __attribute__((noinline, section("helpers/math"))) int add_three(int x)
{
	return double_it(x) + 3;
}

SEC("socket")
int call_across_sections(struct __sk_buff *skb)
{
	volatile int x = 5;

	return add_three(x);
}

NETSTACK_LICENSE;
