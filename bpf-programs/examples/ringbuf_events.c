// Example (ebpf-ringbuf/examples/ringbuf_events.rs): one event per program started on the
// machine (the sched_process_exec tracepoint): its pid and command name, through a BPF ring
// buffer the example reads.
#include "netstack_compat.h"

struct exec_event {
	__u32 pid;
	__u32 ppid_unused;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int exec_events(void *ctx)
{
	struct exec_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);

	if (!event)
		return 0;
	event->pid = bpf_get_current_pid_tgid() >> 32;
	event->ppid_unused = 0;
	bpf_get_current_comm(event->comm, sizeof(event->comm));
	bpf_ringbuf_submit(event, 0);
	return 0;
}

NETSTACK_LICENSE;
