//! Links, addresses and routes over route netlink (the `netlink-packet-route` messages on a
//! `netlink-sys` socket), in the network namespace of the calling thread: what `ip link`,
//! `ip addr` and `ip route` would do, without spawning them.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::netns::PlumbingError;

/// A route netlink socket of the calling thread's namespace.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

fn failed(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> PlumbingError {
    let op = op.into();
    move |source| PlumbingError::Netlink { op, source }
}

impl Rtnl {
    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> Result<Rtnl, PlumbingError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(failed("open a route netlink socket"))?;
        socket.bind_auto().map_err(failed("bind the route netlink socket"))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(failed("connect the route netlink socket"))?;
        Ok(Rtnl { socket, sequence: 0 })
    }

    /// Sends `message` with `flags` (plus request and ack) and waits for the kernel's answer:
    /// the messages it returns before its ack.
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, PlumbingError> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(failed(op))?;
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(failed(op))?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|source| PlumbingError::NetlinkReply { op: op.to_owned(), source })?;
                let length = reply.header.length as usize;
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(PlumbingError::Netlink {
                                op: op.to_owned(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }

    /// The interface `name`'s index and MAC address.
    pub fn link(&mut self, name: &str) -> Result<(u32, [u8; 6]), PlumbingError> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let op = format!("find link {name}");
        let replies = self.request(&op, RouteNetlinkMessage::GetLink(message), 0)?;
        let missing = || PlumbingError::Link { ifname: name.to_owned(), reason: "no such interface".into() };
        let Some(RouteNetlinkMessage::NewLink(link)) = replies.into_iter().next() else { return Err(missing()) };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                Some([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]])
            }
            _ => None,
        });
        Ok((link.header.index, mac.unwrap_or_default()))
    }

    /// Creates the veth pair `name` ↔ `peer`, the peer moved into the namespace open as `netns`.
    pub fn add_veth(&mut self, name: &str, peer: &str, netns: &std::fs::File) -> Result<(), PlumbingError> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        peer_message.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        let op = format!("add veth {name} (peer {peer})");
        self.request(&op, RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    /// Creates the bridge `name`.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), PlumbingError> {
        self.add_link_of_kind(name, InfoKind::Bridge, "bridge")
    }

    /// Creates the WireGuard device `name` (the kernel's; refused where the kernel has none).
    pub fn add_wireguard(&mut self, name: &str) -> Result<(), PlumbingError> {
        self.add_link_of_kind(name, InfoKind::Wireguard, "WireGuard device")
    }

    /// Creates link `name` of `kind`, which needs no settings of its own.
    fn add_link_of_kind(&mut self, name: &str, kind: InfoKind, what: &str) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        let op = format!("add {what} {name}");
        self.request(&op, RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    /// Creates the VXLAN device `name` in external (collect-metadata) mode on UDP `port`, with
    /// `mtu` and without ARP: a program names the remote node of every packet, and no one
    /// behind the device would answer an ARP request.
    pub fn add_vxlan_external(&mut self, name: &str, port: u16, mtu: u32) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Noarp;
        message.header.change_mask = LinkFlags::Noarp;
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::Mtu(mtu));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::CollectMetadata(true),
                InfoVxlan::Port(port),
                InfoVxlan::Learning(false),
            ])),
        ]));
        let op = format!("add vxlan {name} (external, port {port})");
        self.request(&op, RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    /// Turns ARP off on interface `index`: a program names where its packets go, and no one
    /// behind it would answer.
    pub fn set_noarp(&mut self, index: u32) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Noarp;
        message.header.change_mask = LinkFlags::Noarp;
        self.request(&format!("set link {index} arp off"), RouteNetlinkMessage::SetLink(message), 0).map(|_| ())
    }

    /// Sets interface `index`'s MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(&format!("set link {index} mtu {mtu}"), RouteNetlinkMessage::SetLink(message), 0).map(|_| ())
    }

    /// Deletes interface `index`.
    pub fn delete_link(&mut self, index: u32) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(&format!("delete link {index}"), RouteNetlinkMessage::DelLink(message), 0).map(|_| ())
    }

    /// Makes interface `index` a port of the bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::Controller(master));
        self.request(&format!("attach link {index} to {master}"), RouteNetlinkMessage::SetLink(message), 0).map(|_| ())
    }

    /// Brings interface `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), PlumbingError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(&format!("set link {index} up"), RouteNetlinkMessage::SetLink(message), 0).map(|_| ())
    }

    /// Adds `address/prefix_len` to interface `index`.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_len: u8) -> Result<(), PlumbingError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(IpAddr::V4(address)));
        message.attributes.push(AddressAttribute::Address(IpAddr::V4(address)));
        let op = format!("add address {address}/{prefix_len} to link {index}");
        self.request(&op, RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    fn route_message(destination: Ipv4Addr, prefix_len: u8) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = prefix_len;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.kind = RouteType::Unicast;
        message.header.scope = RouteScope::Universe;
        message.header.protocol = netlink_packet_route::route::RouteProtocol::Boot;
        if prefix_len > 0 {
            message.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
        }
        message
    }

    /// Adds (or with `replace`, sets) the route to `destination/prefix_len` out of interface
    /// `index`, through `gateway` when given, else directly on the link.
    pub fn add_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
        index: u32,
        gateway: Option<Ipv4Addr>,
        replace: bool,
    ) -> Result<(), PlumbingError> {
        let mut message = Rtnl::route_message(destination, prefix_len);
        message.attributes.push(RouteAttribute::Oif(index));
        match gateway {
            Some(via) => message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(via))),
            None => message.header.scope = RouteScope::Link,
        }
        let flags = if replace { NLM_F_CREATE | NLM_F_REPLACE } else { NLM_F_CREATE | NLM_F_EXCL };
        let op = format!("add route {destination}/{prefix_len} via link {index}");
        self.request(&op, RouteNetlinkMessage::NewRoute(message), flags).map(|_| ())
    }

    /// Adds (or replaces) the route to `destination/prefix_len` out of interface `index` in
    /// routing table `table` (below 256).
    pub fn add_table_route(
        &mut self,
        table: u8,
        destination: Ipv4Addr,
        prefix_len: u8,
        index: u32,
    ) -> Result<(), PlumbingError> {
        let mut message = Rtnl::route_message(destination, prefix_len);
        message.header.table = table;
        message.header.scope = RouteScope::Link;
        message.attributes.push(RouteAttribute::Oif(index));
        let op = format!("add route {destination}/{prefix_len} via link {index} to table {table}");
        self.request(&op, RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_REPLACE).map(|_| ())
    }

    /// Removes the route to `destination/prefix_len` from routing table `table`.
    pub fn remove_table_route(
        &mut self,
        table: u8,
        destination: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), PlumbingError> {
        let mut message = Rtnl::route_message(destination, prefix_len);
        message.header.table = table;
        message.header.scope = RouteScope::NoWhere;
        let op = format!("remove route {destination}/{prefix_len} from table {table}");
        self.request(&op, RouteNetlinkMessage::DelRoute(message), 0).map(|_| ())
    }

    /// Makes IPv4 UDP packets to port `port` look routing table `table` up first (a rule at
    /// `priority`); already there is fine.
    pub fn add_udp_port_rule(&mut self, priority: u32, port: u16, table: u8) -> Result<(), PlumbingError> {
        let op = format!("add rule: UDP to port {port} looks up table {table}");
        let message = udp_port_rule(priority, port, table);
        match self.request(&op, RouteNetlinkMessage::NewRule(message), NLM_F_CREATE | NLM_F_EXCL) {
            Err(PlumbingError::Netlink { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Removes the rule [`Rtnl::add_udp_port_rule`] made; not there is fine.
    pub fn remove_udp_port_rule(&mut self, priority: u32, port: u16, table: u8) -> Result<(), PlumbingError> {
        let op = format!("remove rule: UDP to port {port} looks up table {table}");
        match self.request(&op, RouteNetlinkMessage::DelRule(udp_port_rule(priority, port, table)), 0) {
            Err(PlumbingError::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Removes the route to `destination/prefix_len`.
    pub fn remove_route(&mut self, destination: Ipv4Addr, prefix_len: u8) -> Result<(), PlumbingError> {
        self.remove_table_route(RouteHeader::RT_TABLE_MAIN, destination, prefix_len)
    }
}

/// The rule sending IPv4 UDP to `port` to `table`, at `priority`.
fn udp_port_rule(priority: u32, port: u16, table: u8) -> netlink_packet_route::rule::RuleMessage {
    use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
    let mut message = RuleMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.table = table;
    message.header.action = RuleAction::ToTable;
    message.attributes.push(RuleAttribute::Priority(priority));
    message.attributes.push(RuleAttribute::IpProtocol(netlink_packet_route::IpProtocol::Udp));
    message.attributes.push(RuleAttribute::DestinationPortRange(RulePortRange { start: port, end: port }));
    message.attributes.push(RuleAttribute::Table(u32::from(table)));
    message
}
