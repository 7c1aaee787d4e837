/* The endpoint object's own maps beside the ipcache (lib/ipcache.h) and its counters
 * (lib/counters.h): conntrack and its epoch are shared by every endpoint of the node (pinned by
 * name); the flow cache and policy map are each endpoint's own. */
#ifndef NETSTACK_LIB_MAPS_H
#define NETSTACK_LIB_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* Bumped by the agent whenever it deletes conntrack entries: cached flows confirmed before
 * then go back to conntrack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct_epoch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct flow_slot);
	__uint(max_entries, FLOW_CACHE_SLOTS);
} flow_cache SEC(".maps");

/* One per endpoint: the agent pins it under the endpoint's directory. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} policy SEC(".maps");

#endif
