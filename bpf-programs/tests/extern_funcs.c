// Library fixture: an object meant as linker input — one program calls a function another
// object defines (declared extern here, so the object's BTF holds an extern FUNC with unnamed
// parameters), the other program stands alone. The kernel refuses extern FUNCs in BTF; the
// loader sanitises them, so the standalone program loads with the object's BTF.
#include "netstack_compat.h"

extern int netstack_defined_elsewhere(int);

SEC("socket")
int calls_elsewhere(struct __sk_buff *skb)
{
	return netstack_defined_elsewhere(1);
}

SEC("socket")
int stands_alone(struct __sk_buff *skb)
{
	return 3;
}

NETSTACK_LICENSE;
