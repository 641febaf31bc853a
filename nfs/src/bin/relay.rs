//! `scanjob-nfs-relay LISTEN_IP TARGET_IP ONE_WAY_US PORT...`: a TCP relay that models network
//! latency in user space (this kernel has no `netem`). Every chunk read from either side is held
//! for the one-way delay before it is written to the other side, and any number of chunks are in
//! flight at once, so pipelined calls overlap as on a real network: a round trip costs twice the
//! delay, not twice the delay per call.
//!
//! For each PORT it listens on LISTEN_IP:PORT and relays to TARGET_IP:PORT; relaying the
//! portmapper's port too makes the ports it hands out lead through the relay. Each direction of
//! a connection is a reader thread and a writer thread (std sleeps to the microsecond, where a
//! tokio timer rounds up to the millisecond; on a busy machine a sleep still overshoots by tens
//! of microseconds, so measure the round trip through the relay rather than assume it).
//!
//! Prints `relay up` once every port listens, and `closed PORT calls=N` when a connection ends
//! (N: the RPC records the client sent on it, counted from the record marks), so a client's
//! calls can be counted without its help. Runs until killed.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("scanjob-nfs-relay: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    // Linux lets a sleeping thread wake up to 50 µs late by default: a quarter of a 0.2 ms round
    // trip. The main thread's slack of 1 ns is inherited by every thread it (or its threads)
    // starts, the pumps' writers among them.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: scanjob-nfs-relay LISTEN_IP TARGET_IP ONE_WAY_US PORT...".into());
    }
    let ip = |s: &str| {
        s.parse::<IpAddr>()
            .map_err(|e| format!("{s:?} is not an IP address: {e}"))
    };
    let (listen, target) = (ip(&args[0])?, ip(&args[1])?);
    let delay = Duration::from_micros(
        args[2]
            .parse()
            .map_err(|e| format!("ONE_WAY_US {:?}: {e}", args[2]))?,
    );
    let mut listeners = Vec::new();
    for port in &args[3..] {
        let port: u16 = port.parse().map_err(|e| format!("port {port:?}: {e}"))?;
        let listener = TcpListener::bind(SocketAddr::new(listen, port))
            .map_err(|e| format!("listen on {listen}:{port}: {e}"))?;
        listeners.push((listener, SocketAddr::new(target, port)));
    }
    println!("relay up");
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|(listener, target)| thread::spawn(move || accept(listener, target, delay)))
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn accept(listener: TcpListener, target: SocketAddr, delay: Duration) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        thread::spawn(move || {
            let server = match TcpStream::connect(target) {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("scanjob-nfs-relay: connect to {target}: {e}");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            let up = thread::spawn(move || pump(client, server, delay, true));
            pump(server2, client2, delay, false);
            if let Ok(calls) = up.join() {
                println!("closed {} calls={calls}", target.port());
            }
        });
    }
}

/// Copies `from` to `to`, each chunk held until `delay` after it was read. The end of `from`
/// travels with the same delay (as a shutdown of `to`'s writing side). Returns the RPC records
/// seen when `count` (the direction of the calls).
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, count: bool) -> u64 {
    let mut records = Records::default();
    let (queue, held) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        for (due, chunk) in held {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if chunk.is_empty() {
                break;
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        let due = Instant::now() + delay;
        if count {
            records.feed(&buf[..n]);
        }
        if queue.send((due, buf[..n].to_vec())).is_err() || n == 0 {
            break;
        }
    }
    drop(queue);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
    records.complete
}

/// Counts RPC records in a byte stream by their record marks (RFC 5531 section 11): a 4-byte
/// header per fragment, its top bit set on a record's last fragment.
#[derive(Default)]
struct Records {
    header: Vec<u8>,
    /// Bytes of the current fragment still to skip.
    skip: usize,
    last: bool,
    complete: u64,
}

impl Records {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                if self.skip == 0 && self.last {
                    self.complete += 1;
                }
                continue;
            }
            let n = (4 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 4 {
                let mark = u32::from_be_bytes([
                    self.header[0],
                    self.header[1],
                    self.header[2],
                    self.header[3],
                ]);
                self.header.clear();
                self.last = mark & 0x8000_0000 != 0;
                self.skip = (mark & 0x7fff_ffff) as usize;
                if self.skip == 0 && self.last {
                    self.complete += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Records;

    #[test]
    fn records_are_counted_across_chunks_and_fragments() {
        let mut stream = Vec::new();
        // A record of one fragment, a record of two fragments, an empty last fragment.
        stream.extend_from_slice(&(0x8000_0000u32 | 3).to_be_bytes());
        stream.extend_from_slice(b"abc");
        stream.extend_from_slice(&2u32.to_be_bytes());
        stream.extend_from_slice(b"de");
        stream.extend_from_slice(&(0x8000_0000u32 | 1).to_be_bytes());
        stream.extend_from_slice(b"f");
        stream.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        for chunk in 1..stream.len() {
            let mut records = Records::default();
            for piece in stream.chunks(chunk) {
                records.feed(piece);
            }
            assert_eq!(records.complete, 3, "in chunks of {chunk}");
        }
    }
}
