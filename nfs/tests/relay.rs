//! The latency relay on loopback: a round trip through it takes at least twice the one-way
//! delay, and calls sent together come back together (any number in flight), not one round trip
//! each.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_relay_delays_each_direction_and_overlaps_what_is_in_flight() {
    // An echo server on 127.0.0.1, the relay in front of it on 127.0.0.2, the same port.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in echo.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let one_way = Duration::from_millis(20);
    let mut relay = Command::new(env!("CARGO_BIN_EXE_scanjob-nfs-relay"))
        .args(["127.0.0.2", "127.0.0.1", "20000", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    BufReader::new(relay.stdout.take().unwrap())
        .read_line(&mut up)
        .unwrap();
    assert_eq!(up.trim(), "relay up");

    let mut stream = TcpStream::connect(("127.0.0.2", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let start = Instant::now();
    stream.write_all(b"ping").unwrap();
    let mut reply = [0; 4];
    stream.read_exact(&mut reply).unwrap();
    let one = start.elapsed();
    assert_eq!(&reply, b"ping");
    assert!(one >= 2 * one_way, "a round trip took {one:?}");

    // Ten messages, each sent 2 ms after the last: all back within about one round trip.
    let start = Instant::now();
    for i in 0..10u8 {
        stream.write_all(&[i; 100]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut replies = [0; 1000];
    stream.read_exact(&mut replies).unwrap();
    let ten = start.elapsed();
    assert!(
        replies
            .chunks(100)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)),
        "replies out of order"
    );
    // One round trip each would be ten round trips; in flight together, about one and the
    // 18 ms of sending.
    assert!(
        ten < 3 * one,
        "ten messages took {ten:?}, one round trip {one:?}"
    );

    relay.kill().unwrap();
    relay.wait().unwrap();
}
