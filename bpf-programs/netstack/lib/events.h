/* Flow events into the node's ring buffer (pinned by name, shared by every program of the
 * node), with the first EVENT_CAPTURE_LEN bytes of the packet; an event the ring has no room
 * for is counted in event_lost, never waited for. */
#ifndef NETSTACK_LIB_EVENTS_H
#define NETSTACK_LIB_EVENTS_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} event_lost SEC(".maps");

/* The node's event settings: one enum event_aggregation, written by the agent (zero, medium,
 * until it does). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} event_config SEC(".maps");

static __always_inline int every_packet_reported(void)
{
	__u32 zero = 0;
	__u32 *level = bpf_map_lookup_elem(&event_config, &zero);

	return level && *level == EVENT_AGGREGATION_NONE;
}

/* What the program that includes this says its events come from (an endpoint's id; 0 for the
 * node's own programs). */
#ifndef EVENT_ENDPOINT
#define EVENT_ENDPOINT 0
#endif

struct event_facts {
	__u8 kind;
	__u8 subtype;
	__u8 direction;
	__u8 flags;
	__u8 match;
	__u32 src_identity;
	__u32 dst_identity;
};

static __always_inline void count_lost_event(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&event_lost, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline void emit(struct __sk_buff *skb, const struct event_facts *facts)
{
	struct flow_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	__u32 cap = skb->len;

	if (!ev) {
		count_lost_event();
		return;
	}
	ev->ktime = bpf_ktime_get_boot_ns();
	ev->kind = facts->kind;
	ev->subtype = facts->subtype;
	ev->direction = facts->direction;
	ev->flags = facts->flags;
	ev->match = facts->match;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	ev->endpoint_id = EVENT_ENDPOINT;
	ev->src_identity = facts->src_identity;
	ev->dst_identity = facts->dst_identity;
	ev->ifindex = skb->ifindex;
	ev->orig_len = skb->len;
	if (cap > EVENT_CAPTURE_LEN)
		cap = EVENT_CAPTURE_LEN;
	ev->cap_len = 0;
	if (cap > 0 && bpf_skb_load_bytes(skb, 0, ev->data, cap) == 0)
		ev->cap_len = cap;
	bpf_ringbuf_submit(ev, 0);
}

/* A socket translation, from the socket hooks (no packet: the event's data is `trace`). */
static __always_inline void emit_sock(__u8 point, const struct sock_trace *trace)
{
	struct flow_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		count_lost_event();
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev) - EVENT_CAPTURE_LEN);
	ev->ktime = bpf_ktime_get_boot_ns();
	ev->kind = EVENT_TRACE_SOCK;
	ev->subtype = point;
	ev->endpoint_id = EVENT_ENDPOINT;
	ev->cap_len = sizeof(*trace);
	__builtin_memcpy(ev->data, trace, sizeof(*trace));
	bpf_ringbuf_submit(ev, 0);
}

#endif
