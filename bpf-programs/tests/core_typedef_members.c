// Library fixture: CO-RE access paths through members whose type is a typedef of an anonymous
// struct — the kernel's possible_net_t (sk->__sk_common.skc_net.net), refcount_t and atomic_t
// (skc_refcnt.refs.counter), kuid_t (sk_uid.val). Offsets land in `offsets` for the test to
// compare with the running kernel's BTF.
#include "netstack_compat.h"
#include <bpf/bpf_core_read.h>

struct net;

typedef struct {
	int counter;
} __attribute__((preserve_access_index)) atomic_t;

typedef struct {
	atomic_t refs;
} __attribute__((preserve_access_index)) refcount_t;

typedef struct {
	unsigned int val;
} __attribute__((preserve_access_index)) kuid_t;

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct sock_common {
	possible_net_t skc_net;
	refcount_t skc_refcnt;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	kuid_t sk_uid;
} __attribute__((preserve_access_index));

__u64 offsets[3];

SEC("tc")
int core_typedef_members(struct __sk_buff *skb)
{
	offsets[0] = bpf_core_field_offset(struct sock, __sk_common.skc_net.net);
	offsets[1] = bpf_core_field_offset(struct sock, __sk_common.skc_refcnt.refs.counter);
	offsets[2] = bpf_core_field_offset(struct sock, sk_uid.val);
	return 0;
}

NETSTACK_LICENSE;
