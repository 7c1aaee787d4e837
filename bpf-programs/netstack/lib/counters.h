/* Verdict accounting: every packet is counted once, under its direction and the reason it was
 * forwarded or dropped. */
#ifndef NETSTACK_LIB_COUNTERS_H
#define NETSTACK_LIB_COUNTERS_H

#include "events.h"

/* Packets and bytes per (direction, reason): index = direction * 256 + reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct verdict_count);
	__uint(max_entries, 512);
} verdicts SEC(".maps");

/* Counts the packet; a drop is also reported as a flow event, every one. */
static __always_inline int count(struct __sk_buff *skb, __u8 direction, __u8 reason)
{
	__u32 index = (__u32)direction * VERDICT_INDEX_STRIDE + reason;
	struct verdict_count *c = bpf_map_lookup_elem(&verdicts, &index);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
	if (reason == REASON_FORWARDED)
		return TC_ACT_OK;
	struct event_facts drop = { .kind = EVENT_DROP, .subtype = reason, .direction = direction };
	emit(skb, &drop);
	return TC_ACT_SHOT;
}

#endif
