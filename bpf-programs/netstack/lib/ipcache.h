/* The ipcache: which identity an address has and, in tunnel mode, behind which node it sits.
 * One map per node, pinned by name, shared by every endpoint and the overlay. */
#ifndef NETSTACK_LIB_IPCACHE_H
#define NETSTACK_LIB_IPCACHE_H

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache SEC(".maps");

/* The longest prefix holding `addr` (16 bytes; IPv4 mapped) of `family`, or NULL. */
static __always_inline struct ipcache_value *ipcache_lookup(const __u8 *addr, __u8 family)
{
	struct ipcache_key key = {};

	key.prefixlen = 32 + 128;
	key.family = family;
	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&ipcache, &key);
}

static __always_inline struct ipcache_value *ipcache_lookup_v4(__be32 addr)
{
	__u8 mapped[16] = { [10] = 0xff, [11] = 0xff };

	__builtin_memcpy(mapped + 12, &addr, 4);
	return ipcache_lookup(mapped, 4);
}

#endif
