/* What the endpoint datapath shares with user space, and only that: the layouts of its maps'
 * keys and values and the constants the agent reads or writes. Constants are enums, so they
 * have BTF and reach Rust through the generated skeleton (netstack-ref's build.rs): written
 * once, here. */
#ifndef NETSTACK_ABI_H
#define NETSTACK_ABI_H

#include <linux/types.h>

/* A packet's direction as the endpoint sees it. */
enum direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
};

/* The prog array's slots: the policy stage of each direction. */
enum stage {
	STAGE_EGRESS_POLICY = 0,
	STAGE_INGRESS_POLICY = 1,
	STAGE_COUNT = 2,
};

/* Reserved identities the datapath itself assigns (the rest come through the ipcache). */
enum reserved_identity {
	IDENTITY_HOST = 1,
	IDENTITY_REMOTE_NODE = 6,
	IDENTITY_WORLD_IPV4 = 9,
	IDENTITY_WORLD_IPV6 = 10,
};

/* A packet that came through the tunnel carries its source's identity (the VNI) to the
 * endpoint in skb->mark: the magic in the bits of MARK_MAGIC_MASK, the identity above
 * MARK_IDENTITY_SHIFT (so only identities below 2^16 cross the tunnel). */
enum identity_mark {
	MARK_MAGIC_MASK = 0x0F00,
	MARK_MAGIC_IDENTITY = 0x0F00,
	MARK_IDENTITY_SHIFT = 16,
	MARK_IDENTITY_LIMIT = 1 << 16,
};

/* Verdict reasons: 0 forwarded, otherwise Cilium's drop reason codes (the name after REASON_ is
 * Cilium's). */
enum drop_reason {
	REASON_FORWARDED = 0,
	REASON_INVALID_SOURCE_IP = 132,
	REASON_POLICY_DENIED = 133,
	REASON_INVALID_PACKET = 134,
	REASON_FRAGMENT = 136,
	REASON_UNSUPPORTED_L3_PROTOCOL = 139,
	REASON_MISSED_TAIL_CALL = 140,
	REASON_WRITE_ERROR = 141,
	REASON_NO_TUNNEL_KEY = 147,
	REASON_CT_CREATE_FAILED = 155,
	REASON_NO_SERVICE = 158,
	REASON_NO_TUNNEL_ENDPOINT = 160,
	REASON_NAT_NO_MAPPING = 167,
	REASON_NO_FIB = 169,
	REASON_INVALID_IDENTITY = 171,
	REASON_UNKNOWN_SENDER = 172,
	REASON_NOT_IN_SRC_RANGE = 177,
	REASON_POLICY_DENY = 181,
	REASON_UNENCRYPTED_TRAFFIC = 195,
};

/* How a packet to an address must leave (the ipcache's encrypt_key), written by the agent
 * when the node encrypts: a pod of another node whose WireGuard key is known goes through the
 * WireGuard device; in strict mode, one whose node's key is not known is dropped rather than
 * leave in clear. */
enum encrypt_kind {
	ENCRYPT_NONE = 0,
	ENCRYPT_WIREGUARD = 1,
	ENCRYPT_REQUIRED = 2,
};

/* The node's settings the endpoints read (`node_config`, one entry, pinned by name). */
struct node_config {
	__u32 wireguard_ifindex; /* 0: no WireGuard device (yet) */
	__u32 pad;
};

/* ipcache: longest-prefix match over (family, address); IPv4 sits in the last 4 bytes of addr
 * with the first 12 zero, so a v4 prefix of length n has prefixlen 32 + 96 + n. */
struct ipcache_key {
	__u32 prefixlen;
	__u32 family;
	__u8 addr[16];
};

struct ipcache_value {
	__u32 identity;
	/* The underlay address (network order) of the node whose pod this is, in tunnel mode;
	 * 0 for this node's own addresses and everything reached without the tunnel. */
	__be32 tunnel_endpoint;
	__u8 encrypt_key; /* enum encrypt_kind */
	__u8 pad[3];
};

/* Policy: identity and direction are always matched in full (prefixlen >= 40); 48 adds the
 * protocol; 48 + n the first n bits of the port (network order), so a block of 2^k ports is one
 * entry with prefixlen 64 - k. Identity 0 stands for any peer. */
struct policy_key {
	__u32 prefixlen;
	__u32 identity;
	__u8 direction;
	__u8 protocol;
	__be16 port;
};

enum policy_prefix {
	POLICY_PREFIX_ANY_PROTOCOL = 40,
	POLICY_PREFIX_ANY_PORT = 48,
	POLICY_FULL_PREFIX = 64,
};

struct policy_entry {
	__u64 packets;
	__be16 proxy_port;
	__u8 deny;
	/* The entry's prefixlen, so a lookup can tell which of two matches is more specific. */
	__u8 prefix_len;
	__u32 pad;
};

/* One connection as one endpoint sees it, keyed by the direction of its first packet. IPv4
 * addresses are IPv4-mapped IPv6 (::ffff:a.b.c.d). An ICMP query (echo, timestamp, …) is
 * keyed by its request's type and identifier, so a reply finds its request but a request
 * the other way does not pass as a reply (GHSA-c66w-hq56-4q97). */
struct ct_key {
	__u32 endpoint_id;
	__u8 protocol;
	__u8 direction;
	__u8 icmp_query; /* the request's ICMP type for a query or its reply, otherwise 0 */
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
};

struct ct_entry {
	__u64 created; /* bpf_ktime_get_ns() */
	__u64 last_seen; /* jiffies: refreshed on every packet, and ktime costs ~26 ns here */
	__u64 packets; /* established IPv4 flows add theirs from the flow cache, up to FLOW_REFRESH late */
	__u64 reply_packets;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 flags; /* enum ct_flags */
	__u32 pad;
};

enum ct_flags {
	/* The connection saw a TCP FIN or RST. */
	CT_CLOSING = 1,
};

/* The exact-match cache of established IPv4 flows (per CPU, per endpoint): a packet whose
 * tuple sits in its slot, confirmed by conntrack less than FLOW_REFRESH ago and since the last
 * conntrack flush (epoch), passes with one array lookup instead of a hash-table call. */
enum flow_cache_size {
	FLOW_CACHE_BITS = 10,
	FLOW_CACHE_SLOTS = 1 << FLOW_CACHE_BITS,
};

struct flow_slot {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 direction; /* the packet's, not the connection's */
	__u8 reply; /* the packet runs against its connection's first packet */
	__u8 valid;
	__u32 epoch;
	/* Where an egress packet of the flow goes through the tunnel (the ipcache's tunnel
	 * endpoint of its destination when conntrack confirmed it); 0: not tunnelled. */
	__be32 tunnel_endpoint;
	__u8 encrypt; /* enum encrypt_kind of its destination, likewise */
	__u8 pad[3];
	__u64 refreshed; /* jiffies when conntrack last confirmed the flow */
	__u64 pending; /* packets passed since, not yet added to the conntrack entry */
};

struct verdict_count {
	__u64 packets;
	__u64 bytes;
};

/* The verdicts map's index of (direction, reason). */
enum verdict_index {
	VERDICT_INDEX_STRIDE = 256,
};

/* Services (the kube-proxy replacement). A service frontend is (address, port, protocol); its
 * entries in lb4_services are keyed by slot: slot 0 is the master entry (backend count, where
 * its backend slots start, its reverse-NAT id, flags), slots base+1 … base+count hold backend
 * ids. An update writes the new backend slots in the range the master does not point at, then
 * flips the master in one map update: a reader sees the old list or the new one, never a mix. */
enum lb_slots {
	LB_SLOT_RANGE = 32768, /* the two ranges start at 0 and at LB_SLOT_RANGE */
	LB_MAX_BACKENDS = 32767,
};

struct lb4_key {
	__be32 address;
	__be16 port;
	__u8 protocol;
	__u8 scope; /* enum lb_scope */
	__u16 slot;
	__u16 pad;
};

enum lb_scope {
	LB_SCOPE_EXTERNAL = 0, /* also the only scope of a service without traffic policies */
	LB_SCOPE_INTERNAL = 1,
};

enum lb_flags {
	LB_FLAG_CLUSTER_IP = 1,
	LB_FLAG_NODE_PORT = 2,
	LB_FLAG_EXTERNAL_IP = 4,
	LB_FLAG_LOAD_BALANCER = 8,
	LB_FLAG_AFFINITY = 16,
	LB_FLAG_LOCAL_EXTERNAL = 32, /* externalTrafficPolicy: Local */
	LB_FLAG_LOCAL_INTERNAL = 64, /* internalTrafficPolicy: Local */
	LB_FLAG_SOURCE_RANGES = 128,
	LB_FLAG_DSR = 256,
};

struct lb4_service {
	__u32 backend_id; /* backend slots: the backend; master: its Maglev table in lb4_maglev (0: none) */
	__u16 count; /* master: backends */
	__u16 base; /* master: where its slots start (0 or LB_SLOT_RANGE) */
	__u16 rev_nat_id; /* master */
	__u16 flags; /* master: enum lb_flags */
	__u32 affinity_timeout; /* master: seconds, with LB_FLAG_AFFINITY */
};

/* Maglev: each external frontend's table of backend ids, LB_MAGLEV_SIZE slots (prime), indexed
 * by a hash of the client's address and port; frontends with the same backends share one. */
enum lb_maglev {
	LB_MAGLEV_SIZE = 16381,
};

enum lb_backend_state {
	LB_BACKEND_ACTIVE = 0,
	LB_BACKEND_TERMINATING = 1,
};

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 protocol;
	__u8 state; /* enum lb_backend_state */
};

/* A frontend, by its reverse-NAT id: what a reply's source goes back to. */
struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
	__u16 pad;
};

/* Socket LB: what a socket was translated from, so recvmsg and getpeername show the service. */
struct lb4_sock_key {
	__u64 cookie;
	__be32 address;
	__be16 port;
	__u16 pad;
};

struct lb4_sock_value {
	__be32 address;
	__be16 port;
	__u16 rev_nat_id;
};

/* Session affinity: by the client's network namespace (socket LB) or by its address
 * (north-south). */
enum lb_affinity_kind {
	LB_AFFINITY_NETNS = 0,
	LB_AFFINITY_ADDRESS = 1,
};

struct lb_affinity_key {
	__u64 client; /* netns cookie, or the IPv4 address (network order) */
	__u32 rev_nat_id;
	__u32 kind; /* enum lb_affinity_kind */
};

struct lb_affinity_value {
	__u32 backend_id;
	__u32 pad;
	__u64 last_used; /* bpf_ktime_get_boot_ns() / 1e9 */
};

/* The socket LB's counters, by outcome. */
enum lb_sock_outcome {
	LB_SOCK_TRANSLATED = 0,
	LB_SOCK_NO_BACKEND = 1, /* refused with ECONNREFUSED */
	LB_SOCK_REVERSED = 2,
	LB_SOCK_BIND_REFUSED = 3, /* a host bind to an external frontend's port */
	LB_SOCK_OUTCOMES = 4,
};

/* What a namespace listed in lb_netns is to the node. */
enum lb_netns_kind {
	LB_NETNS_POD = 1,
	LB_NETNS_HOST = 2,
};

/* North-south load balancing (nodeport.c), at the node's external device. A flow from outside
 * to a NodePort, ExternalIP or LoadBalancer frontend keeps the backend its first packet got,
 * by conntrack on the node it entered (keyed by the packet as the client sent it). */
struct lb4_ct_key {
	__be32 client;
	__be32 frontend;
	__be16 client_port;
	__be16 frontend_port;
	__u8 protocol;
	__u8 pad[3];
};

/* How a flow reaches its backend. */
enum lb_ct_mode {
	LB_CT_LOCAL = 0, /* a pod of this node: the destination rewritten, the client kept */
	LB_CT_SNAT = 1, /* another node's pod: the source becomes this node's address and a port */
	LB_CT_DSR = 2, /* another node's pod: the client kept, the frontend carried in an IP option */
};

struct lb4_ct_entry {
	__be32 backend;
	__be16 backend_port;
	__be16 nat_port; /* LB_CT_SNAT: this node's port */
	__u32 backend_id;
	__u16 rev_nat_id;
	__u8 mode; /* enum lb_ct_mode */
	__u8 closing; /* a TCP FIN or RST was seen */
	__u64 last_seen; /* seconds since boot; a flow served from the flow cache refreshes it when the
			  * cache goes back to conntrack (every FLOW_REFRESH) */
};

/* SNAT's reverse: a backend's reply to this node's address and port, back to its client. */
struct lb4_snat_key {
	__be32 backend;
	__be16 backend_port;
	__be16 nat_port;
	__u8 protocol;
	__u8 pad[3];
};

struct lb4_snat_entry {
	__be32 client;
	__be32 frontend;
	__be16 client_port;
	__be16 frontend_port;
	__u32 pad;
	__u64 last_seen;
};

/* A reply leaving through the external device from a pod of this node that was reached
 * through a frontend (a local backend, or the backend of a DSR flow another node forwarded):
 * its source becomes the frontend again. */
struct lb4_reply_key {
	__be32 backend;
	__be32 client;
	__be16 backend_port;
	__be16 client_port;
	__u8 protocol;
	__u8 pad[3];
};

struct lb4_reply_entry {
	__be32 frontend;
	__be16 frontend_port;
	__u16 pad;
	__u64 last_seen;
};

/* DSR's IPv4 option, after the 20-byte header: the frontend the client asked for. */
enum lb_dsr {
	LB_DSR_OPTION_TYPE = 0x9a,
	LB_DSR_OPTION_LENGTH = 8,
};

struct lb_dsr_option {
	__u8 type;
	__u8 length;
	__be16 port;
	__be32 address;
};

/* SNAT's ports: above Linux's default ephemeral range (32768-60999), so the node's own
 * connections never collide with them. */
enum lb_nat_ports {
	LB_NAT_PORT_MIN = 61000,
	LB_NAT_PORT_MAX = 65535,
	LB_NAT_PORT_TRIES = 16,
};

/* How long a north-south flow is kept without a packet (seconds), as Cilium's defaults. */
enum lb_ct_timeouts {
	LB_CT_TCP_LIFETIME = 21600,
	LB_CT_OTHER_LIFETIME = 60,
	LB_CT_CLOSING_LIFETIME = 10,
};

/* loadBalancerSourceRanges: per reverse-NAT id, the client prefixes allowed; prefixlen counts
 * from rev_nat_id, so a client prefix of length n has prefixlen 32 + n. */
struct lb4_source_range_key {
	__u32 prefixlen;
	__u16 rev_nat_id;
	__u16 pad;
	__be32 address;
};

/* Flow events (Hubble's monitor messages), into the node's ring buffer `events`: drops (never
 * aggregated away), policy verdicts of new connections, traces when a connection starts, first
 * answers and ends (Cilium's "medium" monitor aggregation; every packet with aggregation off),
 * and the socket load balancer's translations. Kinds are Cilium's message types, trace points
 * Hubble's TraceObservationPoint numbers. */
enum event_kind {
	EVENT_DROP = 1,
	EVENT_TRACE = 4,
	EVENT_POLICY_VERDICT = 5,
	EVENT_TRACE_SOCK = 7,
};

/* How much the datapath reports (Cilium's monitor aggregation levels), the node's setting in
 * event_config; zero, the default, until the agent says otherwise. */
enum event_aggregation {
	EVENT_AGGREGATION_MEDIUM = 0, /* a connection's start, first reply and end */
	EVENT_AGGREGATION_NONE = 1, /* every packet */
};

/* Where a socket translation was seen (Hubble's SocketTranslationPoint numbers). */
enum sock_xlate_point {
	SOCK_XLATE_POST_DIRECTION_FWD = 2, /* the socket now goes to the backend */
	SOCK_XLATE_POST_DIRECTION_REV = 4, /* the backend shown as the frontend again */
};

/* A socket translation: what an EVENT_TRACE_SOCK event carries as its data. */
struct sock_trace {
	__u64 socket_cookie;
	__u64 netns_cookie; /* the socket's network namespace: which pod */
	__be32 frontend_address;
	__be32 backend_address;
	__be16 frontend_port;
	__be16 backend_port;
	__u8 protocol;
	__u8 pad[3];
};

enum trace_point {
	TRACE_TO_OVERLAY = 4,
	TRACE_FROM_ENDPOINT = 5,
	TRACE_FROM_OVERLAY = 9,
	TRACE_FROM_NETWORK = 10,
	TRACE_TO_ENDPOINT = 101,
};

/* How a policy verdict matched (Cilium's policy_match_type). */
enum policy_match {
	POLICY_MATCH_NONE = 0,
	POLICY_MATCH_L3_ONLY = 1,
	POLICY_MATCH_L3_L4 = 2,
	POLICY_MATCH_L4_ONLY = 3,
	POLICY_MATCH_ALL = 4,
};

enum event_flags {
	EVENT_FLAG_REPLY = 1, /* the packet runs against its connection's first */
	EVENT_FLAG_DENIED = 2, /* a policy verdict that denies */
};

enum event_capture {
	EVENT_CAPTURE_LEN = 128, /* bytes of the packet an event carries */
};

struct flow_event {
	__u64 ktime; /* bpf_ktime_get_boot_ns() */
	__u8 kind; /* enum event_kind */
	__u8 subtype; /* drop reason, or trace point (TRACE_TO_ENDPOINT: 101) */
	__u8 direction; /* enum direction */
	__u8 flags; /* enum event_flags */
	__u8 match; /* enum policy_match */
	__u8 pad[3];
	__u32 endpoint_id;
	__u32 src_identity; /* 0: not known here (the agent looks the address up) */
	__u32 dst_identity;
	__u32 ifindex;
	__u32 orig_len;
	__u32 cap_len;
	__u8 data[EVENT_CAPTURE_LEN];
};

/* An enum only user space reads needs a use to appear in the object's BTF: a variable in a
 * section the loader never makes a map of (`ABI_EXPORT(enum, drop_reason);` in a program file)
 * is that use. */
#define ABI_EXPORT(kind, name) kind name __abi_##name __attribute__((section(".abi"), used))

#endif
