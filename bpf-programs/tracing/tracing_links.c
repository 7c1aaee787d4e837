// Tracing-type programs (BTF tracepoint, iterator). Kept apart from the loader fixtures because
// some kernels refuse tracing programs (EPERM); the tests say so when that happens.
#include "netstack_compat.h"
#include <bpf/bpf_tracing.h>

__u64 tp_btf_hits;

SEC("tp_btf/sys_enter")
int count_sys_enter_btf(__u64 *ctx)
{
	__sync_fetch_and_add(&tp_btf_hits, 1);
	return 0;
}

struct seq_file;
struct bpf_map;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

SEC("iter/bpf_map")
int list_maps(struct bpf_iter__bpf_map *ctx)
{
	static const char line[] = "map\n";

	if (ctx->map)
		bpf_seq_write(ctx->meta->seq, line, sizeof(line) - 1);
	return 0;
}

NETSTACK_LICENSE;
