//! Ethernet frames for `BPF_PROG_TEST_RUN`: the first packet of a flow as the endpoint
//! programs see it (the differential test, the benchmarks and `netstack` diagnostics use them).

use std::net::IpAddr;

/// A frame from `src` to `dst`: Ethernet, IPv4 or IPv6 (by the addresses' family), and the
/// L4 header of `protocol` — a TCP SYN, a UDP or SCTP header with `sport` → `port`, or for
/// ICMP/ICMPv6 a message of type `port` with echo identifier `sport`.
///
/// # Panics
/// When `src` and `dst` are of different families.
pub fn frame(src: IpAddr, dst: IpAddr, protocol: u8, sport: u16, port: u16) -> Vec<u8> {
    let mut l4 = match protocol {
        6 => {
            let mut h = vec![0u8; 20];
            h[12] = 5 << 4;
            h[13] = 0x02; // SYN
            h
        }
        132 => vec![0u8; 12],
        _ => vec![0u8; 8],
    };
    if protocol == 1 || protocol == 58 {
        l4[0] = port as u8;
        l4[4..6].copy_from_slice(&sport.to_be_bytes());
    } else {
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&port.to_be_bytes());
    }
    let mut out = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend([0x08, 0x00, 0x45, 0]);
            out.extend(((20 + l4.len()) as u16).to_be_bytes());
            out.extend([0, 1, 0, 0, 64, protocol, 0, 0]);
            out.extend(s.octets());
            out.extend(d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            out.extend((l4.len() as u16).to_be_bytes());
            out.extend([protocol, 64]);
            out.extend(s.octets());
            out.extend(d.octets());
        }
        _ => panic!("frame: {src} and {dst} are of different families"),
    }
    out.extend(l4);
    out
}
