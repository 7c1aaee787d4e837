// Library fixture: an arena map (BPF_MAP_TYPE_ARENA, 6.9) whose map_extra — the user-space
// address the arena is mapped at, past 32 bits — is given with __ulong, as libbpf 1.3+ defines
// it: an anonymous enum's single value. Debian's libbpf headers predate both.
#include "netstack_compat.h"

#define NETSTACK_MAP_TYPE_ARENA 33
#define ulong_concat(a, b) a##b
#define ulong_unique(n) ulong_concat(ulong_value_, n)
#define __ulong(name, val) enum { ulong_unique(__COUNTER__) = val } name

struct {
	__uint(type, NETSTACK_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4); /* pages */
	__ulong(map_extra, 0x100000000000ull); /* 1 << 44: where user space maps it */
} arena SEC(".maps");

NETSTACK_LICENSE;
