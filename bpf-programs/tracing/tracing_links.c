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

struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

/* One line per thread: "tgid pid". */
SEC("iter/task")
int list_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	__u64 args[2];

	if (!task)
		return 0;
	args[0] = task->tgid;
	args[1] = task->pid;
	bpf_seq_printf(ctx->meta->seq, "%d %d\n", sizeof("%d %d\n"), args, sizeof(args));
	return 0;
}

NETSTACK_LICENSE;
