/* The service maps every load-balancing program of a node shares (pinned by name): frontends
 * with their backend slots, backends, reverse NAT, session affinity; and the lookups on them.
 * The socket LB (sock_lb.c) and the north-south LB (nodeport.c) read the same entries the agent
 * writes once. */
#ifndef NETSTACK_LIB_LB_H
#define NETSTACK_LIB_LB_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_affinity SEC(".maps");

/* Maglev tables by id (a master's backend_id), each an array of one value: the table. The agent
 * swaps a frontend's table by pointing its master at a new id. */
struct lb_maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__uint(value_size, LB_MAGLEV_SIZE * sizeof(__u32));
	__uint(max_entries, 1);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb_maglev_table);
} lb4_maglev SEC(".maps");

/* The backend Maglev gives `hash` among `master`'s, or NULL without a table. */
static __always_inline struct lb4_backend *lb_maglev_backend(const struct lb4_service *master, __u32 hash, __u32 *id)
{
	__u32 table_id = master->backend_id, zero = 0, slot = hash % LB_MAGLEV_SIZE;
	void *table_map;
	__u32 *table;

	/* The verifier does not bound a remainder: say it again where it cannot be optimised away. */
	asm volatile("" : "+r"(slot));
	if (slot >= LB_MAGLEV_SIZE)
		return NULL;
	if (!table_id)
		return NULL;
	table_map = bpf_map_lookup_elem(&lb4_maglev, &table_id);
	if (!table_map)
		return NULL;
	table = bpf_map_lookup_elem(table_map, &zero);
	if (!table)
		return NULL;
	*id = table[slot];
	return bpf_map_lookup_elem(&lb4_backends, id);
}

/* loadBalancerSourceRanges, by reverse-NAT id (the north-south LB checks them; here so that
 * every LB object makes it and the agent finds it pinned whichever loaded first). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb4_source_range_key);
	__type(value, __u8);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_source_ranges SEC(".maps");

/* The master entry of frontend `key` (address, port, protocol set) in `scope`. */
static __always_inline struct lb4_service *lb_master(struct lb4_key *key, __u8 scope)
{
	key->slot = 0;
	key->scope = scope;
	return bpf_map_lookup_elem(&lb4_services, key);
}

/* The backend in slot `index` (1-based) of `master`'s current range; its id in *id. */
static __always_inline struct lb4_backend *lb_backend_in_slot(struct lb4_key *key, struct lb4_service *master,
							      __u32 index, __u32 *id)
{
	struct lb4_service *slot;

	key->slot = master->base + index;
	slot = bpf_map_lookup_elem(&lb4_services, key);
	if (!slot)
		return NULL;
	*id = slot->backend_id;
	return bpf_map_lookup_elem(&lb4_backends, id);
}

/* The backend `client` held by session affinity for `master`, if it is held, not expired and
 * still active (a backend gone or terminating gives up its clients). */
static __always_inline struct lb4_backend *lb_affinity_held(struct lb_affinity_key *client,
							    struct lb4_service *master, __u64 now, __u32 *id)
{
	struct lb_affinity_value *held = bpf_map_lookup_elem(&lb_affinity, client);
	struct lb4_backend *backend;

	if (!held || now - held->last_used > master->affinity_timeout)
		return NULL;
	*id = held->backend_id;
	backend = bpf_map_lookup_elem(&lb4_backends, id);
	return backend && backend->state == LB_BACKEND_ACTIVE ? backend : NULL;
}

static __always_inline void lb_affinity_hold(struct lb_affinity_key *client, __u32 id, __u64 now)
{
	struct lb_affinity_value held = { .backend_id = id, .last_used = now };

	bpf_map_update_elem(&lb_affinity, client, &held, BPF_ANY);
}

#endif
