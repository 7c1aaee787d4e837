//! Programs attached for real, proven with traffic between test namespaces.

use ebpf_core::insn::{Assembler, JmpCond, Reg, Size};
use ebpf_core::link::{Xdp, XdpMode};
use ebpf_core::{Program, ProgramSpec, ProgramType};
use ebpf_test_support::net::{send_udp, UdpCounter, VethPair};
use ebpf_test_support::{require_kernel, unique_name};

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
    send_udp(&net.left, net.right_addr, 5353, 20).unwrap();
    assert_eq!(dropped_port.drain(), 20, "detached on drop: traffic flows again");
}
