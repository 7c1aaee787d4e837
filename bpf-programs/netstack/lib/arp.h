/* ARP: the endpoint's gateway answers for every address. */
#ifndef NETSTACK_LIB_ARP_H
#define NETSTACK_LIB_ARP_H

/* Answers ARP requests for any address but the pod's own with the host veth's MAC, so the pod
 * sends everything to the host, which routes it. */
static __always_inline int arp_respond(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct arp_eth *arp = (void *)(eth + 1);
	__u8 mac[6];
	__u32 ip;

	if ((void *)(arp + 1) > end)
		return TC_ACT_OK;
	if (arp->hdr.ar_op != bpf_htons(ARPOP_REQUEST) || arp->hdr.ar_hrd != bpf_htons(ARPHRD_ETHER) ||
	    arp->hdr.ar_pro != bpf_htons(ETH_P_IP) || arp->target_ip == ENDPOINT_IPV4)
		return TC_ACT_OK;
	for (int i = 0; i < 6; i++)
		mac[i] = HOST_MAC[i];
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, mac, 6);
	arp->hdr.ar_op = bpf_htons(ARPOP_REPLY);
	ip = arp->target_ip;
	__builtin_memcpy(arp->target_mac, arp->sender_mac, 6);
	arp->target_ip = arp->sender_ip;
	__builtin_memcpy(arp->sender_mac, mac, 6);
	arp->sender_ip = ip;
	return bpf_redirect(HOST_IFINDEX, 0);
}

#endif
