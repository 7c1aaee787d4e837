/* The endpoint's own values, rewritten by the loader for every endpoint from one compiled object
 * ("compile once, template at load"), and what the kernel's configuration says. */
#ifndef NETSTACK_LIB_CONFIG_H
#define NETSTACK_LIB_CONFIG_H

TEMPLATE_CONST(__u32, ENDPOINT_ID, 0);
TEMPLATE_CONST(__u32, ENDPOINT_IDENTITY, 0);
/* Network byte order, as on the wire. */
TEMPLATE_CONST(__u32, ENDPOINT_IPV4, 0);
TEMPLATE_CONST(__u8, ENDPOINT_IPV6[16], {});
/* The host-side veth: where ARP replies are sent back out, and whose MAC they carry. */
TEMPLATE_CONST(__u32, HOST_IFINDEX, 0);
TEMPLATE_CONST(__u8, HOST_MAC[6], {});
/* The node's tunnel device (tunnel routing), where packets to other nodes' pods are sent
 * encapsulated; 0 without a tunnel. */
TEMPLATE_CONST(__u32, TUNNEL_IFINDEX, 0);

/* Cached flows are confirmed by conntrack every quarter second; a kernel without a readable
 * configuration (CONFIG_HZ 0) confirms every packet. */
extern unsigned int CONFIG_HZ __kconfig __weak;
#define FLOW_REFRESH (CONFIG_HZ / 4)

#endif
