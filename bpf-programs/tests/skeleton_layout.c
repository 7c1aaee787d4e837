// Library fixture: what a generated skeleton checks when it opens an object. The map's value
// carries an enum, bitfields and a union; skeleton_layout_changed.c builds this file with one
// member's type changed and two members swapped, so each skeleton refuses the other's object.
#include "netstack_compat.h"

enum record_state {
	RECORD_NEW = 1,
	RECORD_SEEN = 2,
	RECORD_GONE = 255,
};

struct record {
#ifdef LAYOUT_CHANGED
	__u32 port;
	__u8 kind;
#else
	__u8 kind;
	__u16 port;
#endif
	enum record_state state;
	__u32 flags : 3, ttl : 5;
	union {
		__u32 v4;
		__u8 v6[16];
	} addr;
	__u64 seen;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct record);
	__uint(max_entries, 64);
} records SEC(".maps");

/* An enum only user space reads, given a use in a section the loader makes no map of (the
 * datapath's ABI_EXPORT idiom), so the object's BTF and the skeleton carry it. */
enum record_kind {
	KIND_PLAIN = 1,
	KIND_SPECIAL = 2,
};
enum record_kind __abi_record_kind __attribute__((section(".abi"), used));

TEMPLATE_CONST(__u32, RECORD_LIMIT, 16);
__u64 lookups = 0;

SEC("xdp")
int count_records(struct xdp_md *ctx)
{
	__u32 key = (ctx->data_end - ctx->data) % RECORD_LIMIT;
	struct record *r = bpf_map_lookup_elem(&records, &key);

	__sync_fetch_and_add(&lookups, 1);
	if (!r)
		return XDP_PASS;
	r->seen++;
	return r->state == RECORD_GONE ? XDP_DROP : XDP_PASS;
}

NETSTACK_LICENSE;
