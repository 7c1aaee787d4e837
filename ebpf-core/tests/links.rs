//! Programs attached for real, proven with traffic between test namespaces.

use std::time::Duration;

use ebpf_core::insn::{Assembler, JmpCond, Reg, Size};
use ebpf_core::link::{TcAttach, TcDirection, TcNetlink, Tcx, TcxAttach, Xdp, XdpMode};
use ebpf_core::{Map, MapSpec, MapType, Program, ProgramSpec, ProgramType};
use ebpf_test_support::net::{send_udp, UdpCounter, VethPair};
use ebpf_test_support::{eventually, require_kernel, unique_name};

/// XDP: drop IPv4 UDP to `port`, pass everything else.
fn drop_udp_port(port: u16) -> Program {
    let mut asm = Assembler::new();
    asm.load(Size::W, Reg::R2, Reg::R1, 0) // data
        .load(Size::W, Reg::R3, Reg::R1, 4) // data_end
        .mov64_reg(Reg::R4, Reg::R2)
        .alu64_imm(ebpf_core::insn::AluOp::Add, Reg::R4, 42) // eth + ipv4 + udp headers
        .jmp_reg(JmpCond::Gt, Reg::R4, Reg::R3, "pass")
        .load(Size::H, Reg::R5, Reg::R2, 12) // EtherType, network order
        .jmp_imm(JmpCond::Ne, Reg::R5, i32::from(0x0800u16.to_be()), "pass")
        .load(Size::B, Reg::R5, Reg::R2, 23) // IP protocol
        .jmp_imm(JmpCond::Ne, Reg::R5, 17, "pass")
        .load(Size::H, Reg::R5, Reg::R2, 36) // UDP destination port (IHL 5)
        .jmp_imm(JmpCond::Ne, Reg::R5, i32::from(port.to_be()), "pass")
        .mov64_imm(Reg::R0, 1) // XDP_DROP
        .exit()
        .label("pass")
        .mov64_imm(Reg::R0, 2) // XDP_PASS
        .exit();
    Program::load(&ProgramSpec::from_assembled(&unique_name("dropudp"), ProgramType::Xdp, asm.finish().unwrap()))
        .unwrap()
}

#[test]
fn xdp_program_drops_udp_to_one_port_until_detached() {
    let Some(_root) = require_kernel() else { return };
    let net = VethPair::new().unwrap();
    let program = drop_udp_port(5353);
    let dropped_port = UdpCounter::bind(&net.right, 5353).unwrap();
    let open_port = UdpCounter::bind(&net.right, 5354).unwrap();
    let ifindex = net.right.ifindex(&net.ifname).unwrap();

    // Links resolve the interface in the calling thread's namespace: attach from inside it.
    let (program, link) = net
        .right
        .run(move || {
            let link = Xdp::attach(&program, ifindex, XdpMode::Generic);
            (program, link)
        })
        .unwrap();
    let link = link.unwrap();
    assert_eq!(link.info().unwrap().prog_id, program.info().unwrap().id);

    send_udp(&net.left, net.right_addr, 5353, 50).unwrap();
    send_udp(&net.left, net.right_addr, 5354, 50).unwrap();
    assert_eq!(dropped_port.drain(), 0, "dropped by the program");
    assert_eq!(open_port.drain(), 50, "everything else passes");

    drop(link);
    let flows = || {
        send_udp(&net.left, net.right_addr, 5353, 20).unwrap();
        dropped_port.drain() == 20
    };
    assert!(eventually(Duration::from_secs(2), flows), "detached on drop: traffic flows again");
}

/// tc: count IPv4 UDP packets to `port` in slot 0 of the array map "count"; let every packet
/// go on to the next program (`TCX_NEXT`).
fn count_udp_port(port: u16, count: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.load(Size::W, Reg::R2, Reg::R1, 76) // __sk_buff.data
        .load(Size::W, Reg::R3, Reg::R1, 80) // __sk_buff.data_end
        .mov64_reg(Reg::R4, Reg::R2)
        .alu64_imm(ebpf_core::insn::AluOp::Add, Reg::R4, 42)
        .jmp_reg(JmpCond::Gt, Reg::R4, Reg::R3, "next")
        .load(Size::H, Reg::R5, Reg::R2, 12)
        .jmp_imm(JmpCond::Ne, Reg::R5, i32::from(0x0800u16.to_be()), "next")
        .load(Size::B, Reg::R5, Reg::R2, 23)
        .jmp_imm(JmpCond::Ne, Reg::R5, 17, "next")
        .load(Size::H, Reg::R5, Reg::R2, 36)
        .jmp_imm(JmpCond::Ne, Reg::R5, i32::from(port.to_be()), "next")
        .store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(ebpf_core::insn::AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "count")
        .call(ebpf_core::insn::helpers::helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "next")
        .mov64_imm(Reg::R1, 1)
        .atomic(ebpf_core::insn::AtomicOp::Add, Size::DW, Reg::R0, 0, Reg::R1)
        .label("next")
        .mov64_imm(Reg::R0, -1) // TCX_NEXT
        .exit();
    let mut spec = ProgramSpec::from_assembled(&unique_name("cntudp"), ProgramType::SchedCls, asm.finish().unwrap());
    spec.bind_map("count", count).unwrap();
    Program::load(&spec).unwrap()
}

fn counter() -> Map {
    Map::create(&MapSpec::new(&unique_name("cnt"), MapType::Array, 4, 8, 1)).unwrap()
}

fn read(count: &Map) -> u64 {
    u64::from_ne_bytes(count.get(&0u32.to_ne_bytes()).unwrap().unwrap().try_into().unwrap())
}

#[test]
fn tcx_programs_see_exactly_the_packets_sent_and_run_in_the_order_asked() {
    let Some(_root) = require_kernel() else { return };
    let net = VethPair::new().unwrap();
    let (egress_count, ingress_count, first_count) = (counter(), counter(), counter());
    let egress = count_udp_port(7000, &egress_count);
    let ingress = count_udp_port(7000, &ingress_count);
    let first = count_udp_port(7000, &first_count);
    let receiver = UdpCounter::bind(&net.right, 7000).unwrap();
    let left_if = net.left.ifindex(&net.ifname).unwrap();
    let right_if = net.right.ifindex(&net.ifname).unwrap();

    let (egress, egress_link) = net
        .left
        .run(move || {
            let link = Tcx::attach(&egress, left_if, TcxAttach::egress());
            (egress, link)
        })
        .unwrap();
    let egress_link = egress_link.unwrap();
    let (ingress, first, links, order) = net
        .right
        .run(move || {
            let last = Tcx::attach(&ingress, right_if, TcxAttach::ingress().last()).unwrap();
            let before = Tcx::attach(&first, right_if, TcxAttach::ingress().first()).unwrap();
            let order = Tcx::query(right_if, TcxAttach::ingress()).unwrap();
            (ingress, first, (last, before), order)
        })
        .unwrap();
    assert_eq!(order, [first.info().unwrap().id, ingress.info().unwrap().id], "first, then last");

    send_udp(&net.left, net.right_addr, 7000, 40).unwrap();
    assert_eq!(receiver.drain(), 40);
    assert_eq!(read(&egress_count), 40, "egress on the sender saw each datagram once");
    assert_eq!(read(&first_count), 40, "ingress on the receiver, first program");
    assert_eq!(read(&ingress_count), 40, "TCX_NEXT let the second program see them too");

    drop((links, egress_link, egress));
    send_udp(&net.left, net.right_addr, 7000, 5).unwrap();
    assert_eq!(receiver.drain(), 5);
    assert_eq!(read(&ingress_count), 40, "detached on drop");
}

#[test]
fn cgroup_connect4_rewrites_a_virtual_address_to_a_real_listener() {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    use ebpf_core::link::CgroupLink;
    use ebpf_core::AttachType;
    use ebpf_test_support::cgroup::CgroupGuard;

    let Some(_root) = require_kernel() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let real_port = listener.local_addr().unwrap().port();
    let vip = Ipv4Addr::new(127, 0, 0, 77);
    let vport = 7777u16;

    // sock_addr connect4: a connect() to vip:vport goes to 127.0.0.1:real_port instead.
    let ip_word = |a: Ipv4Addr| u32::from_ne_bytes(a.octets()) as i32;
    let port_word = |p: u16| i32::from(p.to_be());
    let mut asm = Assembler::new();
    asm.load(Size::W, Reg::R2, Reg::R1, 4) // user_ip4
        .jmp32_imm(JmpCond::Ne, Reg::R2, ip_word(vip), "allow")
        .load(Size::W, Reg::R2, Reg::R1, 24) // user_port
        .jmp32_imm(JmpCond::Ne, Reg::R2, port_word(vport), "allow")
        .store_imm(Size::W, Reg::R1, 4, ip_word(Ipv4Addr::LOCALHOST))
        .store_imm(Size::W, Reg::R1, 24, port_word(real_port))
        .label("allow")
        .mov64_imm(Reg::R0, 1)
        .exit();
    let spec = ProgramSpec::from_assembled(&unique_name("conn4"), ProgramType::CgroupSockAddr, asm.finish().unwrap())
        .with_attach_type(AttachType::CgroupInet4Connect);
    let program = Program::load(&spec).unwrap();

    let mut cgroup = CgroupGuard::new().unwrap();
    cgroup.enter().unwrap();
    let dir = std::fs::File::open(cgroup.path()).unwrap();
    let link = CgroupLink::attach(&program, &dir, AttachType::CgroupInet4Connect).unwrap();

    let mut client = TcpStream::connect((vip, vport)).expect("the connect goes to the real listener");
    client.write_all(b"hello").unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut got = [0u8; 5];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");

    drop(link);
    assert!(
        eventually(Duration::from_secs(2), || TcpStream::connect((vip, vport)).is_err()),
        "detached: nothing listens on the virtual address"
    );
}

#[test]
fn netlink_tc_filters_count_exactly_and_coexist_with_tcx() {
    let Some(_root) = require_kernel() else { return };
    let net = VethPair::new().unwrap();
    let (tc_ingress_count, tc_egress_count, tcx_count, second_count) = (counter(), counter(), counter(), counter());
    let tc_ingress = count_udp_port(7100, &tc_ingress_count);
    let tc_second = count_udp_port(7100, &second_count);
    let tc_egress = count_udp_port(7100, &tc_egress_count);
    let tcx = count_udp_port(7100, &tcx_count);
    let receiver = UdpCounter::bind(&net.right, 7100).unwrap();
    let left_if = net.left.ifindex(&net.ifname).unwrap();
    let right_if = net.right.ifindex(&net.ifname).unwrap();

    let egress_filter = net
        .left
        .run(move || TcNetlink::attach(&tc_egress, left_if, TcAttach::egress()).map(|f| (f, tc_egress)))
        .unwrap()
        .unwrap();
    let (filters, listed, ids) = net
        .right
        .run(move || {
            let first = TcNetlink::attach(&tc_ingress, right_if, TcAttach::ingress().priority(1).handle(1)).unwrap();
            let second = TcNetlink::attach(&tc_second, right_if, TcAttach::ingress().priority(2).handle(1)).unwrap();
            let tcx_link = Tcx::attach(&tcx, right_if, TcxAttach::ingress()).unwrap();
            let listed = TcNetlink::list(right_if, TcDirection::Ingress).unwrap();
            let ids = [tc_ingress.info().unwrap().id, tc_second.info().unwrap().id];
            ((first, second, tcx_link, tc_ingress, tc_second, tcx), listed, ids)
        })
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!((listed[0].priority, listed[0].handle, listed[0].program_id), (1, 1, ids[0]));
    assert_eq!((listed[1].priority, listed[1].program_id), (2, ids[1]), "priority order");

    send_udp(&net.left, net.right_addr, 7100, 40).unwrap();
    assert_eq!(receiver.drain(), 40);
    assert_eq!(read(&tc_egress_count), 40, "netlink tc on the sender's egress");
    assert_eq!(read(&tcx_count), 40, "TCX on the receiver's ingress");
    assert_eq!(read(&tc_ingress_count), 40, "netlink tc on the same ingress, after TCX");
    assert_eq!(read(&second_count), 40, "and the second filter, after the first");

    drop(egress_filter);
    drop(filters);
    let left = net.right.run(move || TcNetlink::list(right_if, TcDirection::Ingress).unwrap()).unwrap();
    assert!(left.is_empty(), "filters are deleted on drop: {left:?}");
    send_udp(&net.left, net.right_addr, 7100, 5).unwrap();
    assert_eq!(receiver.drain(), 5);
    assert_eq!(read(&tc_ingress_count), 40);
    assert_eq!(read(&tc_egress_count), 40);
}
