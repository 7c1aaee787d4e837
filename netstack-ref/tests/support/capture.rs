//! Packet captures with Debian's `tcpdump`, read back from the pcap file it writes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ebpf_test_support::unique_name;

/// `tcpdump` writing a capture of a device; stopped on drop.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing on `device` in namespace `netns`, what `filter` (tcpdump's syntax,
    /// empty: everything) selects; returns once tcpdump listens.
    pub fn start(netns: &str, device: &str, filter: &str) -> Capture {
        let file = std::env::temp_dir().join(format!("{}.pcap", unique_name("cap")));
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "tcpdump", "-i", device, "-n", "-U", "-s", "0", "-w"])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It says so once it listens.
        let mut stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("listening on") && stderr.read(&mut byte).unwrap_or(0) == 1 {
            seen.push(byte[0]);
        }
        // The rest is drained, so its last words on stopping never meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Capture { child, file }
    }

    /// Stops it; the captured packets (link-layer frames).
    pub fn packets(mut self) -> Vec<Vec<u8>> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        read_pcap(&self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The frames of a classic pcap file (little-endian, as tcpdump writes it here).
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 24 && bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let start = at + 16;
        let Some(frame) = bytes.get(start..start + captured) else { break };
        frames.push(frame.to_vec());
        at = start + captured;
    }
    frames
}

/// (source port, destination port) of an Ethernet + IPv4 + UDP frame.
pub fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(23)? != 17 {
        return None;
    }
    let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
    let port = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    Some((port(l4)?, port(l4 + 2)?))
}
