//! A steady TCP stream between two namespaces, watched for resets and stalls.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netstack_ref::agent::netns;

/// A stream from namespace `from` to `to` (a listener in namespace `at`) for `duration`, 1 KiB
/// every 5 ms, while `meanwhile` runs; the longest wait between two reads at the receiver and
/// the bytes received. Fails the test when the stream is reset or loses bytes.
pub fn steady_stream(
    from: &str,
    at: &str,
    to: SocketAddrV4,
    duration: Duration,
    meanwhile: impl FnOnce(),
) -> (Duration, usize) {
    let listener = netns::run_in(at, move || TcpListener::bind(to).unwrap()).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let (mut longest, mut total) = (Duration::ZERO, 0usize);
        let mut last = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return (longest, total),
                Ok(n) => {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                    total += n;
                }
            }
        }
    });
    let stream =
        netns::run_in(from, move || TcpStream::connect_timeout(&to.into(), Duration::from_secs(5)).unwrap()).unwrap();
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        let started = Instant::now();
        let mut sent = 0usize;
        while started.elapsed() < duration {
            stream.write_all(&[0x5a; 1024]).expect("the stream is never reset");
            sent += 1024;
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    });
    meanwhile();
    let sent = writer.join().unwrap();
    let (longest, received) = reader.join().unwrap();
    assert_eq!(received, sent, "every byte sent arrived");
    (longest, received)
}
