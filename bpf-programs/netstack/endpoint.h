/* Layouts shared by the endpoint datapath and the agent (netstack-ref/src/datapath/maps.rs
 * mirrors them; its tests compare sizes with this object's BTF). */
#ifndef NETSTACK_ENDPOINT_H
#define NETSTACK_ENDPOINT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

#define DIR_INGRESS 0
#define DIR_EGRESS 1

#define STAGE_EGRESS_POLICY 0
#define STAGE_INGRESS_POLICY 1
#define STAGE_COUNT 2

#define IDENTITY_WORLD_IPV4 9
#define IDENTITY_WORLD_IPV6 10

/* Verdict reasons: 0 forwarded, otherwise Cilium's drop reason codes. */
#define REASON_FORWARDED 0
#define REASON_INVALID_SOURCE 132
#define REASON_POLICY_DENIED 133
#define REASON_INVALID_PACKET 134
#define REASON_FRAGMENT 136
#define REASON_UNSUPPORTED_L3 139
#define REASON_MISSED_TAIL_CALL 140
#define REASON_POLICY_DENY 181

/* ipcache: longest-prefix match over (family, address); IPv4 sits in the last 4 bytes of addr
 * with the first 12 zero, so a v4 prefix of length n has prefixlen 32 + 96 + n. */
struct ipcache_key {
	__u32 prefixlen;
	__u32 family;
	__u8 addr[16];
};

struct ipcache_value {
	__u32 identity;
	__u32 tunnel_endpoint;
	__u8 encrypt_key;
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

#define POLICY_FULL_PREFIX 64

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
	__u32 flags; /* CT_CLOSING */
	__u32 pad;
};

/* The connection saw a TCP FIN or RST. */
#define CT_CLOSING 1

#define TCP_FLAGS_OFFSET 13
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* The exact-match cache of established IPv4 flows (per CPU, per endpoint): a packet whose
 * tuple sits in its slot, confirmed by conntrack less than FLOW_REFRESH ago and since the last
 * conntrack flush (epoch), passes with one array lookup instead of a hash-table call. */
#define FLOW_CACHE_BITS 10
#define FLOW_CACHE_SLOTS (1 << FLOW_CACHE_BITS)

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
	__u32 pad;
	__u64 refreshed; /* jiffies when conntrack last confirmed the flow */
	__u64 pending; /* packets passed since, not yet added to the conntrack entry */
};

struct verdict_count {
	__u64 packets;
	__u64 bytes;
};

/* <linux/if_arp.h> and <linux/icmp.h> pull in libc headers, so ARP and ICMP are spelled out. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMP_TIMESTAMP 13
#define ICMP_TIMESTAMPREPLY 14
#define ICMP_INFO_REQUEST 15
#define ICMP_INFO_REPLY 16
#define ICMP_ADDRESS 17
#define ICMP_ADDRESSREPLY 18
#define ICMP_EXT_ECHO 42
#define ICMP_EXT_ECHOREPLY 43
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_EXT_ECHO_REQUEST 160
#define ICMPV6_EXT_ECHO_REPLY 161

struct icmp_header {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be16 id;
	__be16 sequence;
};

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

struct arp_header {
	__be16 ar_hrd;
	__be16 ar_pro;
	__u8 ar_hln;
	__u8 ar_pln;
	__be16 ar_op;
};

struct arp_eth {
	struct arp_header hdr;
	__u8 sender_mac[6];
	__be32 sender_ip;
	__u8 target_mac[6];
	__be32 target_ip;
} __attribute__((packed));

#endif
